//! Why a Pod is Pending, as far as its storage goes.
//!
//! The pinned-pods rule judges the two storage reasons a pod never starts, and its own check
//! runs here: as the audit runs it (a pinned pod whose claim waits for its first consumer), and
//! as its validating phase judges a new pod (a bound volume whose node affinity matches no node
//! the pod may run on). A claim that does not exist is said here. Then each claim is explained
//! as `explain pvc` explains it, so a claim that is Pending shows under its pod.

use super::{Diagnosis, ExplainError, ObjectRef, Target, Waiting, pvc, run_rule, run_rule_as};
use crate::cluster::{ClusterIndex, ClusterView, ResourceKind, StateUnavailable};
use crate::model::{Pod, VolumeClaim};
use crate::policy::{PinnedPodsAction, Policy};
use crate::rules::{Operation, Phase, pinned_pods};

pub const NOT_FOUND: &str = "pod.not-found";
pub const PINNED_WFFC: &str = "pod.pinned-wffc";
pub const VOLUME_AFFINITY_CONFLICT: &str = "pod.volume-affinity-conflict";
pub const CLAIM_MISSING: &str = "pod.claim-missing";

/// Every id above, in the order `docs/explain.md` lists them.
pub const FINDING_IDS: &[&str] = &[
    NOT_FOUND,
    PINNED_WFFC,
    VOLUME_AFFINITY_CONFLICT,
    CLAIM_MISSING,
];

/// The cached pods are Pending ones (the controller watches no others) that use a claim.
pub(super) fn waiting(index: &ClusterIndex) -> Result<Vec<Waiting>, StateUnavailable> {
    index.pods.scan(|it| {
        it.filter(|p| p.is_pending() && p.claims().next().is_some())
            .map(|p| Waiting {
                target: Target {
                    kind: ResourceKind::Pod,
                    namespace: p.metadata.namespace.clone().unwrap_or_default(),
                    name: p.metadata.name.clone(),
                },
                metadata: p.metadata.clone(),
            })
            .collect()
    })
}

pub(super) fn diagnose(
    target: &Target,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<Diagnosis, ExplainError> {
    let mut d = Diagnosis::default();
    let (ns, name) = (target.namespace.as_str(), target.name.as_str());
    let me = ObjectRef::new(ResourceKind::Pod, Some(ns), name);
    let Some(pod) = view.pod(ns, name)? else {
        d.step(me, "does not exist");
        d.find(
            NOT_FOUND,
            format!("Pod {ns}/{name} does not exist."),
            format!("Check the name and namespace: kubectl get pods -n {ns}"),
        );
        return Ok(d);
    };
    d.created = pod.metadata.created_at();
    let phase = pod
        .status
        .phase
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("Pending");
    let claims: Vec<String> = pod.claims().map(|(claim, _)| claim).collect();
    let placed = match pod.node_name() {
        Some(node) => format!("pinned to node {node} (spec.nodeName)"),
        None => "placed by the scheduler".to_owned(),
    };
    let uses = match claims.len() {
        0 => "no claims".to_owned(),
        1 => format!("claim {}", claims[0]),
        _ => format!("claims {}", claims.join(", ")),
    };
    d.step(me, format!("{phase}; {placed}; uses {uses}"));
    if !pod.is_pending() {
        d.settled = Some(phase.to_owned());
        return Ok(d);
    }
    rule_findings(&mut d, &pod, view, policy)?;
    let conflicting: Vec<String> = d
        .findings
        .iter()
        .filter(|f| f.id == VOLUME_AFFINITY_CONFLICT)
        .map(|f| f.message.clone())
        .collect();

    for (claim, source) in pod.claims() {
        if view.pvc(ns, &claim)?.is_none() {
            let ephemeral = matches!(source, VolumeClaim::Ephemeral { .. });
            d.step(
                ObjectRef::new(ResourceKind::PersistentVolumeClaim, Some(ns), &claim),
                "does not exist",
            );
            d.find(
                CLAIM_MISSING,
                format!("Pod {ns}/{name} uses PersistentVolumeClaim {ns}/{claim}, which does not exist: the pod cannot be scheduled until it does."),
                if ephemeral {
                    format!("The claim of a generic ephemeral volume is created by the ephemeral volume controller; see its events: kubectl get events -n {ns} --field-selector involvedObject.name={name}")
                } else {
                    format!("Create the claim, or correct spec.volumes[].persistentVolumeClaim.claimName (recreate the pod): kubectl get pvc -n {ns}")
                },
            );
            continue;
        }
        let of_claim = pvc::diagnose(
            &Target {
                kind: ResourceKind::PersistentVolumeClaim,
                namespace: ns.to_owned(),
                name: claim.clone(),
            },
            view,
            policy,
        )?;
        for step in of_claim.chain {
            if !d.chain.contains(&step) {
                d.chain.push(step);
            }
        }
        let volume = view
            .pvc(ns, &claim)?
            .and_then(|c| c.bound_volume().map(str::to_owned));
        for finding in of_claim.findings {
            // The claim waits for this very pod; a volume no node reaches is already said,
            // for this pod, by the pinned-pods rule.
            let said_for_pod = finding.id == pvc::WFFC_NO_CONSUMER
                || (finding.id == pvc::VOLUME_AFFINITY_NO_NODE
                    && volume
                        .as_deref()
                        .is_some_and(|v| conflicting.iter().any(|m| names_volume(m, v))));
            if !said_for_pod {
                d.findings.push(finding);
            }
        }
    }
    Ok(d)
}

/// The pinned-pods rule on the existing pod: as the audit asks it (a pinned pod whose claim
/// waits for the scheduler), then as its validating phase judges a new pod (a bound volume out
/// of the pod's reach), in `mutate` mode so that only the volume's reach is said there (the
/// first question is the audit's). `off` in the policy does not silence a diagnosis.
fn rule_findings(
    d: &mut Diagnosis,
    pod: &Pod,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<(), ExplainError> {
    let mut asked = policy.clone();
    asked.rules.pinned_pods.mode = PinnedPodsAction::Mutate;
    let pinned = run_rule(&pinned_pods::RULE, pod, view, &asked)
        .transpose()?
        .unwrap_or_default();
    let name = pod.metadata.qualified_name();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    for message in pinned.denials {
        d.find(
            PINNED_WFFC,
            message,
            format!(
                "kubectl get pod -n {ns} {} -o yaml > pod.yaml; move spec.nodeName into the node affinity the message gives; kubectl replace --force -f pod.yaml",
                pod.metadata.name
            ),
        );
    }
    let reach = run_rule_as(
        &pinned_pods::RULE,
        pod,
        view,
        &asked,
        Phase::Validating,
        Operation::Create,
    )
    .transpose()?
    .unwrap_or_default();
    if pod.node_name().is_some() {
        // Pairs: what is wrong, then what to do.
        for pair in reach.denials.chunks(2) {
            d.find(
                VOLUME_AFFINITY_CONFLICT,
                pair[0].clone(),
                pair.get(1).cloned().unwrap_or_default(),
            );
        }
    } else {
        for message in reach.warnings {
            d.find(
                VOLUME_AFFINITY_CONFLICT,
                message,
                format!("Let Pod {name} run where its volume is: relax its nodeSelector/node affinity, or add nodes matching both; or move the data (snapshot the volume, restore it with a class whose topology your nodes have)."),
            );
        }
    }
    Ok(())
}

/// Whether a message of the rule names PersistentVolume `volume` (followed by a space or a
/// comma, so `pv-d` is not `pv-d2`).
fn names_volume(message: &str, volume: &str) -> bool {
    [" ", ","]
        .iter()
        .any(|end| message.contains(&format!("PersistentVolume {volume}{end}")))
}
