//! pinned-pods: a Pod CREATE that can never start because of where it is pinned.
//!
//! `spec.nodeName` bypasses the scheduler. A claim whose class binds `WaitForFirstConsumer` is
//! provisioned only once the scheduler has picked a node for its first pod, so a pinned pod
//! using such a claim waits forever, and so does the claim (the Kubernetes documentation warns
//! against it; node-local and zonal drivers see it again and again). A pod pinned to a node its
//! already-bound volume cannot reach never starts either. The rule says so when the pod is
//! created, not hours later:
//!
//! 1. `nodeName` set and a claim unbound whose class binds `WaitForFirstConsumer` (a
//!    `persistentVolumeClaim`, or a generic ephemeral volume whose claim `<pod>-<volume>` does
//!    not exist yet and whose template names the class; no class named: the default class):
//!    - `mutate` (default): the **mutating** phase removes `spec.nodeName` and requires the
//!      node with a node-affinity `matchFields: metadata.name In [node]` (the DaemonSet
//!      controller's way: the hostname label can differ from the node name), added to every
//!      required term the pod already has (or as the only term), and says so. The validating
//!      phase warns if the pod still sets `nodeName` (the mutating webhook did not run).
//!    - `enforce`: the **validating** phase denies, with the affinity to write instead;
//!      `warn`: the same text as a warning (the gate's warn mode).
//! 2. `nodeName` set and a claim bound to a PersistentVolume whose `nodeAffinity` the node
//!    (from the cache) does not satisfy: the **validating** phase denies. The mutating phase
//!    then does not patch, so the pod keeps the `nodeName` the denial talks about. Without
//!    `nodeName`, when no current node satisfies both the pod's `nodeSelector`/required node
//!    affinity and a bound volume's node affinity: the validating phase warns.
//! 3. A claim, a claim's class or the node the cache does not hold (pods may be created before
//!    their claims): admitted without a word, unless `whenMissing: warn`, which adds one
//!    warning per missing object (never for an ephemeral volume's own claim, which its
//!    controller creates). Claims and classes: the validating phase, which sees every pod with a
//!    claim. The node: the phase that sees where the pod ends up pinned: the mutating phase when
//!    it moved the node to an affinity (the pod then waits for the node to register), else the
//!    validating phase (`spec.nodeName` kept: the pod garbage collector deletes the pod).
//!    A cache that is not loaded is not "missing": the rule cannot decide (`whenStateUnavailable`).
//!
//! The audit reports existing Pending pods of case 1 (asked as an UPDATE of the pod by
//! itself): their fix is to recreate the pod without `nodeName`.

use std::sync::{Arc, LazyLock};

use jsonptr::Pointer;

use crate::cluster::{ClusterView, Lookup};
use crate::model::{
    NodeConstraint, PersistentVolume, Pod, StorageClass, VolumeBindingMode, VolumeClaim,
};
use crate::policy::{AdmitOrWarn, PinnedPodsAction, PinnedPodsConfig};
use crate::rules::local_volumes::describe_term;
use crate::rules::patch::{Json, Op, Template};
use crate::rules::{Audited, Check, For, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, Phase, RuleResult, patch};

const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";

/// A claim of the pod that waits for its first consumer.
#[derive(Debug)]
struct Waiting {
    claim: String,
    /// Shared with the cache: copying the name out cost an allocation per claim.
    class: Arc<StorageClass>,
}

/// A claim of the pod bound to a volume with node affinity.
#[derive(Debug)]
struct Bound {
    claim: String,
    pv: Arc<PersistentVolume>,
}

/// An object a claim of the pod needs that the cache does not hold.
#[derive(Debug, PartialEq)]
enum Missing {
    /// The claim a `persistentVolumeClaim` volume names.
    Claim(String),
    /// The StorageClass unbound claims ask for (a claim not created yet from an ephemeral
    /// volume's template among them), with those claims.
    Class { class: String, claims: Vec<String> },
}

/// What the pod's claims are waiting for, as far as the cache tells.
#[derive(Debug, Default)]
struct Claims {
    waiting: Vec<Waiting>,
    bound: Vec<Bound>,
    missing: Vec<Missing>,
}

pub fn check(input: &Input<'_, Pod>, view: &dyn ClusterView, cfg: &PinnedPodsConfig) -> RuleResult {
    // UPDATE is only ever asked by the audit (the webhook judges CREATE): an existing pod.
    let existing = input.operation == Operation::Update;
    if cfg.mode == PinnedPodsAction::Off
        || !(existing || input.operation == Operation::Create)
        || (existing && input.phase != Phase::Validating)
    {
        return Ok(Outcome::allow());
    }
    let pod = input.object;
    if pod.claims().next().is_none() {
        return Ok(Outcome::allow());
    }
    let name = pod.metadata.qualified_name();
    let Claims {
        waiting,
        bound,
        missing,
    } = claims(pod, view)?;
    let mut outcome = judge(input, &name, &waiting, &bound, view, cfg)?;
    // Existing pods are `explain`'s to diagnose: the audit reports case 1 only.
    if existing || cfg.when_missing == AdmitOrWarn::Admit {
        return Ok(outcome);
    }
    // The one mutation this rule makes moves the node to an affinity.
    let unpinned = !outcome.mutations.is_empty();
    outcome.warnings.extend(missing_warnings(
        input.phase,
        pod,
        &name,
        &missing,
        unpinned,
        view,
    )?);
    Ok(outcome)
}

/// Cases 1 and 2 for a new pod, and the audit's finding for an existing one.
fn judge(
    input: &Input<'_, Pod>,
    name: &str,
    waiting: &[Waiting],
    bound: &[Bound],
    view: &dyn ClusterView,
    cfg: &PinnedPodsConfig,
) -> RuleResult {
    let existing = input.operation == Operation::Update;
    let pod = input.object;
    let Some(node) = pod.node_name() else {
        // Case 2 without nodeName: only the validating phase speaks, and only for new pods.
        if input.phase != Phase::Validating || existing {
            return Ok(Outcome::allow());
        }
        let mut outcome = Outcome::allow();
        for b in bound {
            if !schedulable_with(pod, &b.pv, view)? {
                outcome = outcome.with_warning(format!(
                    "Pod {name}: no current node satisfies both its nodeSelector/required node affinity and the node affinity of PersistentVolume {} ({}), bound to its claim {}: the scheduler will keep it Pending (volume node affinity conflict).",
                    b.pv.metadata.name,
                    requirement(&b.pv),
                    b.claim
                ));
            }
        }
        return Ok(outcome);
    };

    if existing {
        return Ok(if waiting.is_empty() {
            Outcome::allow()
        } else {
            Outcome::deny(format!(
                "Pod {name} is Pending on node {node} (spec.nodeName), but {} waits for the scheduler (WaitForFirstConsumer), which nodeName bypassed: the volume is never provisioned. Recreate the pod without spec.nodeName, requiring the node with node affinity (matchFields metadata.name In [{node}]).",
                describe(waiting)
            ))
        });
    }

    let conflicts = out_of_reach(node, bound, view)?;
    match input.phase {
        Phase::Mutating => Ok(
            if cfg.mode == PinnedPodsAction::Mutate && !waiting.is_empty() && conflicts.is_empty() {
                // Pushed into one String sized up front, not format!ted: every pinned pod with
                // a waiting claim pays for this note, and format! grows its String from a guess
                // several times (a `concat` of the parts needed the claims described first, in
                // a String of their own).
                let parts = [
                    "Pod ",
                    name,
                    ": spec.nodeName ",
                    node,
                    " replaced by a required node affinity (matchFields metadata.name In [",
                    node,
                    "]), as ",
                ];
                const END: &str =
                    " waits for the scheduler (WaitForFirstConsumer) and nodeName bypasses it.";
                let mut note = String::with_capacity(
                    parts.iter().map(|p| p.len()).sum::<usize>()
                        + described_len(waiting)
                        + END.len(),
                );
                parts.iter().for_each(|part| note.push_str(part));
                describe_into(&mut note, waiting);
                note.push_str(END);
                Outcome::allow().with_mutation(unpin(pod, node), Some(note))
            } else {
                Outcome::allow()
            },
        ),
        Phase::Validating => {
            let mut outcome = Outcome::allow();
            for b in &conflicts {
                let wanted = requirement(&b.pv);
                outcome = outcome
                    .with_denial(format!(
                        "Pod {name} is pinned to node {node} (spec.nodeName), but its claim {} is bound to PersistentVolume {}, which only nodes matching {wanted} can reach: the pod would never start there.",
                        b.claim, b.pv.metadata.name
                    ))
                    .with_denial(format!(
                        "Remove spec.nodeName from Pod {name} to let the scheduler place it where its volume is, or pin it to a node matching {wanted}."
                    ));
            }
            if waiting.is_empty() {
                return Ok(outcome);
            }
            let claims = describe(waiting);
            Ok(match cfg.mode {
                // A denial stands: no second message about a pod that is refused anyway.
                PinnedPodsAction::Mutate if conflicts.is_empty() => outcome.with_warning(format!(
                    "Pod {name} still sets spec.nodeName: {node} (the storage-admission mutating webhook did not change it), but {claims} waits for the scheduler (WaitForFirstConsumer): the pod will stay Pending. Require the node with node affinity instead."
                )),
                PinnedPodsAction::Enforce | PinnedPodsAction::Warn => outcome
                    .with_denial(format!(
                        "Pod {name} sets spec.nodeName: {node}, which bypasses the scheduler, but {claims} waits for it (WaitForFirstConsumer): the volume is never provisioned and the pod stays Pending."
                    ))
                    .with_denial(format!(
                        "Use node affinity (or a nodeSelector) instead of spec.nodeName: affinity: {{nodeAffinity: {{{REQUIRED}: {{nodeSelectorTerms: [{{matchFields: [{{key: metadata.name, operator: In, values: [{node}]}}]}}]}}}}}}"
                    )),
                PinnedPodsAction::Mutate | PinnedPodsAction::Off => outcome,
            })
        }
    }
}

/// The pod's claims that wait for their first consumer, those bound to a volume with node
/// affinity, and the claims and classes they name that the cache does not hold. A claim,
/// class or volume the cache does not hold is neither waiting nor bound.
fn claims(pod: &Pod, view: &dyn ClusterView) -> Lookup<Claims> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut found = Claims::default();
    for (claim, source) in pod.claims() {
        let existing = if claim.is_empty() {
            None
        } else {
            view.pvc(namespace, &claim)?
        };
        let requested = match (&existing, source) {
            (Some(pvc), _) => {
                if let Some(volume) = pvc.bound_volume() {
                    if let Some(pv) = view.pv(volume)?
                        && !pv.node_selector_terms().is_empty()
                    {
                        found.bound.push(Bound { claim, pv });
                    }
                    continue;
                }
                pvc.requested_class()
            }
            // Pods may be created before their claims: only `whenMissing: warn` says so.
            (None, VolumeClaim::Named(_)) => {
                // An empty claimName is the API server's to refuse, not a claim to wait for.
                if !claim.is_empty() {
                    let missing = Missing::Claim(claim);
                    if !found.missing.contains(&missing) {
                        found.missing.push(missing);
                    }
                }
                continue;
            }
            // The ephemeral claim is created from the template once the pod exists.
            (None, VolumeClaim::Ephemeral { class }) => class,
        };
        let class = class_of(requested, view)?;
        match (&class, requested) {
            (None, Some(name)) if !name.is_empty() => add_missing_class(&mut found, name, claim),
            (Some(class), _) if class.binding_mode() == VolumeBindingMode::WaitForFirstConsumer => {
                found.waiting.push(Waiting {
                    claim,
                    class: Arc::clone(class),
                });
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Records that `claim` asks for the StorageClass `class` the cache does not hold: one entry
/// per class, however many claims ask for it.
fn add_missing_class(found: &mut Claims, class: &str, claim: String) {
    for m in &mut found.missing {
        if let Missing::Class { class: c, claims } = m
            && c == class
        {
            if !claims.contains(&claim) {
                claims.push(claim);
            }
            return;
        }
    }
    found.missing.push(Missing::Class {
        class: class.to_owned(),
        claims: vec![claim],
    });
}

/// With `whenMissing: warn`, one warning per object the new pod needs that does not exist:
/// its claims and their classes from the validating phase (the one that sees every pod with a
/// claim); its node from the phase that sees the node the pod ends with: the mutating phase
/// when it moved `spec.nodeName` to an affinity, else the validating phase.
fn missing_warnings(
    phase: Phase,
    pod: &Pod,
    name: &str,
    missing: &[Missing],
    unpinned: bool,
    view: &dyn ClusterView,
) -> Lookup<Vec<String>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut warnings = Vec::new();
    if phase == Phase::Validating {
        for m in missing {
            warnings.push(match m {
                Missing::Claim(claim) => format!(
                    "Pod {name}: PersistentVolumeClaim {namespace}/{claim} does not exist yet: the pod stays Pending until it is created (kubectl get pvc -n {namespace} {claim}; or fix the volume's claimName)."
                ),
                Missing::Class { class, claims } => {
                    let (claims, ask) = if claims.len() == 1 {
                        (format!("claim {}", claims[0]), "asks")
                    } else {
                        (format!("claims {}", claims.join(", ")), "ask")
                    };
                    format!(
                        "Pod {name}: its {claims} {ask} for StorageClass {class}, which does not exist yet: no volume is provisioned, and the pod stays Pending until the class is created or a PersistentVolume of class {class} is made for it (kubectl get storageclass {class}; or fix storageClassName)."
                    )
                }
            });
        }
    }
    let Some(node) = pod.node_name() else {
        return Ok(warnings);
    };
    let speaks = match phase {
        Phase::Mutating => unpinned,
        Phase::Validating => true,
    };
    if !speaks || view.node(node)?.is_some() {
        return Ok(warnings);
    }
    warnings.push(if unpinned {
        format!(
            "Pod {name}: node {node}, which it requires (spec.nodeName, moved to a required node affinity), does not exist yet: the scheduler keeps the pod Pending until a node of that name registers (kubectl get node {node})."
        )
    } else {
        format!(
            "Pod {name}: spec.nodeName names node {node}, which does not exist yet: no kubelet runs the pod (nodeName bypasses the scheduler), and unless a node of that name registers within about a minute, the pod garbage collector deletes the pod. Check the name (kubectl get node {node}) or remove spec.nodeName."
        )
    });
    Ok(warnings)
}

/// The class a claim asking for `requested` gets: `""` none, `None` the cluster's default
/// (when exactly one class is marked default; with several the API server picks the newest,
/// which the cache cannot tell, so none is assumed).
fn class_of(requested: Option<&str>, view: &dyn ClusterView) -> Lookup<Option<Arc<StorageClass>>> {
    match requested {
        Some("") => Ok(None),
        Some(name) => view.storage_class(name),
        None => {
            let mut defaults = view.default_storage_classes()?;
            Ok(if defaults.len() == 1 {
                defaults.pop()
            } else {
                None
            })
        }
    }
}

/// `claim a (StorageClass x)`, or `claims a (StorageClass x), b (StorageClass y)`.
fn describe(waiting: &[Waiting]) -> String {
    // Sized up front: pushed onto a String made from the first word, it grew four times.
    let mut out = String::with_capacity(described_len(waiting));
    describe_into(&mut out, waiting);
    out
}

/// The length of `describe(waiting)`, or a little more.
fn described_len(waiting: &[Waiting]) -> usize {
    "claims ".len()
        + waiting
            .iter()
            .map(|w| w.claim.len() + w.class.metadata.name.len() + " (StorageClass ), ".len())
            .sum::<usize>()
}

/// Appends `describe(waiting)` to `out`.
fn describe_into(out: &mut String, waiting: &[Waiting]) {
    out.push_str(if waiting.len() == 1 {
        "claim "
    } else {
        "claims "
    });
    for (i, w) in waiting.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&w.claim);
        out.push_str(" (StorageClass ");
        out.push_str(&w.class.metadata.name);
        out.push(')');
    }
}

/// A volume's node affinity as a person reads it: terms joined by `or`.
fn requirement(pv: &PersistentVolume) -> String {
    let mut out = String::new();
    for (i, term) in pv.node_selector_terms().iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&describe_term(term));
    }
    out
}

/// The bound volumes `node` cannot reach. A node the cache does not hold: none (it may be
/// about to register).
fn out_of_reach<'b>(
    node: &str,
    bound: &'b [Bound],
    view: &dyn ClusterView,
) -> Lookup<Vec<&'b Bound>> {
    if bound.is_empty() {
        return Ok(Vec::new());
    }
    let Some(node) = view.node(node)? else {
        return Ok(Vec::new());
    };
    Ok(bound
        .iter()
        .filter(|b| {
            !b.pv
                .node_selector_terms()
                .iter()
                .any(|t| t.matches(node.name(), node.labels()))
        })
        .collect())
}

/// Whether some current node satisfies both the pod's constraints and `pv`'s node affinity.
/// When the pod's own constraints match no node, the volume is not to blame: `true`.
///
/// The pod's constraints are alternatives (ORed): its `nodeSelector` with each required
/// affinity term, or the `nodeSelector` alone; none when it has neither. Each is checked as
/// borrowed requirements (`NodeConstraint`), alone and with each of the volume's terms.
fn schedulable_with(pod: &Pod, pv: &PersistentVolume, view: &dyn ClusterView) -> Lookup<bool> {
    let selector = &pod.spec.node_selector;
    let required = pod.required_terms();
    // The pod's alternatives: its nodeSelector with each required term, or alone (None).
    let own = || {
        required
            .iter()
            .map(Some)
            .chain((required.is_empty() && !selector.is_empty()).then_some(None))
    };
    let theirs = pv.node_selector_terms();
    if required.is_empty() && selector.is_empty() {
        for term in theirs {
            if view.any_node_satisfies(&NodeConstraint::term(term))? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let mut own_satisfiable = false;
    for mine in own() {
        let constraint = NodeConstraint {
            labels: selector,
            terms: [mine, None],
        };
        if view.any_node_satisfies(&constraint)? {
            own_satisfiable = true;
            break;
        }
    }
    if !own_satisfiable {
        return Ok(true);
    }
    for mine in own() {
        for term in theirs {
            let both = NodeConstraint {
                labels: selector,
                terms: [mine, Some(term)],
            };
            if view.any_node_satisfies(&both)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A node selector requirement as patch JSON.
fn selector_requirement(key: &str, operator: &str, values: impl IntoIterator<Item = Json>) -> Json {
    Json::object([
        ("key", Json::string(key)),
        ("operator", Json::string(operator)),
        ("values", Json::array(values)),
    ])
}

/// `metadata.name In [node]`, the node-affinity requirement that stands for `spec.nodeName`.
fn field(node: Json) -> Json {
    selector_requirement("metadata.name", "In", [node])
}

fn term(node: Json) -> Json {
    Json::object([("matchFields", Json::array([field(node)]))])
}

fn required(node: Json) -> Json {
    Json::object([("nodeSelectorTerms", Json::array([term(node)]))])
}

// The patch values that differ only by the node, built once (see patch::Template).
static AFFINITY: LazyLock<Template> = LazyLock::new(|| {
    Template::new(|node| {
        Json::object([("nodeAffinity", Json::object([(REQUIRED, required(node))]))])
    })
});
static NODE_AFFINITY: LazyLock<Template> =
    LazyLock::new(|| Template::new(|node| Json::object([(REQUIRED, required(node))])));
static REQUIRED_TERMS: LazyLock<Template> = LazyLock::new(|| Template::new(required));
static TERMS: LazyLock<Template> =
    LazyLock::new(|| Template::new(|node| Json::array([term(node)])));
static FIELD: LazyLock<Template> = LazyLock::new(|| Template::new(field));

/// The patch that moves `node` from `spec.nodeName` to a required node-affinity requirement
/// `metadata.name In [node]`, added to each required term the pod has (each keeps its own
/// requirements), or as a new term; every missing parent is created.
fn unpin(pod: &Pod, node: &str) -> Vec<Op> {
    let affinity = pod.spec.affinity.as_ref();
    let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
    let existing = node_affinity.and_then(|n| n.required.as_ref());
    // The removal and an add per existing term, or one: sized up front, as a Vec grown from
    // one element is reallocated on the first push.
    let terms = existing.map_or(0, |r| r.node_selector_terms.len());
    let mut ops = Vec::with_capacity(1 + terms.max(1));
    ops.push(patch::remove(patch::fixed(
        const { Pointer::from_static("/spec/nodeName") },
    )));
    match (affinity, node_affinity, existing) {
        (None, _, _) => ops.push(patch::add(
            patch::fixed(const { Pointer::from_static("/spec/affinity") }),
            AFFINITY.fill(node),
        )),
        (Some(_), None, _) => ops.push(patch::add(
            patch::fixed(const { Pointer::from_static("/spec/affinity/nodeAffinity") }),
            NODE_AFFINITY.fill(node),
        )),
        (Some(_), Some(_), None) => ops.push(patch::add(
            patch::fixed(const { Pointer::from_static("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution") }),
            REQUIRED_TERMS.fill(node),
        )),
        (Some(_), Some(_), Some(r)) if r.node_selector_terms.is_empty() => ops.push(patch::add(
            patch::fixed(const { Pointer::from_static("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms") }),
            TERMS.fill(node),
        )),
        (Some(_), Some(_), Some(r)) => {
            for (i, t) in r.node_selector_terms.iter().enumerate() {
                // The whole list, so a term with or without `matchFields` is written the same.
                let fields = t
                    .match_fields
                    .iter()
                    .map(|f| {
                        selector_requirement(&f.key, &f.operator, f.values.iter().map(|v| Json::string(v)))
                    })
                    .chain([FIELD.fill(node)]);
                let index = i.to_string();
                ops.push(patch::add(
                    patch::pointer([
                        "spec",
                        "affinity",
                        "nodeAffinity",
                        REQUIRED,
                        "nodeSelectorTerms",
                        &index,
                        "matchFields",
                    ]),
                    Json::array(fields),
                ));
            }
        }
    }
    ops
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("pinned-pods"),
    policy_key: "pinnedPods",
    phases: &[Phase::Mutating, Phase::Validating],
    operations: &[Operation::Create],
    checks: &[Check::Pod(For::audited(
        |input, view, policy| check(input, view, &policy.rules.pinned_pods),
        Audited {
            select: |p| p.is_pending() && p.node_name().is_some() && p.claims().next().is_some(),
            phase: Phase::Validating,
            operation: Operation::Update,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.pinned_pods),
};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::model::keys;
    use crate::testing::{self, *};

    const ALL_MODES: [PinnedPodsAction; 3] = [
        PinnedPodsAction::Mutate,
        PinnedPodsAction::Enforce,
        PinnedPodsAction::Warn,
    ];

    /// Nodes n1 (zone b) and n2 (zone c); a WaitForFirstConsumer class `local` (also the
    /// default), an Immediate class `nas`; claims `data` (local, unbound), `shared` (nas,
    /// unbound), `in-c` (bound to a volume reachable from zone c) and `web-cache` (the
    /// ephemeral claim of pod `web`'s volume `cache`, already bound); `classless` and
    /// `classless-too` ask for a class `gone` that does not exist.
    fn demo() -> ClusterIndex {
        cluster([
            node("n1").hostname_label().zone("b").into(),
            node("n2").hostname_label().zone("c").into(),
            storage_class("local")
                .provisioner("topolvm.io")
                .wait_for_first_consumer()
                .default_class()
                .into(),
            storage_class("nas")
                .provisioner("example.com/nas")
                .immediate()
                .into(),
            pvc("default", "data").class("local").into(),
            pvc("default", "shared").class("nas").into(),
            pvc("default", "in-c")
                .class("local")
                .bound_to("pv-c")
                .into(),
            pvc("default", "web-cache")
                .class("local")
                .bound_to("pv-plain")
                .into(),
            pvc("default", "classless").class("gone").into(),
            pvc("default", "classless-too").class("gone").into(),
            pv("pv-c")
                .node_affinity_term(&[(keys::ZONE, "In", &["c"])])
                .into(),
            pv("pv-plain").into(),
        ])
    }

    fn run(pod: &Pod, op: Operation, phase: Phase, mode: PinnedPodsAction) -> Outcome {
        let input = input(op, phase, pod, (op == Operation::Update).then_some(pod));
        check(&input, &demo(), &testing::policy::pinned_pods(mode)).unwrap()
    }

    fn create(pod: &Pod, phase: Phase, mode: PinnedPodsAction) -> Outcome {
        run(pod, Operation::Create, phase, mode)
    }

    /// The pod as the API server sends it, parsed, unpinned by the mutating phase, and the
    /// patched document parsed again.
    fn unpinned(spec: Value) -> (Outcome, Value, Pod) {
        let mut doc = json!({"metadata": {"name": "db", "namespace": "default"}, "spec": spec});
        let pod: Pod = serde_json::from_value(doc.clone()).unwrap();
        let out = create(&pod, Phase::Mutating, PinnedPodsAction::Mutate);
        assert_eq!(out.mutations.len(), 1, "{out:?}");
        json_patch::patch(
            &mut doc,
            &crate::rules::patch::to_json_patch(&out.mutations[0].ops).unwrap(),
        )
        .unwrap();
        let after: Pod = serde_json::from_value(doc.clone()).unwrap();
        (out, doc, after)
    }

    fn by_name(node: &str) -> Value {
        json!({"key": "metadata.name", "operator": "In", "values": [node]})
    }

    #[test]
    fn mutate_moves_the_node_to_a_required_affinity_and_says_why() {
        let (out, doc, after) = unpinned(json!({
            "nodeName": "n1",
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            "containers": [{"name": "c", "image": "db"}]
        }));
        assert_eq!(after.node_name(), None);
        assert_eq!(
            doc["spec"]["affinity"],
            json!({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [by_name("n1")]}]}}})
        );
        assert_eq!(
            doc["spec"]["containers"][0]["image"], "db",
            "the rest is kept"
        );
        let note = out.mutations[0].note.as_deref().unwrap();
        assert!(
            note.contains("Pod default/db")
                && note.contains("spec.nodeName n1")
                && note.contains("claim data (StorageClass local)"),
            "{note}"
        );
        assert!(note.len() < 250, "{} chars: {note}", note.len());
        assert!(out.denials.is_empty() && out.warnings.is_empty());
    }

    #[test]
    fn every_affinity_template_fills_in_place() {
        for template in [&AFFINITY, &NODE_AFFINITY, &REQUIRED_TERMS, &TERMS, &FIELD] {
            assert!(template.fills_in_place(), "{:?}", **template);
        }
        assert_eq!(
            AFFINITY.fill("n\"1").to_value().unwrap(),
            json!({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [by_name("n\"1")]}]}}})
        );
    }

    #[test]
    fn existing_required_terms_each_gain_the_node_and_keep_their_own() {
        let (_, doc, _) = unpinned(json!({
            "nodeName": "n1",
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            "affinity": {
                "podAntiAffinity": {"x": 1},
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}],
                    REQUIRED: {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "disk", "operator": "Exists"}]},
                        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}]}
                    ]}
                }
            }
        }));
        let affinity = &doc["spec"]["affinity"];
        assert_eq!(affinity["podAntiAffinity"], json!({"x": 1}));
        assert_eq!(
            affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
            json!([{"weight": 1}])
        );
        assert_eq!(
            affinity["nodeAffinity"][REQUIRED]["nodeSelectorTerms"],
            json!([
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}], "matchFields": [by_name("n1")]},
                {"matchFields": [
                    {"key": "metadata.name", "operator": "NotIn", "values": ["n9"]},
                    by_name("n1")
                ]}
            ])
        );
    }

    #[test]
    fn missing_affinity_parents_are_created() {
        for (affinity, expected) in [
            (
                json!({"podAffinity": {}}),
                json!({"podAffinity": {}, "nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [by_name("n1")]}]}}}),
            ),
            (
                json!({"nodeAffinity": {}}),
                json!({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [by_name("n1")]}]}}}),
            ),
            (
                json!({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": null}}}),
                json!({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [by_name("n1")]}]}}}),
            ),
            (
                json!(null),
                json!({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [by_name("n1")]}]}}}),
            ),
        ] {
            let (_, doc, _) = unpinned(json!({
                "nodeName": "n1",
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                "affinity": affinity
            }));
            assert_eq!(doc["spec"]["affinity"], expected);
        }
    }

    #[test]
    fn ephemeral_volumes_count_by_their_template_until_the_claim_exists() {
        let pinned = |class: Option<&str>| {
            pod("default", "db")
                .on_node("n1")
                .ephemeral("scratch", class)
        };
        for class in [Some("local"), None] {
            let out = create(&pinned(class), Phase::Mutating, PinnedPodsAction::Mutate);
            assert_eq!(out.mutations.len(), 1, "{class:?}");
            assert!(
                out.mutations[0]
                    .note
                    .as_deref()
                    .unwrap()
                    .contains("claim db-scratch (StorageClass local)")
            );
        }
        for class in [Some("nas"), Some(""), Some("gone")] {
            assert!(create(&pinned(class), Phase::Mutating, PinnedPodsAction::Mutate).is_empty());
        }
        // Pod `web`'s ephemeral claim exists and is bound: nothing waits.
        let web = pod("default", "web")
            .on_node("n1")
            .ephemeral("cache", Some("local"));
        assert!(create(&web, Phase::Mutating, PinnedPodsAction::Mutate).is_empty());
    }

    #[test]
    fn immediate_missing_and_unpinned_claims_are_left_alone() {
        let pods = [
            pod("default", "p").on_node("n1").claim("v", "shared"),
            pod("default", "p").on_node("n1").claim("v", "not-yet"),
            pod("other", "p").on_node("n1").claim("v", "data"),
            pod("default", "p").claim("v", "data"),
            pod("default", "p").on_node("n1"),
        ];
        for pod in &pods {
            for mode in ALL_MODES {
                for phase in [Phase::Mutating, Phase::Validating] {
                    assert!(create(pod, phase, mode).is_empty(), "{pod:?} {mode:?}");
                }
            }
        }
    }

    #[test]
    fn enforce_and_warn_deny_in_the_validating_phase_with_the_snippet() {
        let pod = pod("default", "db").on_node("n1").claim("v", "data");
        for mode in [PinnedPodsAction::Enforce, PinnedPodsAction::Warn] {
            assert!(create(&pod, Phase::Mutating, mode).is_empty());
            let out = create(&pod, Phase::Validating, mode);
            assert!(out.mutations.is_empty() && out.warnings.is_empty());
            assert_eq!(out.denials.len(), 2, "{out:?}");
            assert!(out.denials[0].contains("Pod default/db sets spec.nodeName: n1"));
            assert!(out.denials[0].contains("claim data (StorageClass local)"));
            assert!(out.denials[1].contains(
                "nodeSelectorTerms: [{matchFields: [{key: metadata.name, operator: In, values: [n1]}]}]"
            ));
        }
    }

    #[test]
    fn mutate_mode_warns_when_the_pod_is_still_pinned_at_validation() {
        let pod = pod("default", "db").on_node("n1").claim("v", "data");
        let out = create(&pod, Phase::Validating, PinnedPodsAction::Mutate);
        assert!(out.denials.is_empty() && out.mutations.is_empty());
        assert_eq!(out.warnings.len(), 1);
        assert!(out.warnings[0].contains("still sets spec.nodeName: n1"));
    }

    #[test]
    fn a_node_out_of_a_bound_volumes_reach_is_denied_and_not_patched() {
        let pod = pod("default", "db")
            .on_node("n1")
            .claim("v", "in-c")
            .claim("w", "data");
        assert!(
            create(&pod, Phase::Mutating, PinnedPodsAction::Mutate).is_empty(),
            "the denial must see the nodeName it names"
        );
        for mode in ALL_MODES {
            let out = create(&pod, Phase::Validating, mode);
            assert!(out.warnings.is_empty(), "{out:?}");
            let first = &out.denials[0];
            for part in [
                "Pod default/db",
                "node n1",
                "claim in-c",
                "PersistentVolume pv-c",
                "topology.kubernetes.io/zone In [c]",
            ] {
                assert!(first.contains(part), "{part}: {first}");
            }
            assert!(out.denials[1].contains("Remove spec.nodeName"));
        }
        // On n2 (zone c) the volume is in reach; a node the cache does not know: admitted.
        for node in ["n2", "n-new"] {
            let pod = testing::pod("default", "db")
                .on_node(node)
                .claim("v", "in-c");
            assert!(create(&pod, Phase::Validating, PinnedPodsAction::Enforce).is_empty());
        }
    }

    #[test]
    fn without_node_name_an_unsatisfiable_pair_of_affinities_warns() {
        let conflict = pod("default", "db")
            .claim("v", "in-c")
            .node_selector(keys::ZONE, "b");
        let out = create(&conflict, Phase::Validating, PinnedPodsAction::Enforce);
        assert!(out.denials.is_empty());
        assert_eq!(out.warnings.len(), 1, "{out:?}");
        assert!(out.warnings[0].contains("PersistentVolume pv-c"));
        assert!(out.warnings[0].contains("volume node affinity conflict"));
        assert!(create(&conflict, Phase::Mutating, PinnedPodsAction::Enforce).is_empty());

        let by_affinity =
            pod("default", "db")
                .claim("v", "in-c")
                .required_term(&[(keys::ZONE, "In", &["b"])]);
        assert_eq!(
            create(&by_affinity, Phase::Validating, PinnedPodsAction::Enforce)
                .warnings
                .len(),
            1
        );
        for fine in [
            pod("default", "db").claim("v", "in-c"),
            pod("default", "db")
                .claim("v", "in-c")
                .node_selector(keys::ZONE, "c"),
            pod("default", "db")
                .claim("v", "in-c")
                .required_term(&[(keys::ZONE, "In", &["b"])])
                .required_term(&[(keys::ZONE, "In", &["c"])]),
            // Its own constraints match no node: the volume is not to blame.
            pod("default", "db")
                .claim("v", "in-c")
                .node_selector(keys::ZONE, "z"),
        ] {
            assert!(
                create(&fine, Phase::Validating, PinnedPodsAction::Enforce).is_empty(),
                "{fine:?}"
            );
        }
    }

    #[test]
    fn the_audit_reports_an_existing_pinned_pod_with_its_fix() {
        let pod = pod("default", "db")
            .on_node("n1")
            .claim("v", "data")
            .pending();
        assert!((RULE.checks[0].is_audited()));
        let Check::Pod(f) = &RULE.checks[0] else {
            panic!("a pod check")
        };
        assert!((f.audit.as_ref().unwrap().select)(&pod));
        assert!(!(f.audit.as_ref().unwrap().select)(
            &testing::pod("default", "db")
                .on_node("n1")
                .claim("v", "data")
        ));
        for mode in ALL_MODES {
            let out = run(&pod, Operation::Update, Phase::Validating, mode);
            assert_eq!(out.denials.len(), 1, "{out:?}");
            assert!(out.denials[0].contains("is Pending on node n1"));
            assert!(out.denials[0].contains("Recreate the pod without spec.nodeName"));
        }
        assert!(
            run(
                &pod,
                Operation::Update,
                Phase::Mutating,
                PinnedPodsAction::Mutate
            )
            .is_empty()
        );
    }

    #[test]
    fn the_controller_audit_finds_pending_pinned_pods_only() {
        let index = demo();
        index.pods.apply(
            testing::pod("default", "stuck")
                .on_node("n1")
                .claim("v", "data")
                .pending(),
        );
        index.pods.apply(
            testing::pod("default", "fine")
                .on_node("n1")
                .claim("v", "shared")
                .pending(),
        );
        let audit = crate::controller::audit::findings(
            &index,
            &testing::policy::default(),
            &crate::controller::Scope::for_namespace("storage-admission"),
        );
        let found: Vec<_> = audit
            .findings
            .iter()
            .filter(|f| f.rule == RULE.id)
            .map(|f| (f.object.to_string(), f.message.clone()))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "Pod default/stuck");
        assert!(
            found[0]
                .1
                .contains("Recreate the pod without spec.nodeName")
        );
    }

    #[test]
    fn off_and_other_operations_are_not_judged() {
        let pod = pod("default", "db").on_node("n1").claim("v", "data");
        for phase in [Phase::Mutating, Phase::Validating] {
            assert!(create(&pod, phase, PinnedPodsAction::Off).is_empty());
            assert!(run(&pod, Operation::Delete, phase, PinnedPodsAction::Enforce).is_empty());
        }
    }

    #[test]
    fn an_unloaded_cache_is_unavailable_not_a_verdict() {
        let pod = pod("default", "db").on_node("n1").claim("v", "data");
        let view = ClusterIndex::unavailable("starting");
        let input = input(Operation::Create, Phase::Validating, &pod, None);
        let cfg = testing::policy::pinned_pods(PinnedPodsAction::Enforce);
        assert!(check(&input, &view, &cfg).is_err());
        // A pod without claims reads nothing.
        let bare = testing::pod("default", "web").on_node("n1");
        let input = crate::testing::input(Operation::Create, Phase::Validating, &bare, None);
        assert!(check(&input, &view, &cfg).unwrap().is_empty());
    }

    /// A pod CREATE judged with the built-in settings (`whenMissing: admit`) against `view`.
    fn create_in(pod: &Pod, phase: Phase, view: &ClusterIndex) -> Outcome {
        let cfg = testing::policy::pinned_pods(PinnedPodsAction::Mutate);
        check(&input(Operation::Create, phase, pod, None), view, &cfg).unwrap()
    }

    /// A pod CREATE judged with `whenMissing: warn` (mode mutate) against `view`.
    fn warn_missing(pod: &Pod, phase: Phase, view: &ClusterIndex) -> RuleResult {
        let mut cfg = testing::policy::pinned_pods(PinnedPodsAction::Mutate);
        cfg.when_missing = AdmitOrWarn::Warn;
        check(&input(Operation::Create, phase, pod, None), view, &cfg)
    }

    #[test]
    fn missing_objects_are_admitted_silently_by_default() {
        assert_eq!(
            testing::policy::default().rules.pinned_pods.when_missing,
            AdmitOrWarn::Admit
        );
        for pod in [
            pod("default", "p").claim("v", "not-yet"),
            pod("default", "p").claim("v", "classless"),
            pod("default", "p").ephemeral("scratch", Some("gone")),
            pod("default", "p").on_node("n-new").claim("v", "shared"),
        ] {
            for phase in [Phase::Mutating, Phase::Validating] {
                assert!(
                    create(&pod, phase, PinnedPodsAction::Mutate).is_empty(),
                    "{pod:?}"
                );
            }
        }
    }

    #[test]
    fn when_missing_warn_names_a_missing_claim_once_at_validation() {
        let pod = pod("default", "db")
            .claim("v", "not-yet")
            .claim("w", "not-yet")
            .claim("x", "shared");
        let out = warn_missing(&pod, Phase::Validating, &demo()).unwrap();
        assert!(out.denials.is_empty() && out.mutations.is_empty());
        assert_eq!(
            out.warnings,
            [
                "Pod default/db: PersistentVolumeClaim default/not-yet does not exist yet: the pod stays Pending until it is created (kubectl get pvc -n default not-yet; or fix the volume's claimName)."
            ]
        );
        assert!(
            warn_missing(&pod, Phase::Mutating, &demo())
                .unwrap()
                .is_empty(),
            "the mutating phase leaves claims to the validating one"
        );
    }

    #[test]
    fn when_missing_warn_names_a_missing_class_once_with_its_claims() {
        let pod = pod("default", "db")
            .claim("v", "classless")
            .claim("w", "classless-too")
            .ephemeral("scratch", Some("gone"))
            .ephemeral("tmp", Some("also-gone"));
        let out = warn_missing(&pod, Phase::Validating, &demo()).unwrap();
        assert_eq!(out.warnings.len(), 2, "{out:?}");
        assert!(
            out.warnings[0].starts_with(
                "Pod default/db: its claims classless, classless-too, db-scratch ask for StorageClass gone, which does not exist yet: no volume is provisioned"
            ),
            "{}",
            out.warnings[0]
        );
        assert!(
            out.warnings[1].starts_with(
                "Pod default/db: its claim db-tmp asks for StorageClass also-gone, which does not exist yet"
            ),
            "{}",
            out.warnings[1]
        );
        assert!(out.warnings[1].contains("kubectl get storageclass also-gone"));
        assert!(
            warn_missing(&pod, Phase::Mutating, &demo())
                .unwrap()
                .is_empty()
        );
        // No class named, or none asked for (""): nothing is missing.
        for class in [None, Some("")] {
            let pod = testing::pod("default", "db").ephemeral("scratch", class);
            let out = warn_missing(&pod, Phase::Validating, &demo()).unwrap();
            assert!(out.warnings.is_empty(), "{class:?}: {out:?}");
        }
    }

    #[test]
    fn when_missing_warn_names_a_missing_node_where_the_pod_is_still_pinned() {
        // Nothing waits: nodeName is kept, the validating phase says what becomes of the pod.
        let kept = pod("default", "db").on_node("n-new").claim("v", "shared");
        assert!(
            warn_missing(&kept, Phase::Mutating, &demo())
                .unwrap()
                .is_empty()
        );
        let out = warn_missing(&kept, Phase::Validating, &demo()).unwrap();
        assert_eq!(out.warnings.len(), 1, "{out:?}");
        for part in [
            "Pod default/db: spec.nodeName names node n-new, which does not exist yet",
            "no kubelet runs the pod",
            "the pod garbage collector deletes the pod",
            "kubectl get node n-new",
        ] {
            assert!(
                out.warnings[0].contains(part),
                "{part}: {}",
                out.warnings[0]
            );
        }
    }

    #[test]
    fn when_missing_warn_names_a_missing_node_moved_to_an_affinity_in_the_mutating_phase() {
        let mut doc = json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {
                "nodeName": "n-new",
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
            }
        });
        let pinned: Pod = serde_json::from_value(doc.clone()).unwrap();
        let out = warn_missing(&pinned, Phase::Mutating, &demo()).unwrap();
        assert_eq!(out.mutations.len(), 1, "{out:?}");
        assert_eq!(
            out.warnings,
            [
                "Pod default/db: node n-new, which it requires (spec.nodeName, moved to a required node affinity), does not exist yet: the scheduler keeps the pod Pending until a node of that name registers (kubectl get node n-new)."
            ]
        );
        // The validating phase sees the patched pod: no second warning about the node.
        json_patch::patch(
            &mut doc,
            &crate::rules::patch::to_json_patch(&out.mutations[0].ops).unwrap(),
        )
        .unwrap();
        let unpinned: Pod = serde_json::from_value(doc).unwrap();
        assert!(
            warn_missing(&unpinned, Phase::Validating, &demo())
                .unwrap()
                .is_empty()
        );
        // The mutating webhook did not run: the validating phase says it, once.
        let out = warn_missing(&pinned, Phase::Validating, &demo()).unwrap();
        assert_eq!(out.warnings.len(), 2, "{out:?}");
        assert!(out.warnings[0].contains("still sets spec.nodeName: n-new"));
        assert!(
            out.warnings[1].contains("spec.nodeName names node n-new, which does not exist yet")
        );
    }

    #[test]
    fn when_missing_warn_says_nothing_of_objects_that_exist() {
        for pod in [
            pod("default", "db")
                .on_node("n1")
                .claim("v", "data")
                .claim("w", "shared")
                .ephemeral("scratch", Some("local")),
            pod("default", "db").on_node("n2").claim("v", "in-c"),
            pod("default", "web")
                .on_node("n1")
                .ephemeral("cache", Some("gone")),
            pod("default", "db")
                .claim("v", "in-c")
                .node_selector(keys::ZONE, "b"),
        ] {
            for phase in [Phase::Mutating, Phase::Validating] {
                assert_eq!(
                    warn_missing(&pod, phase, &demo()).unwrap(),
                    create(&pod, phase, PinnedPodsAction::Mutate),
                    "{pod:?} {phase:?}"
                );
            }
        }
    }

    #[test]
    fn when_missing_warn_does_not_take_an_unloaded_cache_for_missing_objects() {
        let pod = pod("default", "db").on_node("n1").claim("v", "shared");
        let view = demo();
        view.set_state(
            crate::cluster::ResourceKind::Node,
            crate::cluster::SyncState::Pending("waiting for the first list".into()),
        );
        let err = warn_missing(&pod, Phase::Validating, &view).unwrap_err();
        assert_eq!(err.kind, crate::cluster::ResourceKind::Node);
        // `admit` does not look the node up, as before.
        assert!(create_in(&pod, Phase::Validating, &view).is_empty());

        let view = demo();
        for kind in [
            crate::cluster::ResourceKind::PersistentVolumeClaim,
            crate::cluster::ResourceKind::StorageClass,
        ] {
            view.set_state(
                kind,
                crate::cluster::SyncState::Pending("waiting for the first list".into()),
            );
        }
        for pod in [
            testing::pod("default", "db").claim("v", "not-yet"),
            testing::pod("default", "db").ephemeral("scratch", Some("gone")),
        ] {
            assert!(
                warn_missing(&pod, Phase::Validating, &view).is_err(),
                "{pod:?}"
            );
        }
    }

    #[test]
    fn when_missing_warn_leaves_the_audit_as_it_was() {
        let mut policy = testing::policy::default();
        policy.rules.pinned_pods.when_missing = AdmitOrWarn::Warn;
        let stuck = pod("default", "stuck")
            .on_node("n-new")
            .claim("v", "not-yet")
            .claim("w", "data")
            .pending();
        let input = input(Operation::Update, Phase::Validating, &stuck, Some(&stuck));
        let out = check(&input, &demo(), &policy.rules.pinned_pods).unwrap();
        assert!(out.warnings.is_empty(), "{out:?}");
        assert_eq!(out.denials.len(), 1);
        assert!(out.denials[0].contains("is Pending on node n-new"));
    }
}
