//! `--register`: the leader keeps the two webhook configurations current. It only ever
//! updates them: the manifests create them (`kubectl apply -k webhook-config/...`).
//!
//! The manifests in `webhook-config/base/webhooks/` are the single source of the webhook
//! configurations (names, rules, failure policies, timeouts, selectors): they are embedded here
//! and only the fields that depend on the deployment are filled in: every webhook's
//! `clientConfig.service` namespace and name, the service's own namespace in the
//! `namespaceSelector` exclusion, and `clientConfig.caBundle`.
//!
//! Writes are server-side apply with the field manager `storage-admission` (forced): the
//! service owns exactly the fields it sends and nothing else, so a label, an annotation or a
//! webhook another tool added stays, and no read-modify-write race can drop someone else's
//! change (an update would replace the whole object from a possibly stale read). Forcing
//! takes over the fields from a previous `kubectl apply` of the same manifests, which set
//! the same values, so the two never fight.
//!
//! Before writing, the current object is read and compared over the fields this service
//! sets: when they already hold the desired values there is no write at all, so the
//! resync costs one GET per configuration and leaves no trace in the audit log.
//!
//! A configuration that does not exist is never created, only reported (result `missing`)
//! and looked for again at the next pass. Creating it would need `create` on webhook
//! configurations, which RBAC cannot limit by name: a pod holding it could register its own
//! webhook on Pods or Secrets. And an admin who deleted the configurations to uninstall
//! would see the leader put its fail-closed webhooks back, pointing at a Service about to go.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::identity::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::metrics::RegistrationLabels;

/// The namespace (and Service name) the shipped manifests use; replaced by this deployment's.
const MANIFEST_NAMESPACE: &str = "storage-admission";

const MUTATING_MANIFEST: &str =
    include_str!("../webhook-config/base/webhooks/mutating-webhook.yaml");
const VALIDATING_MANIFEST: &str =
    include_str!("../webhook-config/base/webhooks/validating-webhook.yaml");

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the built-in {configuration} webhook manifest is unusable: {message}")]
    Manifest {
        configuration: &'static str,
        message: String,
    },
    #[error("the CA bundle is not usable for caBundle: {0}")]
    Bundle(String),
    #[error("cannot read {kind} {name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{kind} {name} does not exist, so its webhooks cannot get this deployment's caBundle: \
         create it by applying the manifests (kubectl apply -k webhook-config/overlays/<overlay>, \
         or webhook-config/); the leader only updates it and looks for it again at its next pass"
    )]
    Missing { kind: &'static str, name: String },
}

impl RegistrationError {
    /// The bounded `result` label of a failed registration.
    fn result(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "missing",
            _ => "error",
        }
    }
}

/// Where this deployment's webhooks are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub service: String,
}

/// One of the two webhook configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Configuration {
    Mutating,
    Validating,
}

impl Configuration {
    pub const ALL: [Self; 2] = [Self::Mutating, Self::Validating];

    /// The bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutating => "mutating",
            Self::Validating => "validating",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Mutating => "MutatingWebhookConfiguration",
            Self::Validating => "ValidatingWebhookConfiguration",
        }
    }

    fn manifest(self) -> &'static str {
        match self {
            Self::Mutating => MUTATING_MANIFEST,
            Self::Validating => VALIDATING_MANIFEST,
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Self::Mutating => ApiResource::erase::<MutatingWebhookConfiguration>(&()),
            Self::Validating => ApiResource::erase::<ValidatingWebhookConfiguration>(&()),
        }
    }
}

/// The configuration this deployment registers: the embedded manifest with the service
/// reference, the namespace exclusion and `caBundle` (PEM, one or more CAs) filled in.
pub fn desired(
    configuration: Configuration,
    target: &Target,
    ca_bundle_pem: &[u8],
) -> Result<Value, RegistrationError> {
    let bad = |message: String| RegistrationError::Manifest {
        configuration: configuration.as_str(),
        message,
    };
    if crate::certs::inspect(ca_bundle_pem).is_err() {
        return Err(RegistrationError::Bundle(
            "it holds no PEM certificate".to_owned(),
        ));
    }
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem);
    let manifest: Value =
        serde_saphyr::from_str(configuration.manifest()).map_err(|e| bad(e.to_string()))?;
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no metadata.name".into()))?
        .to_owned();
    let mut webhooks = manifest
        .get("webhooks")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| bad("no webhooks".into()))?;
    for webhook in &mut webhooks {
        let service = webhook
            .pointer_mut("/clientConfig/service")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| bad("a webhook without clientConfig.service".into()))?;
        service.insert("namespace".into(), target.namespace.clone().into());
        service.insert("name".into(), target.service.clone().into());
        if let Some(client_config) = webhook
            .get_mut("clientConfig")
            .and_then(Value::as_object_mut)
        {
            client_config.insert("caBundle".into(), ca_bundle.clone().into());
        }
        // The webhooks never see their own namespace: requests for it (the service's own
        // pods, Lease and Secret) must not depend on the service being up.
        if let Some(expressions) = webhook
            .pointer_mut("/namespaceSelector/matchExpressions")
            .and_then(Value::as_array_mut)
        {
            for values in expressions
                .iter_mut()
                .filter_map(|e| e.get_mut("values").and_then(Value::as_array_mut))
            {
                for value in values.iter_mut() {
                    if value == MANIFEST_NAMESPACE {
                        *value = target.namespace.clone().into();
                    }
                }
            }
        }
    }
    Ok(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": configuration.kind(),
        "metadata": {"name": name},
        "webhooks": webhooks,
    }))
}

/// Whether `current` already holds every field of `desired` with the same value: every
/// desired webhook exists (by name) and contains the desired fields. Fields the API server
/// defaulted and webhooks another manager added do not count: they are not ours.
pub fn up_to_date(desired: &Value, current: &Value) -> bool {
    let hooks = |v: &Value| v.get("webhooks").and_then(Value::as_array).cloned();
    let (Some(wanted), Some(present)) = (hooks(desired), hooks(current)) else {
        return false;
    };
    wanted.iter().all(|want| {
        present
            .iter()
            .find(|have| have.get("name") == want.get("name"))
            .is_some_and(|have| covers(have, want))
    })
}

/// `have` contains `want`: objects by key, arrays element by element with the same length.
fn covers(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .all(|(k, w)| have.get(k).is_some_and(|h| covers(h, w))),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len() && have.iter().zip(want).all(|(h, w)| covers(h, w))
        }
        (have, want) => have == want,
    }
}

/// Whether registering one (existing) configuration changed it (the `result` label of
/// `registrations`; a failure is labelled by its error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigurationChange {
    Updated,
    Unchanged,
}

impl ConfigurationChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Registers the two webhook configurations of one deployment.
pub struct Registrar {
    pub client: Client,
    pub target: Target,
    pub metrics: Arc<Metrics>,
}

impl Registrar {
    /// Brings both configurations to the desired state with `ca_bundle_pem`; stops at the
    /// first error, a missing configuration included (the caller retries the whole
    /// registration, and self-managed rotation does not promote a new certificate until it
    /// succeeded).
    pub async fn register(&self, ca_bundle_pem: &[u8]) -> Result<(), RegistrationError> {
        for configuration in Configuration::ALL {
            let result = self.register_one(configuration, ca_bundle_pem).await;
            let label = match &result {
                Ok(outcome) => outcome.as_str(),
                Err(error) => error.result(),
            };
            self.metrics
                .registrations
                .get_or_create(&RegistrationLabels {
                    configuration: configuration.as_str(),
                    result: label,
                })
                .inc();
            match result {
                Ok(ConfigurationChange::Unchanged) => {}
                Ok(outcome) => {
                    tracing::info!(
                        configuration = configuration.kind(),
                        outcome = outcome.as_str(),
                        "webhook configuration registered"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn register_one(
        &self,
        configuration: Configuration,
        ca_bundle_pem: &[u8],
    ) -> Result<ConfigurationChange, RegistrationError> {
        let desired = desired(configuration, &self.target, ca_bundle_pem)?;
        let name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &configuration.resource());
        let current = api
            .get_opt(&name)
            .await
            .map_err(|source| RegistrationError::Read {
                kind: configuration.kind(),
                name: name.clone(),
                source,
            })?;
        let Some(current) = current else {
            return Err(RegistrationError::Missing {
                kind: configuration.kind(),
                name,
            });
        };
        if up_to_date(
            &desired,
            &serde_json::to_value(&current).unwrap_or(Value::Null),
        ) {
            return Ok(ConfigurationChange::Unchanged);
        }
        // Server-side apply creates a missing object, but it only gets here after reading the
        // object. If it is deleted in between, the API server authorizes this apply as a
        // `create`, which the shipped RBAC does not grant: it fails (an `error`), and the next
        // pass finds the configuration missing.
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|source| RegistrationError::Apply {
            kind: configuration.kind(),
            name,
            source,
        })?;
        Ok(ConfigurationChange::Updated)
    }
}

/// `--register --certs files`: keeps the configurations registered with the CA bundle of
/// `--ca-bundle FILE`, checked every `poll` (at once when the file changed) and re-registered
/// every `resync` (repairing any drift), while this replica leads (a pass cut short by a lost
/// lead is safe: every pass starts from a fresh read).
pub async fn run_from_file(
    registrar: Arc<Registrar>,
    bundle_file: std::path::PathBuf,
    poll: Duration,
    resync: Duration,
    leader: watch::Receiver<bool>,
) {
    crate::leader::while_leader(leader, || {
        let registrar = registrar.clone();
        let bundle_file = bundle_file.clone();
        async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The bundle last registered, and when; None forces a registration.
            let mut last: Option<(Instant, Vec<u8>)> = None;
            loop {
                ticker.tick().await;
                let bundle = match tokio::fs::read(&bundle_file).await {
                    Ok(b) => b,
                    Err(error) => {
                        tracing::error!(%error, file = %bundle_file.display(), "cannot read the CA bundle; the registered caBundle is left as it is");
                        continue;
                    }
                };
                let due = match &last {
                    None => true,
                    Some((at, registered)) => {
                        *registered != bundle || at.elapsed() >= resync
                    }
                };
                if !due {
                    continue;
                }
                match registrar.register(&bundle).await {
                    Ok(()) => last = Some((Instant::now(), bundle)),
                    Err(error) => {
                        tracing::error!(%error, "webhook registration failed; retrying");
                        last = None;
                    }
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            namespace: "storage-system".into(),
            service: "admission".into(),
        }
    }

    fn ca() -> String {
        crate::certs::generate(&["x".into()], "t", 1)
            .unwrap()
            .ca_cert_pem
    }

    #[test]
    fn desired_configurations_are_the_manifests_with_this_deployment_filled_in() {
        let ca = ca();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&ca);
        for (configuration, count) in [(Configuration::Mutating, 5), (Configuration::Validating, 6)]
        {
            let body = desired(configuration, &target(), ca.as_bytes()).unwrap();
            assert_eq!(body["kind"], configuration.kind());
            assert_eq!(
                body["metadata"],
                serde_json::json!({"name": "storage-admission"})
            );
            let hooks = body["webhooks"].as_array().unwrap();
            assert_eq!(hooks.len(), count);
            for hook in hooks {
                let service = &hook["clientConfig"]["service"];
                assert_eq!(service["namespace"], "storage-system");
                assert_eq!(service["name"], "admission");
                assert_eq!(service["port"], 443, "the rest of the manifest is kept");
                assert_eq!(hook["clientConfig"]["caBundle"], encoded.as_str());
                // The YAML anchors of the manifests are resolved, with our namespace.
                assert_eq!(
                    hook["namespaceSelector"]["matchExpressions"][0]["values"],
                    serde_json::json!(["storage-system", "kube-system"])
                );
                assert!(hook["failurePolicy"].is_string());
            }
        }
        assert!(matches!(
            desired(Configuration::Mutating, &target(), b"not a certificate"),
            Err(RegistrationError::Bundle(_))
        ));
    }

    #[test]
    fn up_to_date_compares_only_the_fields_we_set() {
        let ca = ca();
        let want = desired(Configuration::Validating, &target(), ca.as_bytes()).unwrap();
        let mut have = want.clone();
        // Server defaults, metadata and someone else's webhook are not ours.
        have["metadata"]["resourceVersion"] = "9".into();
        have["webhooks"][0]["rules"][0]["extra"] = "defaulted".into();
        have["webhooks"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "other.example.com"}));
        assert!(up_to_date(&want, &have));
        let mut stale = have.clone();
        stale["webhooks"][1]["clientConfig"]["caBundle"] = "b2xk".into();
        assert!(!up_to_date(&want, &stale));
        let mut missing = have.clone();
        missing["webhooks"].as_array_mut().unwrap().remove(0);
        assert!(!up_to_date(&want, &missing));
        let mut edited = have;
        edited["webhooks"][2]["failurePolicy"] = "Ignore".into();
        assert!(!up_to_date(&want, &edited));
        assert!(!up_to_date(&want, &serde_json::json!({})));
    }
}
