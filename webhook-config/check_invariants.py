#!/usr/bin/env python3
"""Checks the rendered storage-admission manifests: Kubernetes schemas and the invariants that
keep the webhook from wedging a cluster. Run by check.sh, which renders the base and every
overlay with `kubectl kustomize` and passes the files here.

    check_invariants.py --repo ROOT --k8s-version 1.30.0 --k8s-version 1.33.0 \
        base=FILE cert-manager=FILE self-managed=FILE dev-url=FILE

Prints one line per check (`ok`, `FAIL` or `skip`) and ends with `N passed, M failed`; exits 1
on any failure. Then a self-test breaks each invariant in a copy of the rendered objects and
expects its check to fail, so no check can pass vacuously.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import yaml

NS = "storage-admission"
NAME = "storage-admission"
TLS_SECRET = "storage-admission-tls"
LEASE = "storage-admission-leader"
POD_LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "webhook"}
RENDERS = ["base", "cert-manager", "self-managed", "dev-url"]
IN_CLUSTER = ["base", "cert-manager", "self-managed"]  # dev-url has only the webhook configs
EXCLUDED_NAMESPACES = {"storage-admission", "kube-system"}
MAX_TIMEOUT = 10

# The decisions, per webhook: (configuration kind, path, failurePolicy, max timeoutSeconds).
# The reasons are next to each webhook in base/webhooks/*.yaml; changing one means changing
# both, on purpose.
WEBHOOKS = {
    "snapshot-class-defaulting.storage-admission.io": ("MutatingWebhookConfiguration", "/mutate", "Ignore", 3),
    "binding-mode.storage-admission.io": ("MutatingWebhookConfiguration", "/mutate", "Fail", 5),
    "node-topology.storage-admission.io": ("MutatingWebhookConfiguration", "/mutate", "Ignore", 3),
    "restore-readiness.storage-admission.io": ("ValidatingWebhookConfiguration", "/validate", "Fail", 5),
    "snapshot-validation.storage-admission.io": ("ValidatingWebhookConfiguration", "/validate", "Ignore", 3),
    "storage-class-topology.storage-admission.io": ("ValidatingWebhookConfiguration", "/validate", "Fail", 5),
    "local-volumes.storage-admission.io": ("ValidatingWebhookConfiguration", "/validate", "Ignore", 3),
    "pinned-pods.storage-admission.io": ("MutatingWebhookConfiguration", "/mutate", "Ignore", 2),
    "pod-volume-placement.storage-admission.io": ("ValidatingWebhookConfiguration", "/validate", "Ignore", 2),
    "group-snapshot-class-defaulting.storage-admission.io": ("MutatingWebhookConfiguration", "/mutate", "Ignore", 3),
    "group-snapshot-validation.storage-admission.io": ("ValidatingWebhookConfiguration", "/validate", "Ignore", 3),
}
NODE_WEBHOOK = "node-topology.storage-admission.io"
RESTORE_WEBHOOK = "restore-readiness.storage-admission.io"
# Pod webhooks: pod writes are the most frequent writes of a cluster, so both must be Ignore,
# fast, CREATE only and limited by matchConditions (checked on pods by pod_cel_checks).
POD_WEBHOOKS = {"pinned-pods.storage-admission.io": True, "pod-volume-placement.storage-admission.io": False}  # name: needs nodeName
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# Kinds the caches watch that no webhook judges: (apiGroup, resource). The watches are
# spawned in src/cluster/watch.rs (`spawn_all`); a unit test there checks base/rbac.yaml grants
# every kind, this the rendered ClusterRole of each overlay.
WATCHED_WITHOUT_WEBHOOK = {("storage.k8s.io", "csidrivers")}

Problems = list[str]
Check = tuple[str, Problems]

# The storage-admission binary (--binary): each Deployment's args are run through its
# `--check-args`, so a manifest cannot ship flags the binary refuses.
BINARY: Path | None = None


# ---------------------------------------------------------------------------------------------
# Helpers over a list of rendered objects.

def objects(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict | None:
    found = [d for d in objects(docs, kind) if name is None or d["metadata"].get("name") == name]
    return found[0] if len(found) == 1 else None


def webhooks(docs: list[dict]) -> list[tuple[str, dict]]:
    return [(cfg["kind"], w) for kind in WEBHOOK_KINDS for cfg in objects(docs, kind) for w in cfg.get("webhooks") or []]


def each_webhook(docs: list[dict], test: Callable[[str, dict], str | None]) -> Problems:
    hooks = webhooks(docs)
    if not hooks:
        return ["no webhooks rendered"]
    return [f"{w.get('name')}: {p}" for kind, w in hooks if (p := test(kind, w))]


def selector_excludes(selector: dict | None, key: str, values: set[str]) -> bool:
    """True when the selector requires `key` NotIn a set containing all of `values`."""
    for expr in (selector or {}).get("matchExpressions") or []:
        if expr.get("key") == key and expr.get("operator") == "NotIn" and values <= set(expr.get("values") or []):
            return True
    return False


def container(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


def args_of(dep: dict) -> list[str]:
    return [str(a) for a in container(dep).get("args") or []]


def flag(args: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value`; '' for a bare `--name`; None if absent."""
    for i, a in enumerate(args):
        if a == name:
            nxt = args[i + 1] if i + 1 < len(args) else ""
            return "" if nxt.startswith("--") else nxt
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def effective(dep: dict, key: str):
    """A security setting from the container, else from the pod."""
    c = container(dep).get("securityContext") or {}
    p = dep["spec"]["template"]["spec"].get("securityContext") or {}
    return c.get(key, p.get(key))


def rbac_rules(docs: list[dict]) -> list[tuple[dict, dict]]:
    return [(role, rule) for kind in ("ClusterRole", "Role") for role in objects(docs, kind) for rule in role.get("rules") or []]


# ---------------------------------------------------------------------------------------------
# Checks. Each returns (name, problems); no problems means it passed.

def webhook_checks(render: str, docs: list[dict]) -> list[Check]:
    checks: list[Check] = []

    def expected_set() -> Problems:
        got = {w.get("name"): kind for kind, w in webhooks(docs)}
        problems = [f"missing {n}" for n in WEBHOOKS if n not in got]
        problems += [f"unexpected {n}" for n in got if n not in WEBHOOKS]
        problems += [f"{n} is in {k}, expected {WEBHOOKS[n][0]}" for n, k in got.items() if n in WEBHOOKS and WEBHOOKS[n][0] != k]
        if len(got) != len(webhooks(docs)):
            problems.append("duplicate webhook names")
        for kind in WEBHOOK_KINDS:
            if one(docs, kind, NAME) is None:
                problems.append(f"no single {kind} named {NAME}")
        return problems

    checks.append((f"webhooks: one per concern, the expected {len(WEBHOOKS)}, in the right configuration", expected_set()))
    checks.append(("webhooks: sideEffects None", each_webhook(docs, lambda k, w: None if w.get("sideEffects") == "None" else f"sideEffects {w.get('sideEffects')!r}")))
    checks.append(("webhooks: admissionReviewVersions [v1]", each_webhook(docs, lambda k, w: None if w.get("admissionReviewVersions") == ["v1"] else f"admissionReviewVersions {w.get('admissionReviewVersions')!r}")))

    def timeout(k: str, w: dict) -> str | None:
        t = w.get("timeoutSeconds")
        if not isinstance(t, int) or not 1 <= t <= MAX_TIMEOUT:
            return f"timeoutSeconds {t!r} (must be set, 1..{MAX_TIMEOUT})"
        limit = WEBHOOKS.get(w.get("name"), (None, None, None, MAX_TIMEOUT))[3]
        return None if t <= limit else f"timeoutSeconds {t} > {limit}"

    checks.append((f"webhooks: timeoutSeconds set and <= {MAX_TIMEOUT} (and within each webhook's decided bound)", each_webhook(docs, timeout)))

    def failure_policy(k: str, w: dict) -> str | None:
        fp = w.get("failurePolicy")
        if fp not in ("Fail", "Ignore"):
            return f"failurePolicy {fp!r} (must be set explicitly)"
        want = WEBHOOKS.get(w.get("name"), (None, None, fp))[2]
        return None if fp == want else f"failurePolicy {fp}, decided {want}"

    checks.append(("webhooks: failurePolicy explicit and as decided", each_webhook(docs, failure_policy)))

    node = [w for _, w in webhooks(docs) if w.get("name") == NODE_WEBHOOK]
    checks.append(("webhooks: node-topology is Ignore with timeoutSeconds <= 3 (nodes must always register)",
                   ["node-topology webhook missing"] if not node else
                   [f"failurePolicy {w.get('failurePolicy')!r}, timeoutSeconds {w.get('timeoutSeconds')!r}" for w in node
                    if not (w.get("failurePolicy") == "Ignore" and isinstance(w.get("timeoutSeconds"), int) and w["timeoutSeconds"] <= 3)]))
    restore = [w for _, w in webhooks(docs) if w.get("name") == RESTORE_WEBHOOK]
    checks.append(("webhooks: restore-readiness is Fail and limited by matchConditions",
                   ["restore-readiness webhook missing"] if not restore else
                   [f"failurePolicy {w.get('failurePolicy')!r}, matchConditions {len(w.get('matchConditions') or [])}" for w in restore
                    if not (w.get("failurePolicy") == "Fail" and w.get("matchConditions"))]))
    pods = [w for _, w in webhooks(docs) if w.get("name") in POD_WEBHOOKS]
    checks.append(("webhooks: pod webhooks are Ignore, timeoutSeconds <= 2, CREATE only and limited by matchConditions",
                   [f"pod webhooks {sorted(w.get('name') for w in pods)}, expected {sorted(POD_WEBHOOKS)}"] if len(pods) != len(POD_WEBHOOKS) else
                   [f"{w.get('name')}: failurePolicy {w.get('failurePolicy')!r}, timeoutSeconds {w.get('timeoutSeconds')!r}, "
                    f"operations {[r.get('operations') for r in w.get('rules') or []]}, matchConditions {len(w.get('matchConditions') or [])}"
                    for w in pods
                    if not (w.get("failurePolicy") == "Ignore" and isinstance(w.get("timeoutSeconds"), int) and w["timeoutSeconds"] <= 2
                            and w.get("matchConditions") and all(r.get("operations") == ["CREATE"] for r in w.get("rules") or []))]))
    checks.append(("webhooks: namespaceSelector excludes storage-admission and kube-system", each_webhook(
        docs, lambda k, w: None if selector_excludes(w.get("namespaceSelector"), "kubernetes.io/metadata.name", EXCLUDED_NAMESPACES)
        else "namespaceSelector lacks kubernetes.io/metadata.name NotIn [storage-admission, kube-system]")))
    checks.append(("webhooks: objectSelector opt-out storage-admission.io/ignore NotIn [true]", each_webhook(
        docs, lambda k, w: None if selector_excludes(w.get("objectSelector"), "storage-admission.io/ignore", {"true"})
        else "objectSelector lacks storage-admission.io/ignore NotIn [\"true\"]")))
    checks.append(("webhooks: matchPolicy Equivalent", each_webhook(docs, lambda k, w: None if w.get("matchPolicy") == "Equivalent" else f"matchPolicy {w.get('matchPolicy')!r}")))

    def narrow(k: str, w: dict) -> str | None:
        rules = w.get("rules") or []
        if not rules:
            return "no rules"
        for r in rules:
            for field in ("operations", "apiGroups", "apiVersions", "resources"):
                vals = r.get(field) or []
                if not vals or any("*" in str(v) for v in vals):
                    return f"rules.{field} {vals!r} (must be explicit, no wildcards)"
            if not set(r["operations"]) <= {"CREATE", "UPDATE"}:
                return f"operations {r['operations']!r} (only CREATE/UPDATE are judged)"
            if any("/" in v for v in r["resources"]):
                return f"resources {r['resources']!r} (no subresources)"
            if r.get("scope") not in ("Namespaced", "Cluster"):
                return f"scope {r.get('scope')!r} (must be Namespaced or Cluster)"
        return None

    checks.append(("webhooks: narrow rules (explicit operations, groups, versions, resources, scope)", each_webhook(docs, narrow)))
    checks.append(("webhooks: every mutating webhook sets reinvocationPolicy", each_webhook(
        docs, lambda k, w: None if k != "MutatingWebhookConfiguration" or w.get("reinvocationPolicy") in ("Never", "IfNeeded")
        else f"reinvocationPolicy {w.get('reinvocationPolicy')!r}")))

    def client(k: str, w: dict) -> str | None:
        cc = w.get("clientConfig") or {}
        path = WEBHOOKS.get(w.get("name"), (None, "/mutate" if k.startswith("Mutating") else "/validate"))[1]
        if render == "dev-url":
            url = cc.get("url") or ""
            if "service" in cc:
                return "dev-url webhook still has clientConfig.service"
            if not (url.startswith("https://") and url.endswith(path) and url.count("/") == 3 and "HOST" not in url):
                return f"url {url!r} (want https://HOST:PORT{path}, host filled in)"
            return None if cc.get("caBundle") else "no caBundle (dev-url must set one)"
        svc = cc.get("service") or {}
        want = {"name": NAME, "namespace": NS, "path": path, "port": 443}
        if "url" in cc or svc != want:
            return f"clientConfig {cc!r}, want service {want}"
        return None

    checks.append(("webhooks: clientConfig targets the right endpoint (/mutate or /validate)", each_webhook(docs, client)))

    if render in ("base", "self-managed"):
        checks.append(("webhooks: no caBundle in the manifests (filled in at run time)",
                       each_webhook(docs, lambda k, w: "caBundle set" if (w.get("clientConfig") or {}).get("caBundle") else None)))
    if render == "cert-manager":
        checks.append(("cert-manager: inject-ca-from on both configurations names the serving Certificate", cert_manager_problems(docs)))
    return checks


def cert_manager_problems(docs: list[dict]) -> Problems:
    problems: Problems = []
    serving = [c for c in objects(docs, "Certificate") if c["spec"].get("secretName") == TLS_SECRET]
    if len(serving) != 1:
        return [f"{len(serving)} Certificates write Secret {TLS_SECRET}, want 1"]
    cert = serving[0]
    ref = f"{cert['metadata'].get('namespace')}/{cert['metadata']['name']}"
    for kind in WEBHOOK_KINDS:
        cfg = one(docs, kind, NAME)
        got = ((cfg or {}).get("metadata", {}).get("annotations") or {}).get("cert-manager.io/inject-ca-from")
        if got != ref:
            problems.append(f"{kind} inject-ca-from {got!r}, want {ref!r}")
        if cfg and any((w.get("clientConfig") or {}).get("caBundle") for w in cfg.get("webhooks") or []):
            problems.append(f"{kind} has a caBundle in the manifest (cainjector owns it)")
    svc = f"{NAME}.{NS}.svc"
    want = {NAME, f"{NAME}.{NS}", svc, f"{svc}.cluster.local"}
    if not want <= set(cert["spec"].get("dnsNames") or []):
        problems.append(f"dnsNames {cert['spec'].get('dnsNames')!r} lack {sorted(want - set(cert['spec'].get('dnsNames') or []))}")
    issuer = cert["spec"].get("issuerRef", {}).get("name")
    ca_issuer = one(docs, "Issuer", issuer)
    if not ca_issuer or "ca" not in ca_issuer["spec"]:
        problems.append(f"serving Certificate's issuer {issuer!r} is not a CA Issuer in this render")
    return problems


def container_env(c: dict) -> dict[str, str]:
    """The container's environment as the kubelet would set it, with a stand-in for each
    downward-API value (the pod's namespace and name)."""
    env = {}
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            field = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
            env[e["name"]] = {"metadata.namespace": NS, "metadata.name": f"{NAME}-0"}.get(field, "placeholder")
    return env


def args_problems(c: dict) -> Problems:
    """Runs the binary with the container's args (`$(VAR)` expanded as the kubelet does) and
    `--check-args`."""
    if BINARY is None:
        return ["no --binary given: cannot check the args against the CLI"]
    env = container_env(c)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(a)) for a in c.get("args") or []]
    command = [str(a) for a in c.get("command") or []]
    if command and Path(command[0]).name != "storage-admission":
        return [f"command {command!r} is not the storage-admission binary"]
    run = subprocess.run([str(BINARY), *command[1:], *args, "--check-args"], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=60)
    if run.returncode != 0:
        return [f"storage-admission {' '.join(args)} is refused: {(run.stderr or run.stdout).strip().splitlines()[0] if (run.stderr or run.stdout).strip() else run.returncode}"]
    return []


def deployment_checks(render: str, docs: list[dict], default_policy: str) -> list[Check]:
    dep = one(docs, "Deployment", NAME)
    if dep is None:
        return [("deployment: present", [f"no single Deployment {NAME}"])]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = container(dep)
    args = args_of(dep)
    checks: list[Check] = []
    checks.append(("deployment: replicas >= 2", [] if (spec.get("replicas") or 1) >= 2 else [f"replicas {spec.get('replicas')!r}"]))
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    checks.append(("deployment: RollingUpdate with maxUnavailable 0",
                   [] if spec.get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate" and ru.get("maxUnavailable") in (0, "0", "0%")
                   else [f"strategy {spec.get('strategy')!r}"]))
    sec: Problems = []
    if effective(dep, "runAsNonRoot") is not True:
        sec.append("runAsNonRoot not true")
    if effective(dep, "runAsUser") != 65532:
        sec.append(f"runAsUser {effective(dep, 'runAsUser')!r}, want 65532")
    csc = c.get("securityContext") or {}
    if csc.get("readOnlyRootFilesystem") is not True:
        sec.append("readOnlyRootFilesystem not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        sec.append("allowPrivilegeEscalation not false")
    if (csc.get("capabilities") or {}).get("drop") != ["ALL"] or (csc.get("capabilities") or {}).get("add"):
        sec.append(f"capabilities {csc.get('capabilities')!r}, want drop [ALL] and nothing added")
    if (effective(dep, "seccompProfile") or {}).get("type") != "RuntimeDefault":
        sec.append("seccompProfile not RuntimeDefault")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC") or csc.get("privileged"):
        sec.append("host namespaces or privileged")
    checks.append(("deployment: security context (non-root 65532, read-only root, no escalation, no capabilities, RuntimeDefault seccomp)", sec))
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}

    def probe(kind: str, path: str) -> Problems:
        g = (c.get(kind) or {}).get("httpGet") or {}
        if g.get("path") != path or g.get("port") not in ("admin", 8080) or ports.get("admin") != 8080:
            return [f"{kind} {c.get(kind)!r}, want httpGet {path} on the admin port 8080"]
        return []

    checks.append(("deployment: liveness /livez and readiness /readyz on the admin port", probe("livenessProbe", "/livez") + probe("readinessProbe", "/readyz")))
    sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    checks.append(("deployment: preStop sleep, and terminationGracePeriodSeconds covers it plus drain",
                   [] if isinstance(sleep, int) and sleep > 0 and grace >= sleep + 10 else [f"preStop sleep {sleep!r}, grace {grace!r} (want sleep > 0, grace >= sleep + 10)"]))
    res = c.get("resources") or {}
    checks.append(("deployment: resource requests (cpu, memory) and a memory limit",
                   [] if {"cpu", "memory"} <= set(res.get("requests") or {}) and "memory" in (res.get("limits") or {}) else [f"resources {res!r}"]))
    env = {e.get("name"): e for e in c.get("env") or []}
    ns_ok = ((env.get("POD_NAMESPACE") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace"
    checks.append(("deployment: --namespace from POD_NAMESPACE (downward API)",
                   [] if ns_ok and flag(args, "--namespace") == "$(POD_NAMESPACE)" else [f"env {list(env)}, --namespace {flag(args, '--namespace')!r}"]))
    checks.append(("deployment: command is `run` with JSON logs", [] if args[:1] == ["run"] and flag(args, "--log-format") == "json" else [f"args {args!r}"]))
    checks.append(("deployment: the binary accepts the container args (--check-args)", args_problems(c)))
    sa_name = pod.get("serviceAccountName")
    checks.append(("deployment: own ServiceAccount, token mounted (it needs the API)",
                   [] if sa_name == NAME and one(docs, "ServiceAccount", NAME) and pod.get("automountServiceAccountToken") is True
                   else [f"serviceAccountName {sa_name!r}, automountServiceAccountToken {pod.get('automountServiceAccountToken')!r}"]))
    spread = {t.get("topologyKey"): t for t in pod.get("topologySpreadConstraints") or []}
    spread_problems = []
    if (spread.get("kubernetes.io/hostname") or {}).get("labelSelector", {}).get("matchLabels") != POD_LABELS:
        spread_problems.append("no hostname spread over the pod labels")
    if (spread.get("topology.kubernetes.io/zone") or {}).get("whenUnsatisfiable") != "ScheduleAnyway":
        spread_problems.append("no zone spread with ScheduleAnyway")
    checks.append(("deployment: spread across nodes and (ScheduleAnyway) zones", spread_problems))

    # Volumes: the TLS Secret and the policy ConfigMap, mounted where the flags point.
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    tls_problems = []
    tls = [n for n, v in vols.items() if (v.get("secret") or {}).get("secretName") == TLS_SECRET]
    if render == "self-managed":
        # Every replica watches the Secret and serves it from memory; a volume would lag by
        # kubelet's sync period and block the first start (the Secret is written by a pod).
        if tls or flag(args, "--tls-cert") is not None or flag(args, "--tls-key") is not None:
            tls_problems.append(f"self-managed: Secret {TLS_SECRET} mounted or --tls-cert/--tls-key set; the replicas watch it instead")
        if flag(args, "--certs") != "self-managed" or flag(args, "--register") != "":
            tls_problems.append(f"self-managed: args {args!r} lack --certs self-managed --register")
        if flag(args, "--tls-secret") not in (None, TLS_SECRET):
            tls_problems.append(f"--tls-secret {flag(args, '--tls-secret')!r}, RBAC grants {TLS_SECRET}")
    elif len(tls) != 1 or tls[0] not in mounts:
        tls_problems.append(f"Secret {TLS_SECRET} not mounted exactly once")
    else:
        for f, file in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")):
            if flag(args, f) != f"{mounts[tls[0]].rstrip('/')}/{file}":
                tls_problems.append(f"{f} {flag(args, f)!r} is not {file} in the mounted Secret")
        if flag(args, "--certs") not in (None, "files"):
            tls_problems.append(f"--certs {flag(args, '--certs')!r}, the Secret is mounted files here")
        if vols[tls[0]]["secret"].get("optional") is True:
            tls_problems.append("Secret volume optional (a pod would start without certificates)")
    checks.append(("deployment: TLS Secret mounted where --tls-cert/--tls-key point (self-managed: watched, not mounted)", tls_problems))

    pol_problems = []
    pol = [n for n, v in vols.items() if "configMap" in v]
    cm_name = vols[pol[0]]["configMap"]["name"] if len(pol) == 1 else None
    cm = one(docs, "ConfigMap", cm_name) if cm_name else None
    if cm is None or pol[0] not in mounts:
        pol_problems.append(f"policy ConfigMap {cm_name!r} not rendered or not mounted")
    else:
        if flag(args, "--policy") != f"{mounts[pol[0]].rstrip('/')}/policy.yaml":
            pol_problems.append(f"--policy {flag(args, '--policy')!r} is not policy.yaml in the mounted ConfigMap")
        if (cm.get("data") or {}).get("policy.yaml") != default_policy:
            pol_problems.append(f"ConfigMap {cm_name} policy.yaml differs from policies/default.yaml")
    checks.append(("deployment: deployed policy ConfigMap mounted and equal to policies/default.yaml", pol_problems))

    pdbs = objects(docs, "PodDisruptionBudget")
    checks.append(("pdb: present, minAvailable 1, selects the pods",
                   [] if len(pdbs) == 1 and pdbs[0]["spec"].get("minAvailable") == 1 and pdbs[0]["spec"].get("selector", {}).get("matchLabels") == POD_LABELS
                   and spec["selector"].get("matchLabels") == POD_LABELS and POD_LABELS.items() <= spec["template"]["metadata"]["labels"].items()
                   else [f"{len(pdbs)} PDBs: {[p['spec'] for p in pdbs]!r}"]))
    svc = one(docs, "Service", NAME)
    svc_ok = (svc is not None and svc["spec"].get("selector") == POD_LABELS
              and [(p.get("port"), ports.get(p.get("targetPort"), p.get("targetPort"))) for p in svc["spec"].get("ports") or []] == [(443, 8443)])
    checks.append(("service: storage-admission 443 -> 8443, selects the pods", [] if svc_ok else [f"service {svc and svc['spec']!r}"]))
    return checks


def rbac_checks(render: str, docs: list[dict]) -> list[Check]:
    checks: list[Check] = []
    rules = rbac_rules(docs)
    wild = [f"{role['kind']}/{role['metadata']['name']}: {rule}" for role, rule in rules
            if any("*" in str(v) for f in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs") for v in rule.get(f) or [])]
    checks.append(("rbac: no wildcard verbs, resources or groups", wild if rules else ["no RBAC rules rendered"]))

    # Every kind a webhook judges is one the rules read from a watch cache, so the ClusterRole
    # must let it list and watch each (a missing grant shows only at run time, as a cache that
    # never syncs and rules that answer whenStateUnavailable); so must the kinds watched for
    # the controller's diagnoses only, which no webhook names (WATCHED_WITHOUT_WEBHOOK).
    if render in IN_CLUSTER:
        cluster_rules = [r for role, r in rules if role["kind"] == "ClusterRole" and role["metadata"]["name"] == NAME]
        watched = {(g, res) for r in cluster_rules if {"list", "watch"} <= set(r.get("verbs") or [])
                   for g in r.get("apiGroups") or [] for res in r.get("resources") or []}
        judged = {(g, res) for _, w in webhooks(docs) for r in w.get("rules") or []
                  for g in r.get("apiGroups") or [] for res in r.get("resources") or []}
        unwatched = [f"{g or 'core'}/{res}" for g, res in sorted((judged | WATCHED_WITHOUT_WEBHOOK) - watched)]
        checks.append(("rbac: list and watch on every kind a webhook judges or the caches watch", unwatched))

    limited = {"get", "update", "patch", "delete"}
    wh: Problems = []
    granted: set[str] = set()
    for role, rule in rules:
        for res in rule.get("resources") or []:
            if res in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
                verbs = set(rule.get("verbs") or [])
                granted |= verbs
                if verbs & limited and rule.get("resourceNames") != [NAME]:
                    wh.append(f"{role['kind']}/{role['metadata']['name']} {sorted(verbs)} on {res} not limited to resourceNames [{NAME}]")
                if verbs - limited:
                    wh.append(f"{res}: unexpected verbs {sorted(verbs - limited)}")
    if render == "self-managed" and not {"get", "patch"} <= granted:
        wh.append(f"self-managed (--register, server-side apply) needs get/patch on the webhook configurations, has {sorted(granted)}")
    checks.append(("rbac: webhook configuration get/patch limited by resourceNames", wh))

    # `create` on admissionregistration cannot be limited by resourceNames (RBAC does not see
    # the name of an object being created): whoever holds it can register a webhook of their
    # own on Pods or Secrets. The manifests create the configurations; --register only updates.
    creates = [f"{role['kind']}/{role['metadata']['name']}: {rule}" for role, rule in rules
               if "create" in (rule.get("verbs") or []) and "admissionregistration.k8s.io" in (rule.get("apiGroups") or [])]
    checks.append(("rbac: no create on admissionregistration resources (the manifests create the webhook configurations)", creates))

    ns_problems: Problems = []
    seen: dict[str, set[str]] = {"secrets": set(), "leases": set()}
    names = {"secrets": TLS_SECRET, "leases": LEASE}
    for role, rule in rules:
        for res in rule.get("resources") or []:
            if res in seen:
                where = f"{role['kind']}/{role['metadata']['name']}"
                if role["kind"] != "Role" or role["metadata"].get("namespace") != NS:
                    ns_problems.append(f"{where} grants {res} outside a Role in {NS}")
                verbs = set(rule.get("verbs") or [])
                seen[res] |= verbs
                if verbs - {"create"} and rule.get("resourceNames") != [names[res]]:
                    ns_problems.append(f"{where} {sorted(verbs)} on {res} not limited to [{names[res]}]")
                # The Secret may be listed and watched by name (fieldSelector metadata.name,
                # checked against resourceNames): the replicas watch it in self-managed mode.
                allowed = {"get", "create", "update"} | ({"list", "watch"} if res == "secrets" else set())
                if verbs - allowed:
                    ns_problems.append(f"{where} {sorted(verbs)} on {res}: more than {sorted(allowed)}")
    if not {"get", "create", "update"} <= seen["leases"]:
        ns_problems.append(f"leader election needs get/create/update on leases, has {sorted(seen['leases'])}")
    if render == "self-managed" and not {"get", "list", "watch", "create", "update"} <= seen["secrets"]:
        ns_problems.append(f"self-managed needs get/list/watch/create/update on its Secret, has {sorted(seen['secrets'])}")
    checks.append(("rbac: Secret and Lease permissions only in the namespaced Role, by name", ns_problems))

    pod_verbs: set[str] = set()
    for role, rule in rules:
        if "" in (rule.get("apiGroups") or []) and "pods" in (rule.get("resources") or []):
            pod_verbs |= set(rule.get("verbs") or [])
    checks.append(("rbac: pods list and watch only (the audit's Pending pods; never read one by one, never written)",
                   [] if pod_verbs == {"list", "watch"} else [f"verbs on pods {sorted(pod_verbs)}, want ['list', 'watch']"]))

    bind_problems: Problems = []
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for role in objects(docs, role_kind):
            bound = [b for b in objects(docs, kind) if b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role["metadata"]["name"]}
                     and b.get("subjects") == [{"kind": "ServiceAccount", "name": NAME, "namespace": NS}]]
            if not bound:
                bind_problems.append(f"{role_kind}/{role['metadata']['name']} not bound to ServiceAccount {NS}/{NAME} (and only it)")
    checks.append(("rbac: roles bound to the storage-admission ServiceAccount only", bind_problems))
    return checks


def cel_checks(docs: list[dict], repo: Path) -> list[Check]:
    """Evaluates the restore webhook's matchConditions (CEL) on real and synthetic PVCs: it must
    select restores and clones only, and never error (an error applies failurePolicy Fail)."""
    import celpy  # cel-python, installed by check.sh

    restore = [w for _, w in webhooks(docs) if w.get("name") == RESTORE_WEBHOOK]
    if not restore or not restore[0].get("matchConditions"):
        return [("cel: restore matchConditions select restores and clones only, without errors", ["no matchConditions"])]
    golden = repo / "tests" / "golden" / "captured"
    cases: list[tuple[str, dict, bool]] = []
    for name, want in (("validate-create-persistentvolumeclaim-restore-pvc", True), ("mutate-create-persistentvolumeclaim-disk-pvc", False)):
        path = golden / name / "review.json"
        if path.exists():
            cases.append((f"golden {name}", json.loads(path.read_text())["request"]["object"], want))
        else:
            cases.append((f"golden {name}", {"missing": str(path)}, want))
    snap = {"kind": "VolumeSnapshot", "name": "s", "apiGroup": "snapshot.storage.k8s.io"}
    for label, spec, want in [
        ("no dataSource", {}, False),
        ("dataSource VolumeSnapshot", {"dataSource": snap}, True),
        ("dataSourceRef VolumeSnapshot only", {"dataSourceRef": snap}, True),
        ("VolumeSnapshot without apiGroup", {"dataSource": {"kind": "VolumeSnapshot", "name": "s"}}, False),
        ("VolumeSnapshot of another group", {"dataSource": {**snap, "apiGroup": "example.com"}}, False),
        ("PVC clone, apiGroup absent", {"dataSource": {"kind": "PersistentVolumeClaim", "name": "p"}}, True),
        ("PVC clone, apiGroup empty", {"dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "p", "apiGroup": ""}}, True),
        ("populator dataSourceRef", {"dataSourceRef": {"kind": "Backup", "name": "b", "apiGroup": "backup.example.com"}}, False),
    ]:
        cases.append((label, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}, "spec": spec}, want))
    cases.append(("object without spec", {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}}, False))

    env = celpy.Environment()
    problems: Problems = []
    for cond in restore[0]["matchConditions"]:
        try:
            program = env.program(env.compile(cond["expression"]))
        except Exception as e:  # noqa: BLE001 - report any compile error
            problems.append(f"{cond.get('name')}: does not compile: {e}")
            continue
        for label, obj, want in cases:
            try:
                got = program.evaluate({"object": celpy.json_to_cel(obj)})
            except Exception as e:  # noqa: BLE001
                got = e
            if isinstance(got, Exception) or type(got).__name__ == "CELEvalError":
                problems.append(f"{cond.get('name')} on {label}: evaluation error {got}")
            elif bool(got) != want:
                problems.append(f"{cond.get('name')} on {label}: {bool(got)}, want {want}")
    return [(f"cel: restore matchConditions select restores and clones only, without errors ({len(cases)} PVCs)", problems)]


def pod_cel_checks(docs: list[dict], repo: Path) -> list[Check]:
    """Evaluates the pod webhooks' matchConditions (CEL) on the captured and synthetic pods: the
    mutating one must select pinned pods with a claim, the validating one pods with a claim,
    and neither may error."""
    import celpy  # cel-python, installed by check.sh

    title = "cel: pod matchConditions select pods with a claim (and nodeName, mutating) only, without errors"
    golden = repo / "tests" / "golden" / "pods" / "captured"
    claim = {"name": "d", "persistentVolumeClaim": {"claimName": "c"}}
    ephemeral = {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
    config = {"name": "cfg", "configMap": {"name": "x"}}
    # (label, object, selected by the mutating webhook, selected by the validating webhook)
    cases: list[tuple[str, dict, bool, bool]] = []
    for name, want in (("mutate-create-pod-mysql-pinned", (True, True)), ("kube-1.34-mutate-create-pod-mysql-pinned", (True, True)),
                       ("mutate-create-pod-web-no-volumes", (False, False))):
        path = golden / name / "review.json"
        obj = json.loads(path.read_text())["request"]["object"] if path.exists() else {"missing": str(path)}
        cases.append((f"golden {name}", obj, *want))
    for label, spec, mutating, validating in [
        ("pinned, claim", {"nodeName": "n", "volumes": [config, claim]}, True, True),
        ("pinned, ephemeral volume", {"nodeName": "n", "volumes": [ephemeral]}, True, True),
        ("pinned, no claim", {"nodeName": "n", "volumes": [config]}, False, False),
        ("pinned, no volumes", {"nodeName": "n"}, False, False),
        ("empty nodeName, claim", {"nodeName": "", "volumes": [claim]}, False, True),
        ("not pinned, claim", {"volumes": [claim]}, False, True),
        ("not pinned, nothing", {}, False, False),
    ]:
        cases.append((label, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}, mutating, validating))
    cases.append(("object without spec", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, False, False))

    env = celpy.Environment()
    problems: Problems = []
    hooks = {w.get("name"): w for _, w in webhooks(docs) if w.get("name") in POD_WEBHOOKS}
    for name, needs_node in POD_WEBHOOKS.items():
        conds = (hooks.get(name) or {}).get("matchConditions") or []
        if not conds:
            problems.append(f"{name}: no matchConditions")
        for cond in conds:
            try:
                program = env.program(env.compile(cond["expression"]))
            except Exception as e:  # noqa: BLE001 - report any compile error
                problems.append(f"{name} {cond.get('name')}: does not compile: {e}")
                continue
            for label, obj, mutating, validating in cases:
                want = mutating if needs_node else validating
                try:
                    got = program.evaluate({"object": celpy.json_to_cel(obj)})
                except Exception as e:  # noqa: BLE001
                    got = e
                if isinstance(got, Exception) or type(got).__name__ == "CELEvalError":
                    problems.append(f"{name} {cond.get('name')} on {label}: evaluation error {got}")
                elif bool(got) != want:
                    problems.append(f"{name} {cond.get('name')} on {label}: {bool(got)}, want {want}")
    return [(f"{title} ({len(cases)} pods)", problems)]


def schema_checks(render: str, docs: list[dict], versions: list[str]) -> tuple[list[Check], list[str]]:
    import kubernetes_validate as kv

    checks: list[Check] = []
    skips: list[str] = []
    for doc in docs:
        if doc.get("apiVersion", "").startswith("cert-manager.io/"):
            skips.append(f"schema [{render}] {doc['kind']}/{doc['metadata']['name']}: cert-manager CRD object, "
                         "not in kubernetes-validate's built-in schemas (checked by the invariants instead)")
    for version in versions:
        problems: Problems = []
        count = 0
        for doc in docs:
            if doc.get("apiVersion", "").startswith("cert-manager.io/"):
                continue
            count += 1
            try:
                kv.validate(doc, version, strict=True)
            except Exception as e:  # noqa: BLE001 - ValidationError, SchemaNotFoundError, ...
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                problems.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {type(e).__name__}: {first}")
        checks.append((f"schema: {count} objects valid against Kubernetes {version} (strict)", problems))
    return checks, skips


def dev_url_commands(repo: Path) -> tuple[dict[str, list[str]], Problems]:
    """The commands the "dev-url" section of webhook-config/README.md tells a developer to run:
    `storage-admission certs …` and `storage-admission run …` (as argument lists) and the
    `kubectl kustomize … | sed … | kubectl apply` line (as text)."""
    text = (repo / "webhook-config" / "README.md").read_text()
    start = text.find("### dev-url")
    if start < 0:
        return {}, ["webhook-config/README.md has no '### dev-url' section"]
    section = text[start:text.find("\n## ", start) if text.find("\n## ", start) > 0 else len(text)]
    lines = re.sub(r"\\\n\s*", " ", section).splitlines()  # join `\` continuations
    found: dict[str, list[str]] = {}
    problems: Problems = []
    for key, prefix in (("certs", "storage-admission certs "), ("run", "storage-admission run "),
                        ("apply", "kubectl kustomize webhook-config/overlays/dev-url |")):
        hits = [ln.strip() for ln in lines if ln.strip().startswith(prefix)]
        if len(hits) != 1:
            problems.append(f"{len(hits)} lines starting with {prefix!r} in the dev-url section, want 1")
            continue
        found[key] = [hits[0]] if key == "apply" else shlex.split(hits[0])[2:]  # after `storage-admission certs`
    return found, problems


def dev_url_checks(docs: list[dict], repo: Path) -> list[Check]:
    checks: list[Check] = []
    bundles = {(w.get("clientConfig") or {}).get("caBundle") for _, w in webhooks(docs)}

    def bundle() -> Problems:
        if len(bundles) != 1 or None in bundles or "" in bundles:
            return [f"caBundles {sorted(map(str, bundles))}: want one value in every webhook"]
        try:
            base64.b64decode(next(iter(bundles)), validate=True)
        except (binascii.Error, ValueError):
            return []
        return ["caBundle is valid base64: a committed CA, or a placeholder that lets an unedited apply register unverifiable webhooks"]

    checks.append(("dev-url: caBundle the same placeholder in every webhook, not valid base64 (an unedited apply fails)", bundle()))

    def documented() -> Problems:
        if BINARY is None:
            return ["no --binary given: cannot check the documented commands against the CLI"]
        commands, problems = dev_url_commands(repo)
        if problems:
            return problems
        urls = [urlsplit((w.get("clientConfig") or {}).get("url") or "") for _, w in webhooks(docs)]
        certs, run = commands["certs"], commands["run"]
        out = flag(certs, "--out")
        sans = [certs[i + 1] for i, a in enumerate(certs[:-1]) if a == "--san"] + [a.split("=", 1)[1] for a in certs if a.startswith("--san=")]
        if not out:
            return ["the certs command has no --out"]
        with tempfile.TemporaryDirectory() as tmp:
            args = [tmp if a == out else a.replace(f"--out={out}", f"--out={tmp}") for a in certs]
            done = subprocess.run([str(BINARY), "certs", *args], capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                problems.append(f"storage-admission certs {' '.join(certs)} fails: {done.stderr.strip()}")
        done = subprocess.run([str(BINARY), "run", *run, "--check-args"], capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k not in ("POD_NAMESPACE", "POD_NAME")})
        if done.returncode != 0:
            problems.append(f"storage-admission run {' '.join(run)} is refused: {done.stderr.strip()}")
        port = (flag(run, "--listen") or "0.0.0.0:8443").rsplit(":", 1)[1]
        for host in sorted({str(u.hostname) for u in urls} - set(sans)):
            problems.append(f"url host {host!r} is not a --san of the documented certs command ({sans})")
        for other in sorted({str(u.port) for u in urls} - {port}):
            problems.append(f"url port {other} is not the documented run's --listen port {port}")
        d = out.rstrip("/")
        if flag(run, "--tls-cert") != f"{d}/tls.crt" or flag(run, "--tls-key") != f"{d}/tls.key":
            problems.append(f"run serves {flag(run, '--tls-cert')}/{flag(run, '--tls-key')}, not the pair certs writes to {out}")
        if flag(run, "--namespace") != NS:
            problems.append(f"run --namespace {flag(run, '--namespace')!r}: want {NS}, the namespace the webhooks exclude (the controller skips its own)")
        if flag(run, "--leader-election") != "false":
            problems.append("run without --leader-election=false: a Lease in a namespace the overlay does not create")
        apply = commands["apply"][0]
        if f"base64 < {d}/ca.crt" not in apply:
            problems.append(f"the apply command does not take the CA from {d}/ca.crt: {apply}")
        placeholder = re.search(r"sed \"s\|([^|]+)\|", apply)
        if not placeholder or {placeholder.group(1)} != bundles:
            problems.append(f"the apply command's sed replaces {placeholder.group(1) if placeholder else None!r}, the rendered caBundle is {sorted(map(str, bundles))}")
        return problems

    checks.append(("dev-url: documented commands (webhook-config/README.md) match the overlay and the CLI", documented()))
    return checks


def invariant_checks(render: str, docs: list[dict], default_policy: str, repo: Path) -> list[Check]:
    checks = webhook_checks(render, docs)
    if render in IN_CLUSTER:
        checks += deployment_checks(render, docs, default_policy)
        checks += rbac_checks(render, docs)
        ns = one(docs, "Namespace", NS)
        checks.append(("namespace: storage-admission, restricted Pod Security enforced",
                       [] if ns and (ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") == "restricted" else ["missing or not restricted"]))
    if render == "base":
        checks += cel_checks(docs, repo)
        checks += pod_cel_checks(docs, repo)
    if render == "dev-url":
        checks += dev_url_checks(docs, repo)
    return checks


# ---------------------------------------------------------------------------------------------
# Self-test: each mutation breaks one invariant and must make the named check fail.

def _hook(docs, name):
    return next(w for _, w in webhooks(docs) if w["name"] == name)


def _dep(docs):
    return one(docs, "Deployment", NAME)


def _cm(docs):
    return objects(docs, "ConfigMap")[0]


def _rule(docs, kind, res):
    return next(r for role, r in rbac_rules(docs) if role["kind"] == kind and res in r.get("resources", []))


MUTATIONS: list[tuple[str, str, str, Callable[[list[dict]], None]]] = [
    ("base", "webhooks: one per concern", "a webhook removed", lambda d: one(d, "ValidatingWebhookConfiguration", NAME)["webhooks"].pop()),
    ("base", "webhooks: sideEffects None", "sideEffects Unknown", lambda d: _hook(d, RESTORE_WEBHOOK).update(sideEffects="Unknown")),
    ("base", "webhooks: admissionReviewVersions", "v1beta1 added", lambda d: _hook(d, NODE_WEBHOOK).update(admissionReviewVersions=["v1", "v1beta1"])),
    ("base", "webhooks: timeoutSeconds", "timeoutSeconds 30", lambda d: _hook(d, RESTORE_WEBHOOK).update(timeoutSeconds=30)),
    ("base", "webhooks: timeoutSeconds", "timeoutSeconds removed", lambda d: _hook(d, "local-volumes.storage-admission.io").pop("timeoutSeconds")),
    ("base", "webhooks: failurePolicy", "failurePolicy removed", lambda d: _hook(d, "binding-mode.storage-admission.io").pop("failurePolicy")),
    ("base", "webhooks: failurePolicy", "snapshot-validation set to Fail", lambda d: _hook(d, "snapshot-validation.storage-admission.io").update(failurePolicy="Fail")),
    ("base", "webhooks: node-topology", "node webhook Fail", lambda d: _hook(d, NODE_WEBHOOK).update(failurePolicy="Fail")),
    ("base", "webhooks: node-topology", "node webhook timeout 5", lambda d: _hook(d, NODE_WEBHOOK).update(timeoutSeconds=5)),
    ("base", "webhooks: restore-readiness", "restore matchConditions removed", lambda d: _hook(d, RESTORE_WEBHOOK).pop("matchConditions")),
    ("base", "webhooks: restore-readiness", "restore Ignore", lambda d: _hook(d, RESTORE_WEBHOOK).update(failurePolicy="Ignore")),
    ("base", "webhooks: namespaceSelector", "kube-system no longer excluded",
     lambda d: _hook(d, "binding-mode.storage-admission.io").update(namespaceSelector={"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["storage-admission"]}]})),
    ("base", "webhooks: objectSelector", "opt-out selector removed", lambda d: _hook(d, "local-volumes.storage-admission.io").pop("objectSelector")),
    ("base", "webhooks: matchPolicy", "matchPolicy Exact", lambda d: _hook(d, RESTORE_WEBHOOK).update(matchPolicy="Exact")),
    ("base", "webhooks: narrow rules", "resources *", lambda d: _hook(d, NODE_WEBHOOK)["rules"][0].update(resources=["*"])),
    ("base", "webhooks: narrow rules", "DELETE added", lambda d: _hook(d, NODE_WEBHOOK)["rules"][0].update(operations=["CREATE", "UPDATE", "DELETE"])),
    ("base", "webhooks: narrow rules", "scope removed", lambda d: _hook(d, RESTORE_WEBHOOK)["rules"][0].pop("scope")),
    ("base", "webhooks: every mutating webhook sets reinvocationPolicy", "reinvocationPolicy removed",
     lambda d: _hook(d, "snapshot-class-defaulting.storage-admission.io").pop("reinvocationPolicy")),
    ("base", "webhooks: clientConfig", "mutating webhook calls /validate", lambda d: _hook(d, NODE_WEBHOOK)["clientConfig"]["service"].update(path="/validate")),
    ("base", "webhooks: no caBundle", "caBundle in the base", lambda d: _hook(d, NODE_WEBHOOK)["clientConfig"].update(caBundle="Cg==")),
    ("dev-url", "webhooks: clientConfig", "a webhook left on the service",
     lambda d: _hook(d, RESTORE_WEBHOOK).update(clientConfig={"service": {"name": NAME, "namespace": NS, "path": "/validate", "port": 443}})),
    ("dev-url", "webhooks: clientConfig", "HOST placeholder left", lambda d: _hook(d, RESTORE_WEBHOOK)["clientConfig"].update(url="https://HOST/validate")),
    ("dev-url", "dev-url: caBundle", "one webhook without caBundle", lambda d: _hook(d, RESTORE_WEBHOOK)["clientConfig"].pop("caBundle")),
    ("dev-url", "dev-url: caBundle", "a valid base64 caBundle committed",
     lambda d: [w["clientConfig"].update(caBundle="Zm9v") for _, w in webhooks(d)]),
    ("dev-url", "dev-url: documented commands", "placeholder the documented sed does not replace",
     lambda d: [w["clientConfig"].update(caBundle="REPLACE-ME") for _, w in webhooks(d)]),
    ("dev-url", "dev-url: documented commands", "url host not a --san of the documented certificate",
     lambda d: _hook(d, RESTORE_WEBHOOK)["clientConfig"].update(url="https://172.18.0.1:8443/validate")),
    ("dev-url", "dev-url: documented commands", "url port not the documented run's --listen port",
     lambda d: _hook(d, RESTORE_WEBHOOK)["clientConfig"].update(url="https://host.docker.internal:9443/validate")),
    ("cert-manager", "cert-manager: inject-ca-from", "annotation removed from the validating configuration",
     lambda d: one(d, "ValidatingWebhookConfiguration", NAME)["metadata"].pop("annotations")),
    ("cert-manager", "cert-manager: inject-ca-from", "dnsNames lose .svc",
     lambda d: [c for c in objects(d, "Certificate") if c["spec"].get("secretName") == TLS_SECRET][0]["spec"].update(dnsNames=[NAME])),
    ("base", "deployment: replicas", "replicas 1", lambda d: _dep(d)["spec"].update(replicas=1)),
    ("base", "deployment: RollingUpdate", "maxUnavailable 1", lambda d: _dep(d)["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable=1)),
    ("base", "deployment: security context", "readOnlyRootFilesystem false", lambda d: container(_dep(d))["securityContext"].update(readOnlyRootFilesystem=False)),
    ("base", "deployment: security context", "runAsNonRoot removed",
     lambda d: (container(_dep(d))["securityContext"].pop("runAsNonRoot"), _dep(d)["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"))),
    ("base", "deployment: security context", "allowPrivilegeEscalation true", lambda d: container(_dep(d))["securityContext"].update(allowPrivilegeEscalation=True)),
    ("base", "deployment: security context", "NET_BIND_SERVICE added", lambda d: container(_dep(d))["securityContext"]["capabilities"].update(add=["NET_BIND_SERVICE"])),
    ("base", "deployment: security context", "seccomp Unconfined",
     lambda d: (container(_dep(d))["securityContext"].update(seccompProfile={"type": "Unconfined"}))),
    ("base", "deployment: liveness", "readiness on /livez", lambda d: container(_dep(d))["readinessProbe"]["httpGet"].update(path="/livez")),
    ("base", "deployment: preStop", "grace shorter than preStop + drain", lambda d: _dep(d)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=6)),
    ("base", "deployment: resource", "memory limit removed", lambda d: container(_dep(d))["resources"].pop("limits")),
    ("base", "deployment: --namespace", "POD_NAMESPACE env removed", lambda d: container(_dep(d)).pop("env")),
    ("base", "deployment: own ServiceAccount", "token not mounted", lambda d: _dep(d)["spec"]["template"]["spec"].update(automountServiceAccountToken=False)),
    ("base", "deployment: spread", "zone spread removed",
     lambda d: _dep(d)["spec"]["template"]["spec"].update(topologySpreadConstraints=_dep(d)["spec"]["template"]["spec"]["topologySpreadConstraints"][:1])),
    ("base", "deployment: TLS Secret", "Secret optional in files mode",
     lambda d: [v for v in _dep(d)["spec"]["template"]["spec"]["volumes"] if "secret" in v][0]["secret"].update(optional=True)),
    ("self-managed", "deployment: TLS Secret", "Secret mounted again",
     lambda d: _dep(d)["spec"]["template"]["spec"]["volumes"].append({"name": "tls", "secret": {"secretName": TLS_SECRET}})),
    ("self-managed", "deployment: TLS Secret", "--tls-cert left in", lambda d: container(_dep(d))["args"].append("--tls-cert=/tls/tls.crt")),
    ("self-managed", "deployment: TLS Secret", "--register dropped", lambda d: container(_dep(d))["args"].remove("--register")),
    ("base", "deployment: the binary accepts", "a flag the binary does not have", lambda d: container(_dep(d))["args"].append("--no-such-flag")),
    ("self-managed", "deployment: the binary accepts", "--register dropped (self-managed needs it)",
     lambda d: container(_dep(d))["args"].remove("--register")),
    ("cert-manager", "deployment: the binary accepts", "--tls-key dropped", lambda d: container(_dep(d)).update(args=[a for a in container(_dep(d))["args"] if not a.startswith("--tls-key")])),
    ("self-managed", "deployment: TLS Secret", "--tls-secret renamed", lambda d: container(_dep(d))["args"].append("--tls-secret=other")),
    ("base", "deployment: deployed policy", "policy edited in the ConfigMap",
     lambda d: _cm(d)["data"].update({"policy.yaml": _cm(d)["data"]["policy.yaml"] + "# drift\n"})),
    ("base", "pdb:", "PDB removed", lambda d: d.remove(one(d, "PodDisruptionBudget"))),
    ("base", "pdb:", "minAvailable 0", lambda d: one(d, "PodDisruptionBudget")["spec"].update(minAvailable=0)),
    ("base", "service:", "targetPort admin", lambda d: one(d, "Service", NAME)["spec"]["ports"][0].update(targetPort="admin")),
    ("base", "rbac: no wildcard", "verbs *", lambda d: _rule(d, "ClusterRole", "nodes").update(verbs=["*"])),
    ("base", "rbac: no wildcard", "apiGroups *", lambda d: _rule(d, "ClusterRole", "storageclasses").update(apiGroups=["*"])),
    ("base", "rbac: list and watch on every kind", "group snapshot watch dropped",
     lambda d: _rule(d, "ClusterRole", "volumegroupsnapshots").update(verbs=["get"])),
    ("cert-manager", "rbac: list and watch on every kind", "a judged kind's watch rule removed",
     lambda d: one(d, "ClusterRole", NAME)["rules"].remove(_rule(d, "ClusterRole", "persistentvolumes"))),
    ("self-managed", "rbac: list and watch on every kind", "the CSIDriver watch rule removed (no webhook names it)",
     lambda d: one(d, "ClusterRole", NAME)["rules"].remove(_rule(d, "ClusterRole", "csidrivers"))),
    ("self-managed", "rbac: webhook configuration", "patch without resourceNames",
     lambda d: next(r for _, r in rbac_rules(d) if "patch" in r.get("verbs", []) and "mutatingwebhookconfigurations" in r.get("resources", [])).pop("resourceNames")),
    ("self-managed", "rbac: no create on admissionregistration", "create granted again (unnamed, as server-side apply would need to create)",
     lambda d: one(d, "ClusterRole", NAME)["rules"].append({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"], "verbs": ["create"]})),
    ("base", "rbac: no create on admissionregistration", "create on validatingadmissionpolicies",
     lambda d: one(d, "ClusterRole", NAME)["rules"].append({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingadmissionpolicies"], "verbs": ["create"]})),
    ("self-managed", "rbac: no create on admissionregistration", "create in a namespaced Role",
     lambda d: one(d, "Role", NAME)["rules"].append({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "verbs": ["create"]})),
    ("self-managed", "webhooks: one per concern", "the validating configuration not shipped (--register never creates it)",
     lambda d: d.remove(one(d, "ValidatingWebhookConfiguration", NAME))),
    ("self-managed", "webhooks: one per concern", "the mutating configuration not shipped (--register never creates it)",
     lambda d: d.remove(one(d, "MutatingWebhookConfiguration", NAME))),
    ("self-managed", "rbac: webhook configuration", "patch dropped (server-side apply needs it)",
     lambda d: next(r for _, r in rbac_rules(d) if "patch" in r.get("verbs", []) and "mutatingwebhookconfigurations" in r.get("resources", [])).update(verbs=["get", "update"])),
    ("base", "rbac: webhook configuration", "patch granted cluster-wide",
     lambda d: one(d, "ClusterRole", NAME)["rules"].append({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "verbs": ["patch"]})),
    ("base", "rbac: Secret and Lease", "leases moved to the ClusterRole",
     lambda d: one(d, "ClusterRole", NAME)["rules"].append(one(d, "Role", NAME)["rules"].pop(0))),
    ("self-managed", "rbac: Secret and Lease", "secrets get without resourceNames",
     lambda d: next(r for _, r in rbac_rules(d) if "get" in r.get("verbs", []) and "secrets" in r.get("resources", [])).pop("resourceNames")),
    ("self-managed", "rbac: Secret and Lease", "watch on secrets dropped (every replica watches it)",
     lambda d: next(r for _, r in rbac_rules(d) if "watch" in r.get("verbs", []) and "secrets" in r.get("resources", [])).update(verbs=["get", "list", "update"])),
    ("self-managed", "rbac: Secret and Lease", "delete on the Secret",
     lambda d: next(r for _, r in rbac_rules(d) if "watch" in r.get("verbs", []) and "secrets" in r.get("resources", [])).update(verbs=["get", "list", "watch", "update", "delete"])),
    ("base", "rbac: Secret and Lease", "list on secrets",
     lambda d: one(d, "Role", NAME)["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]})),
    ("base", "rbac: roles bound", "binding to another subject",
     lambda d: one(d, "RoleBinding", NAME)["subjects"].append({"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"})),
    ("base", "namespace:", "Pod Security label removed", lambda d: one(d, "Namespace", NS)["metadata"].pop("labels")),
    ("base", "cel:", "has() guard removed",
     lambda d: _hook(d, RESTORE_WEBHOOK)["matchConditions"][0].update(expression="object.spec.dataSource.kind == 'VolumeSnapshot' || object.spec.dataSource.kind == 'PersistentVolumeClaim'")),
    ("base", "cel:", "apiGroup not checked",
     lambda d: _hook(d, RESTORE_WEBHOOK)["matchConditions"][0].update(expression="has(object.spec.dataSource) && object.spec.dataSource.kind in ['VolumeSnapshot', 'PersistentVolumeClaim']")),
    ("base", "webhooks: pod webhooks", "pod webhook Fail", lambda d: _hook(d, "pod-volume-placement.storage-admission.io").update(failurePolicy="Fail")),
    ("base", "webhooks: pod webhooks", "pod webhook timeout 3", lambda d: _hook(d, "pinned-pods.storage-admission.io").update(timeoutSeconds=3)),
    ("base", "webhooks: pod webhooks", "pod matchConditions removed", lambda d: _hook(d, "pinned-pods.storage-admission.io").pop("matchConditions")),
    ("base", "webhooks: pod webhooks", "pod UPDATE added", lambda d: _hook(d, "pod-volume-placement.storage-admission.io")["rules"][0].update(operations=["CREATE", "UPDATE"])),
    ("base", "rbac: pods", "get on pods", lambda d: _rule(d, "ClusterRole", "pods").update(verbs=["get", "list", "watch"])),
    ("base", "rbac: pods", "pods not watched", lambda d: _rule(d, "ClusterRole", "pods").update(verbs=["list"])),
    ("base", "cel: pod", "nodeName not required (mutating)",
     lambda d: _hook(d, "pinned-pods.storage-admission.io")["matchConditions"][0].update(expression="has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))")),
    ("base", "cel: pod", "has() guard removed (validating)",
     lambda d: _hook(d, "pod-volume-placement.storage-admission.io")["matchConditions"][0].update(expression="object.spec.volumes.exists(v, has(v.persistentVolumeClaim))")),
]


# ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="repository root")
    ap.add_argument("--k8s-version", action="append", required=True, dest="versions", help="Kubernetes version for schema checks (repeatable)")
    ap.add_argument("--no-self-test", action="store_true", help="skip breaking each invariant to prove its check fails")
    ap.add_argument("--binary", type=Path, help="the storage-admission binary, to check each Deployment's args with --check-args")
    ap.add_argument("renders", nargs="+", help="NAME=FILE for each rendered kustomization (a missing FILE means the render failed)")
    opts = ap.parse_args()
    global BINARY
    BINARY = opts.binary

    passed = failed = 0

    def report(name: str, problems: Problems) -> None:
        nonlocal passed, failed
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"       - {p}")
        else:
            passed += 1
            print(f"ok   {name}")

    default_policy_path = opts.repo / "policies" / "default.yaml"
    deployed_policy_path = opts.repo / "webhook-config" / "base" / "policy.yaml"
    default_policy = default_policy_path.read_text()
    report("policy: webhook-config/base/policy.yaml is identical to policies/default.yaml",
           [] if deployed_policy_path.read_text() == default_policy else
           ["they differ: copy policies/default.yaml to webhook-config/base/policy.yaml"])

    rendered: dict[str, list[dict]] = {}
    for arg in opts.renders:
        name, _, file = arg.partition("=")
        path = Path(file)
        if not path.is_file() or path.stat().st_size == 0:
            report(f"[{name}] render: kubectl kustomize succeeded", [f"{file} missing: the render failed (see above)"])
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        report(f"[{name}] render: kubectl kustomize succeeded ({len(docs)} objects)", [])
        rendered[name] = docs
    for name in RENDERS:
        if name not in [a.partition("=")[0] for a in opts.renders]:
            report(f"[{name}] render: requested by check.sh", ["not passed to check_invariants.py"])

    for name, docs in rendered.items():
        checks, skips = schema_checks(name, docs, opts.versions)
        for s in skips:
            print(f"skip {s}")
        for check, problems in checks:
            report(f"[{name}] {check}", problems)
        for check, problems in invariant_checks(name, docs, default_policy, opts.repo):
            report(f"[{name}] {check}", problems)

    if not opts.no_self_test:
        for render, prefix, what, mutate in MUTATIONS:
            label = f"self-test [{render}] '{prefix}...' catches: {what}"
            if render not in rendered:
                report(label, [f"render {render} not available"])
                continue
            docs = copy.deepcopy(rendered[render])
            mutate(docs)
            results = [(n, p) for n, p in invariant_checks(render, docs, default_policy, opts.repo) if n.startswith(prefix)]
            if not results:
                report(label, [f"no check named '{prefix}...'"])
            else:
                report(label, [] if any(p for _, p in results) else ["the check still passes on the broken manifest"])

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
