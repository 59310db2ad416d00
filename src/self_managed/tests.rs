//! The decision with fixed times, then the leader's pass and the replica's watch against a
//! mocked API server (`tower_test::mock::pair`): every call is asserted (method, path, body)
//! in order, and once the code under test is dropped no other call may arrive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, Request, Response, StatusCode};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tower_test::mock;

use super::run::{CertRotator, serve_from, watch_secret};
use super::*;
use crate::metrics::Metrics;
use crate::registration::{Configuration, Registrar, RegistrationError, Target, desired};
use crate::server::tls::{ReloadingCert, provider};
use crate::testing::{ApiHandle, body_json, mock_client, respond, status_body as status};

const NS: &str = "storage-admission";
const SECRET: &str = "storage-admission-tls";
const SECRET_PATH: &str = "/api/v1/namespaces/storage-admission/secrets/storage-admission-tls";
const MUTATING_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/storage-admission";
const VALIDATING_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/storage-admission";

/// 2030-01-01T00:00:00Z.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

fn names() -> Vec<String> {
    crate::certs::service_names("storage-admission", NS)
}

fn issuing() -> Issuing {
    Issuing {
        names: names(),
        common_name: "storage-admission".into(),
        validity: days(90),
    }
}

/// A Secret as the leader creates it at `at`.
fn created_at(at: OffsetDateTime) -> SecretData {
    render(Plan::Create, at, &issuing(), None).unwrap().unwrap()
}

fn cas(pem: &[u8]) -> Vec<crate::certs::CertInfo> {
    crate::certs::inspect(pem).unwrap()
}

/// A Secret created at t0, 61 days later (a third of 90 days left): the old data, the time,
/// and the data with the next pair staged.
fn staged_rotation() -> (SecretData, OffsetDateTime, SecretData) {
    let old = created_at(t0());
    let now = t0() + days(61);
    let staged = render(Plan::Stage(Why::Expiring), now, &issuing(), Some(&old))
        .unwrap()
        .unwrap();
    (old, now, staged)
}

fn leaf(data: &SecretData, key: &str) -> crate::certs::CertInfo {
    cas(&data[key]).remove(0)
}

// ---------------------------------------------------------------------------------------------
// The pure decision.

#[test]
fn a_missing_secret_is_created_with_a_ca_and_a_certificate_for_the_service_names() {
    assert_eq!(plan(t0(), &names(), None, None), Plan::Create);
    let data = created_at(t0());
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [CA_CRT, TLS_CRT, TLS_KEY],
        "no next pair"
    );
    let serving = leaf(&data, TLS_CRT);
    assert_eq!(serving.names, names());
    assert_eq!(serving.not_after, t0() + days(90));
    let ca = cas(&data[CA_CRT]);
    assert_eq!(ca.len(), 1);
    assert!(serving.is_signed_by(&ca[0]));
    assert_eq!(plan(t0(), &names(), Some(&data), None), Plan::Keep);
}

#[test]
fn rotation_starts_when_a_third_of_the_validity_remains() {
    let data = created_at(t0());
    // Valid from t0-1h to t0+90d: a third is 30d 20m.
    assert_eq!(
        plan(t0() + days(59), &names(), Some(&data), None),
        Plan::Keep
    );
    assert_eq!(
        plan(t0() + days(60), &names(), Some(&data), None),
        Plan::Stage(Why::Expiring)
    );
}

#[test]
fn a_rotation_stages_then_promotes_only_once_the_webhooks_trust_the_new_ca_then_prunes() {
    let (old, now, staged) = staged_rotation();
    // Staged: the served pair is untouched, the bundle holds old and new CA, next is ready.
    assert_eq!(staged[TLS_CRT], old[TLS_CRT]);
    assert_eq!(staged[TLS_KEY], old[TLS_KEY]);
    let bundle = cas(&staged[CA_CRT]);
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], cas(&old[CA_CRT])[0], "old CA first, kept");
    let next = leaf(&staged, NEXT_CRT);
    assert!(next.is_signed_by(&bundle[1]));
    assert_eq!(next.not_after, now + days(90));

    // Not promoted while the webhooks' caBundle is unknown or only the old CA.
    assert_eq!(
        plan(now, &names(), Some(&staged), None),
        Plan::WaitForWebhooks
    );
    assert_eq!(
        plan(now, &names(), Some(&staged), Some(&old[CA_CRT])),
        Plan::WaitForWebhooks
    );
    assert_eq!(
        plan(now, &names(), Some(&staged), Some(&staged[CA_CRT])),
        Plan::Promote
    );
    let promoted = render(Plan::Promote, now, &issuing(), Some(&staged))
        .unwrap()
        .unwrap();
    assert_eq!(promoted[TLS_CRT], staged[NEXT_CRT]);
    assert_eq!(promoted[TLS_KEY], staged[NEXT_KEY]);
    assert!(!promoted.contains_key(NEXT_CRT) && !promoted.contains_key(NEXT_KEY));
    assert_eq!(promoted[CA_CRT], staged[CA_CRT], "the old CA stays trusted");

    // The old CA stays until it (and the old certificate it signed) expired, then goes.
    assert_eq!(
        plan(t0() + days(90), &names(), Some(&promoted), None),
        Plan::Keep
    );
    let after = t0() + days(90) + time::Duration::seconds(1);
    assert_eq!(plan(after, &names(), Some(&promoted), None), Plan::Prune);
    let pruned = render(Plan::Prune, after, &issuing(), Some(&promoted))
        .unwrap()
        .unwrap();
    assert_eq!(cas(&pruned[CA_CRT]), vec![bundle[1].clone()]);
    assert_eq!(pruned[TLS_CRT], promoted[TLS_CRT]);
    assert_eq!(plan(after, &names(), Some(&pruned), None), Plan::Keep);
}

#[test]
fn an_unusable_secret_is_renewed_through_stage_and_promote() {
    let good = created_at(t0());
    let now = t0() + days(1);
    let with = |key: &str, value: &[u8]| {
        let mut d = good.clone();
        d.insert(key.to_owned(), value.to_vec());
        d
    };
    let other = created_at(t0());
    let cases = [
        (
            "garbage certificate",
            with(TLS_CRT, b"garbage"),
            Why::Unusable,
        ),
        (
            "key of another pair",
            with(TLS_KEY, &other[TLS_KEY]),
            Why::Unusable,
        ),
        (
            "CA of another pair",
            with(CA_CRT, &other[CA_CRT]),
            Why::Unusable,
        ),
        (
            "garbage next pair",
            with(NEXT_CRT, b"garbage"),
            Why::NextUnusable,
        ),
    ];
    for (what, data, why) in cases {
        assert_eq!(
            plan(now, &names(), Some(&data), None),
            Plan::Stage(why),
            "{what}"
        );
    }
    let mut missing = good.clone();
    missing.remove(TLS_KEY);
    assert_eq!(
        plan(now, &names(), Some(&missing), None),
        Plan::Stage(Why::Unusable)
    );
    // Another Service name: the certificate does not cover it.
    let moved = crate::certs::service_names("storage-admission", "storage-system");
    assert_eq!(
        plan(now, &moved, Some(&good), None),
        Plan::Stage(Why::Names)
    );
    // Expired: no longer valid at all.
    assert_eq!(
        plan(t0() + days(91), &names(), Some(&good), None),
        Plan::Stage(Why::Expired)
    );
    // A garbage block next to a valid CA is pruned, the valid CA kept.
    let mut noisy = good[CA_CRT].clone();
    noisy.extend_from_slice(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let noisy = with(CA_CRT, &noisy);
    assert_eq!(plan(now, &names(), Some(&noisy), None), Plan::Prune);
    let pruned = render(Plan::Prune, now, &issuing(), Some(&noisy))
        .unwrap()
        .unwrap();
    assert_eq!(cas(&pruned[CA_CRT]), cas(&good[CA_CRT]));
}

// ---------------------------------------------------------------------------------------------
// The leader's pass against a mocked API server.

fn leader(at: OffsetDateTime) -> (Arc<CertRotator>, ApiHandle) {
    let (client, handle) = mock_client();
    let metrics = Arc::new(Metrics::new());
    let leader = CertRotator {
        client: client.clone(),
        namespace: NS.into(),
        secret: SECRET.into(),
        issuing: issuing(),
        registrar: Registrar {
            client,
            target: target(),
            metrics: metrics.clone(),
        },
        metrics,
        clock: Arc::new(move || at),
        resync: Duration::from_secs(60),
        retry: Duration::from_secs(5),
    };
    (Arc::new(leader), handle)
}

fn target() -> Target {
    Target {
        namespace: NS.into(),
        service: "storage-admission".into(),
    }
}

fn secret_json(data: &SecretData, resource_version: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), b64.encode(v).into()))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": SECRET, "namespace": NS, "resourceVersion": resource_version},
           "data": data})
}

fn data_of(secret: &Value) -> SecretData {
    let b64 = base64::engine::general_purpose::STANDARD;
    secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), b64.decode(v.as_str().unwrap()).unwrap()))
        .collect()
}

/// A webhook configuration as the API server returns it: what we applied plus server fields.
fn stored(configuration: Configuration, bundle: &[u8]) -> Value {
    let mut object = desired(configuration, &target(), bundle).unwrap();
    object["metadata"]["resourceVersion"] = "100".into();
    object["metadata"]["uid"] = "7c1e".into();
    object
}

/// A webhook configuration as the manifests create it (`kubectl apply -k webhook-config/...`),
/// before the leader registered a caBundle: the leader only ever updates this.
fn shipped(configuration: Configuration) -> Value {
    let mut object = stored(configuration, &created_at(t0())[CA_CRT]);
    for hook in object["webhooks"].as_array_mut().unwrap() {
        hook["clientConfig"]
            .as_object_mut()
            .unwrap()
            .remove("caBundle");
    }
    object
}

/// Asserts the next call's method and path; returns the request.
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
    let (request, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("expected {method} {path}, but the client is gone"));
    assert_eq!(
        (request.method(), request.uri().path()),
        (&method, path),
        "{}",
        request.uri()
    );
    (request, send)
}

/// Asserts a server-side apply of `configuration` with `bundle` as every webhook's caBundle;
/// answers with the applied object.
async fn expect_apply(handle: &mut ApiHandle, configuration: Configuration, bundle: &[u8]) {
    let path = match configuration {
        Configuration::Mutating => MUTATING_PATH,
        Configuration::Validating => VALIDATING_PATH,
    };
    let (request, send) = expect(handle, Method::PATCH, path).await;
    let query = request.uri().query().unwrap_or_default().to_owned();
    assert!(
        query.contains("fieldManager=storage-admission") && query.contains("force=true"),
        "{query}"
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = body_json(request).await;
    assert_eq!(body, desired(configuration, &target(), bundle).unwrap());
    // Spelled out, not only through `desired`: the names, the service and the caBundle.
    assert_eq!(body["metadata"]["name"], "storage-admission");
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    for hook in body["webhooks"].as_array().unwrap() {
        assert!(
            hook["name"]
                .as_str()
                .unwrap()
                .ends_with(".storage-admission.io")
        );
        assert_eq!(hook["clientConfig"]["service"]["name"], "storage-admission");
        assert_eq!(hook["clientConfig"]["service"]["namespace"], NS);
        assert_eq!(hook["clientConfig"]["caBundle"], encoded.as_str());
    }
    send.send_response(respond(StatusCode::OK, &body));
}

/// Answers a GET of a webhook configuration with `current` (None: 404).
async fn expect_get_config(
    handle: &mut ApiHandle,
    configuration: Configuration,
    current: Option<Value>,
) {
    let path = match configuration {
        Configuration::Mutating => MUTATING_PATH,
        Configuration::Validating => VALIDATING_PATH,
    };
    let (_, send) = expect(handle, Method::GET, path).await;
    send.send_response(match current {
        Some(object) => respond(StatusCode::OK, &object),
        None => respond(StatusCode::NOT_FOUND, &status(404, "NotFound")),
    });
}

fn expect_no_more_calls(mut handle: ApiHandle) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Some((request, _)) = handle.next_request().await {
            panic!("unexpected call: {} {}", request.method(), request.uri());
        }
    })
}

#[tokio::test]
async fn first_start_creates_the_secret_then_updates_both_shipped_webhook_configurations() {
    let (leader, mut handle) = leader(t0());
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::NOT_FOUND, &status(404, "NotFound")));
        let (request, send) = expect(
            &mut handle,
            Method::POST,
            "/api/v1/namespaces/storage-admission/secrets",
        )
        .await;
        let secret = body_json(request).await;
        assert_eq!(secret["metadata"]["name"], SECRET);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let data = data_of(&secret);
        assert_eq!(data.keys().collect::<Vec<_>>(), [CA_CRT, TLS_CRT, TLS_KEY]);
        assert_eq!(leaf(&data, TLS_CRT).names, names());
        let mut created = secret.clone();
        created["metadata"]["resourceVersion"] = "1".into();
        send.send_response(respond(StatusCode::CREATED, &created));
        for configuration in Configuration::ALL {
            expect_get_config(&mut handle, configuration, Some(shipped(configuration))).await;
            expect_apply(&mut handle, configuration, &data[CA_CRT]).await;
        }
        handle
    });
    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    let metrics = leader.metrics.encode();
    assert!(
        metrics.contains(
            "storage_admission_tls_secret_writes_total{action=\"create\",result=\"success\"} 1"
        ),
        "{metrics}"
    );
    for configuration in ["mutating", "validating"] {
        assert!(metrics.contains(&format!("storage_admission_webhook_registrations_total{{configuration=\"{configuration}\",result=\"updated\"}} 1")), "{metrics}");
    }
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn losing_the_create_race_rereads_the_winners_secret() {
    let (leader, mut handle) = leader(t0());
    let winners = created_at(t0());
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::NOT_FOUND, &status(404, "NotFound")));
        let (_, send) = expect(
            &mut handle,
            Method::POST,
            "/api/v1/namespaces/storage-admission/secrets",
        )
        .await;
        send.send_response(respond(StatusCode::CONFLICT, &status(409, "AlreadyExists")));
        // Re-read: the other writer's Secret is used as it is, and registered.
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&winners, "1")));
        for configuration in Configuration::ALL {
            expect_get_config(&mut handle, configuration, Some(shipped(configuration))).await;
            expect_apply(&mut handle, configuration, &winners[CA_CRT]).await;
        }
        handle
    });
    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    assert!(leader.metrics.encode().contains(
        "storage_admission_tls_secret_writes_total{action=\"create\",result=\"conflict\"} 1"
    ));
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn an_up_to_date_secret_and_configurations_cause_no_write() {
    let data = created_at(t0());
    let (leader, mut handle) = leader(t0() + days(10));
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&data, "1")));
        for configuration in Configuration::ALL {
            expect_get_config(
                &mut handle,
                configuration,
                Some(stored(configuration, &data[CA_CRT])),
            )
            .await;
        }
        handle
    });
    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    assert!(leader.metrics.encode().contains("storage_admission_webhook_registrations_total{configuration=\"mutating\",result=\"unchanged\"} 1"));
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn a_stale_ca_bundle_is_updated() {
    let data = created_at(t0());
    let stale = created_at(t0());
    let (leader, mut handle) = leader(t0() + days(10));
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&data, "1")));
        expect_get_config(
            &mut handle,
            Configuration::Mutating,
            Some(stored(Configuration::Mutating, &stale[CA_CRT])),
        )
        .await;
        expect_apply(&mut handle, Configuration::Mutating, &data[CA_CRT]).await;
        expect_get_config(
            &mut handle,
            Configuration::Validating,
            Some(stored(Configuration::Validating, &data[CA_CRT])),
        )
        .await;
        handle
    });
    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    let metrics = leader.metrics.encode();
    assert!(metrics.contains("storage_admission_webhook_registrations_total{configuration=\"mutating\",result=\"updated\"} 1"), "{metrics}");
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn rotation_adds_the_new_ca_to_the_webhooks_before_the_serving_certificate_changes() {
    let old = created_at(t0());
    let (leader, mut handle) = leader(t0() + days(61));
    let calls = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let log = calls.clone();
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&old, "1")));

        // Stage: resourceVersion-guarded; the served pair is unchanged; both CAs in ca.crt.
        let (request, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
        let staged = body_json(request).await;
        assert_eq!(staged["metadata"]["resourceVersion"], "1");
        let staged_data = data_of(&staged);
        assert_eq!(
            staged_data[TLS_CRT], old[TLS_CRT],
            "still serving the old certificate"
        );
        assert_eq!(cas(&staged_data[CA_CRT]).len(), 2);
        assert!(staged_data.contains_key(NEXT_CRT));
        log.lock().unwrap().push("stage secret (serving unchanged)");
        let mut reply = staged.clone();
        reply["metadata"]["resourceVersion"] = "2".into();
        send.send_response(respond(StatusCode::OK, &reply));

        // Both configurations get old+new CA.
        for configuration in Configuration::ALL {
            expect_get_config(
                &mut handle,
                configuration,
                Some(stored(configuration, &old[CA_CRT])),
            )
            .await;
            expect_apply(&mut handle, configuration, &staged_data[CA_CRT]).await;
            log.lock().unwrap().push(match configuration {
                Configuration::Mutating => "caBundle old+new: mutating",
                Configuration::Validating => "caBundle old+new: validating",
            });
        }

        // Promote: the serving pair becomes the staged one, guarded by the new version.
        let (request, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
        let promoted = body_json(request).await;
        assert_eq!(promoted["metadata"]["resourceVersion"], "2");
        let promoted_data = data_of(&promoted);
        assert_eq!(promoted_data[TLS_CRT], staged_data[NEXT_CRT]);
        assert_eq!(promoted_data[CA_CRT], staged_data[CA_CRT]);
        assert!(!promoted_data.contains_key(NEXT_CRT));
        log.lock().unwrap().push("promote secret (serving changes)");
        send.send_response(respond(StatusCode::OK, &promoted));
        handle
    });
    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    assert_eq!(
        *calls.lock().unwrap(),
        [
            "stage secret (serving unchanged)",
            "caBundle old+new: mutating",
            "caBundle old+new: validating",
            "promote secret (serving changes)",
        ]
    );
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn a_failed_registration_leaves_the_rotation_staged() {
    let (old, now, staged) = staged_rotation();
    let (leader, mut handle) = leader(now);
    let verifier = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&staged, "2")));
        expect_get_config(
            &mut handle,
            Configuration::Mutating,
            Some(stored(Configuration::Mutating, &old[CA_CRT])),
        )
        .await;
        let (_, send) = expect(&mut handle, Method::PATCH, MUTATING_PATH).await;
        send.send_response(respond(StatusCode::FORBIDDEN, &status(403, "Forbidden")));
        handle
    });
    // No promotion without the new CA in every caBundle.
    assert!(leader.pass().await.is_err());
    let handle = verifier.await.unwrap();
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn a_missing_configuration_is_never_created_and_is_updated_once_it_exists() {
    let data = created_at(t0());
    let (leader, mut handle) = leader(t0() + days(10));
    let verifier = {
        let data = data.clone();
        tokio::spawn(async move {
            // Pass 1: the validating configuration was deleted (an uninstall, or never applied).
            let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
            send.send_response(respond(StatusCode::OK, &secret_json(&data, "1")));
            expect_get_config(
                &mut handle,
                Configuration::Mutating,
                Some(stored(Configuration::Mutating, &data[CA_CRT])),
            )
            .await;
            expect_get_config(&mut handle, Configuration::Validating, None).await;
            // Pass 2 starts with the very next call: no PATCH (an apply would create it) and no
            // POST came after the 404. Meanwhile the manifests were applied again.
            let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
            send.send_response(respond(StatusCode::OK, &secret_json(&data, "1")));
            expect_get_config(
                &mut handle,
                Configuration::Mutating,
                Some(stored(Configuration::Mutating, &data[CA_CRT])),
            )
            .await;
            expect_get_config(
                &mut handle,
                Configuration::Validating,
                Some(shipped(Configuration::Validating)),
            )
            .await;
            expect_apply(&mut handle, Configuration::Validating, &data[CA_CRT]).await;
            handle
        })
    };
    let error = leader.pass().await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            super::run::Error::Registration(RegistrationError::Missing {
                kind: "ValidatingWebhookConfiguration",
                ..
            })
        ),
        "{message}"
    );
    // Written for the person who has to fix it: which object, and how.
    assert!(
        message.starts_with("ValidatingWebhookConfiguration storage-admission does not exist")
            && message.contains("kubectl apply -k webhook-config/")
            && message.contains("only updates it"),
        "{message}"
    );
    let metrics = leader.metrics.encode();
    assert!(metrics.contains("storage_admission_webhook_registrations_total{configuration=\"validating\",result=\"missing\"} 1"), "{metrics}");
    assert!(!metrics.contains("result=\"updated\""), "{metrics}");

    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    let metrics = leader.metrics.encode();
    assert!(metrics.contains("storage_admission_webhook_registrations_total{configuration=\"validating\",result=\"updated\"} 1"), "{metrics}");
    assert!(metrics.contains("storage_admission_webhook_registrations_total{configuration=\"validating\",result=\"missing\"} 1"), "{metrics}");
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test]
async fn a_missing_configuration_leaves_the_rotation_staged_until_it_exists() {
    let (old, now, staged) = staged_rotation();
    let (leader, mut handle) = leader(now);
    let verifier = tokio::spawn(async move {
        // Pass 1: the mutating configuration is gone, so its webhooks cannot be told about
        // the new CA: the Secret stays staged (no PUT), still serving the old pair.
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&staged, "2")));
        expect_get_config(&mut handle, Configuration::Mutating, None).await;

        // Pass 2: it was applied again (no caBundle): both get old+new, then the promotion.
        let (_, send) = expect(&mut handle, Method::GET, SECRET_PATH).await;
        send.send_response(respond(StatusCode::OK, &secret_json(&staged, "2")));
        expect_get_config(
            &mut handle,
            Configuration::Mutating,
            Some(shipped(Configuration::Mutating)),
        )
        .await;
        expect_apply(&mut handle, Configuration::Mutating, &staged[CA_CRT]).await;
        expect_get_config(
            &mut handle,
            Configuration::Validating,
            Some(stored(Configuration::Validating, &old[CA_CRT])),
        )
        .await;
        expect_apply(&mut handle, Configuration::Validating, &staged[CA_CRT]).await;
        let (request, send) = expect(&mut handle, Method::PUT, SECRET_PATH).await;
        let promoted = body_json(request).await;
        assert_eq!(promoted["metadata"]["resourceVersion"], "2");
        assert_eq!(data_of(&promoted)[TLS_CRT], staged[NEXT_CRT]);
        send.send_response(respond(StatusCode::OK, &promoted));
        handle
    });
    assert!(matches!(
        leader.pass().await,
        Err(super::run::Error::Registration(
            RegistrationError::Missing {
                kind: "MutatingWebhookConfiguration",
                ..
            }
        ))
    ));
    let metrics = leader.metrics.encode();
    assert!(metrics.contains("storage_admission_webhook_registrations_total{configuration=\"mutating\",result=\"missing\"} 1"), "{metrics}");
    assert!(!metrics.contains("action=\"promote\""), "{metrics}");

    leader.pass().await.unwrap();
    let handle = verifier.await.unwrap();
    let metrics = leader.metrics.encode();
    assert!(
        metrics.contains(
            "storage_admission_tls_secret_writes_total{action=\"promote\",result=\"success\"} 1"
        ),
        "{metrics}"
    );
    drop(leader);
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_does_not_lead_never_writes() {
    let (leader, handle) = leader(t0());
    let no_calls = expect_no_more_calls(handle);
    let (is_leader_tx, is_leader) = tokio::sync::watch::channel(false);
    let changed = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(leader.clone().run(is_leader, changed.clone()));
    // A Secret change and a long time pass; still not the leader.
    changed.notify_one();
    tokio::time::advance(Duration::from_secs(3600)).await;
    drop(is_leader_tx);
    task.await.unwrap();
    drop(leader);
    no_calls.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Every replica: the watched Secret is what it serves.

fn secret_object(data: &SecretData) -> Secret {
    serde_json::from_value(secret_json(data, "1")).unwrap()
}

#[test]
fn the_secret_pair_is_served_and_a_broken_one_ignored() {
    let cert = ReloadingCert::empty(provider());
    let metrics = Metrics::new();
    assert!(cert.current().is_none());
    let first = created_at(t0());
    assert_eq!(
        serve_from(&cert, &secret_object(&first), &metrics),
        Some(crate::server::tls::Reload::Reloaded)
    );
    let served = |cert: &ReloadingCert| cert.current().unwrap().cert[0].to_vec();
    assert_eq!(served(&cert), leaf(&first, TLS_CRT).der);
    assert_eq!(
        serve_from(&cert, &secret_object(&first), &metrics),
        Some(crate::server::tls::Reload::Unchanged)
    );
    let mut broken = first.clone();
    broken.insert(TLS_KEY.into(), created_at(t0())[TLS_KEY].clone());
    assert_eq!(serve_from(&cert, &secret_object(&broken), &metrics), None);
    assert_eq!(
        served(&cert),
        leaf(&first, TLS_CRT).der,
        "the previous pair keeps serving"
    );
    let second = created_at(t0());
    serve_from(&cert, &secret_object(&second), &metrics);
    assert_eq!(served(&cert), leaf(&second, TLS_CRT).der);
    let encoded = metrics.encode();
    assert!(
        encoded.contains("storage_admission_tls_reloads_total{result=\"error\"} 1"),
        "{encoded}"
    );
    assert!(
        encoded.contains(&format!(
            "storage_admission_serving_certificate_expiry_timestamp_seconds {}",
            (t0() + days(90)).unix_timestamp()
        )),
        "{encoded}"
    );
}

#[tokio::test]
async fn every_replica_watches_only_its_secret_and_serves_it() {
    let (client, mut handle) = mock_client();
    let cert = Arc::new(ReloadingCert::empty(provider()));
    let changed = Arc::new(tokio::sync::Notify::new());
    let data = created_at(t0());
    let watcher = tokio::spawn(watch_secret(
        client,
        NS.into(),
        SECRET.into(),
        cert.clone(),
        Arc::new(Metrics::new()),
        changed.clone(),
    ));
    let (request, send) = expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/storage-admission/secrets",
    )
    .await;
    let query = request.uri().query().unwrap_or_default().to_owned();
    assert!(
        query.contains("fieldSelector=metadata.name%3Dstorage-admission-tls"),
        "{query}"
    );
    assert!(!query.contains("watch=true"), "a list first: {query}");
    let mut item = secret_json(&data, "5");
    item.as_object_mut().unwrap().remove("apiVersion");
    item.as_object_mut().unwrap().remove("kind");
    send.send_response(respond(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "5"}, "items": [item]}),
    ));
    // The leader is woken by the change; by then the pair is served.
    changed.notified().await;
    assert_eq!(
        cert.current().unwrap().cert[0].to_vec(),
        leaf(&data, TLS_CRT).der
    );
    watcher.abort();
}

// ---------------------------------------------------------------------------------------------
// `--register --certs files`: the bundle comes from a file.

#[tokio::test(start_paused = true)]
async fn files_mode_registers_the_bundle_file_and_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.crt");
    let first = created_at(t0());
    let second = created_at(t0());
    std::fs::write(&file, &first[CA_CRT]).unwrap();
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let registrar = Arc::new(Registrar {
        client: Client::new(service, "default"),
        target: target(),
        metrics: Arc::new(Metrics::new()),
    });
    let (is_leader_tx, is_leader) = tokio::sync::watch::channel(true);
    let task = tokio::spawn(crate::registration::run_from_file(
        registrar,
        file.clone(),
        Duration::from_secs(5),
        Duration::from_secs(3600),
        is_leader,
    ));
    for configuration in Configuration::ALL {
        expect_get_config(&mut handle, configuration, Some(shipped(configuration))).await;
        expect_apply(&mut handle, configuration, &first[CA_CRT]).await;
    }
    // Unchanged polls call nothing until the resync (an hour of paused time): a re-check
    // that finds both configurations up to date and writes nothing.
    let before = tokio::time::Instant::now();
    for configuration in Configuration::ALL {
        expect_get_config(
            &mut handle,
            configuration,
            Some(stored(configuration, &first[CA_CRT])),
        )
        .await;
    }
    assert!(before.elapsed() >= Duration::from_secs(3600));
    // A new file content is registered at the next poll.
    std::fs::write(&file, &second[CA_CRT]).unwrap();
    for configuration in Configuration::ALL {
        expect_get_config(
            &mut handle,
            configuration,
            Some(stored(configuration, &first[CA_CRT])),
        )
        .await;
        expect_apply(&mut handle, configuration, &second[CA_CRT]).await;
    }
    drop(is_leader_tx);
    task.await.unwrap();
    expect_no_more_calls(handle).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn files_mode_never_creates_a_missing_configuration_and_looks_again_at_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.crt");
    let bundle = created_at(t0())[CA_CRT].clone();
    std::fs::write(&file, &bundle).unwrap();
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let metrics = Arc::new(Metrics::new());
    let registrar = Arc::new(Registrar {
        client: Client::new(service, "default"),
        target: target(),
        metrics: metrics.clone(),
    });
    let (is_leader_tx, is_leader) = tokio::sync::watch::channel(true);
    let task = tokio::spawn(crate::registration::run_from_file(
        registrar,
        file,
        Duration::from_secs(5),
        Duration::from_secs(3600),
        is_leader,
    ));
    expect_get_config(&mut handle, Configuration::Mutating, None).await;
    let before = tokio::time::Instant::now();
    // The next call is the next poll's read, not a write: the failed registration is retried
    // at the poll (5 s), not at the resync (an hour).
    expect_get_config(
        &mut handle,
        Configuration::Mutating,
        Some(shipped(Configuration::Mutating)),
    )
    .await;
    let waited = before.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(3600),
        "{waited:?}"
    );
    expect_apply(&mut handle, Configuration::Mutating, &bundle).await;
    expect_get_config(
        &mut handle,
        Configuration::Validating,
        Some(stored(Configuration::Validating, &bundle)),
    )
    .await;
    drop(is_leader_tx);
    task.await.unwrap();
    expect_no_more_calls(handle).await.unwrap();
    let encoded = metrics.encode();
    for line in [
        "{configuration=\"mutating\",result=\"missing\"} 1",
        // Counted before the validating read above was sent.
        "{configuration=\"mutating\",result=\"updated\"} 1",
    ] {
        assert!(
            encoded.contains(&format!(
                "storage_admission_webhook_registrations_total{line}"
            )),
            "{encoded}"
        );
    }
}

/// One pass over an up-to-date Secret and configurations: reads only.
async fn up_to_date_pass(handle: &mut ApiHandle, data: &SecretData) {
    let (_, send) = expect(handle, Method::GET, SECRET_PATH).await;
    send.send_response(respond(StatusCode::OK, &secret_json(data, "1")));
    for configuration in Configuration::ALL {
        expect_get_config(
            handle,
            configuration,
            Some(stored(configuration, &data[CA_CRT])),
        )
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_leader_passes_at_once_when_the_secret_changes_and_stops_when_it_loses_the_lead() {
    let data = created_at(t0());
    let (leader, mut handle) = leader(t0() + days(1));
    let (is_leader_tx, is_leader) = tokio::sync::watch::channel(true);
    let changed = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(leader.clone().run(is_leader, changed.clone()));
    up_to_date_pass(&mut handle, &data).await;
    // The watch saw a change: the next pass starts now, not after --resync.
    let before = tokio::time::Instant::now();
    changed.notify_one();
    up_to_date_pass(&mut handle, &data).await;
    assert_eq!(before.elapsed(), Duration::ZERO);
    // Lead lost: no pass on a change, nor after any resync.
    is_leader_tx.send_replace(false);
    tokio::task::yield_now().await;
    let no_calls = expect_no_more_calls(handle);
    changed.notify_one();
    tokio::time::advance(Duration::from_secs(3600)).await;
    drop(is_leader_tx);
    task.await.unwrap();
    drop(leader);
    no_calls.await.unwrap();
}
