//! The AdmissionReview envelope (`admission.k8s.io/v1`): decoding with clear errors, and
//! encoding responses (patches as base64 strings, as the API server requires).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::verdict::{Denial, Verdict};
use crate::model::parse_at;
use crate::policy::UserInfo;
use crate::rules::Operation;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Why a body is not a review this service can answer; each is answered with HTTP 400 and
/// the message, so the reason is in the API server's log.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body is not an AdmissionReview: {0}")]
    Shape(String),
    #[error(
        "unsupported AdmissionReview apiVersion {0:?}: only admission.k8s.io/v1 is served (set admissionReviewVersions: [v1] in the webhook configuration)"
    )]
    ApiVersion(String),
    #[error("AdmissionReview has no apiVersion: only admission.k8s.io/v1 is served")]
    MissingApiVersion,
    #[error("kind must be AdmissionReview, got {0:?}")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has no uid")]
    MissingUid,
    #[error("cannot encode the response: {0}")]
    Encode(String),
    /// Only without a runtime: a review that waited for a lookup no fetcher can make.
    #[error("the review did not complete without waiting, and nothing here can wait")]
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

/// `request` of an AdmissionReview. The objects stay raw JSON until a rule needs them, and
/// are then parsed once, straight into the rule's typed model.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    #[serde(default)]
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default)]
    pub object: Option<Box<RawValue>>,
    #[serde(default)]
    pub old_object: Option<Box<RawValue>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<Box<RawValue>>,
}

/// A review read in one pass (see [`decode`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Whole {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<AdmissionRequest>,
}

/// Decodes a review; returns the apiVersion to echo and the request.
pub fn decode(body: &[u8]) -> Result<(String, AdmissionRequest), ReviewError> {
    // serde would accept a JSON array as a struct; a review is always an object.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(ReviewError::Json("the body is empty".into())),
        Some(_) => {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Err(e) => ReviewError::Json(e.to_string()),
                    Ok(_) => ReviewError::Shape("expected a JSON object".into()),
                },
            );
        }
    }
    // The common case in one pass: a well-formed review is read whole, so the object's bytes
    // are scanned once here and once into the rule's model, not once more as a raw request.
    // Whatever fails is read again below in two steps, which name what is wrong precisely.
    if let Ok(whole) = serde_json::from_slice::<Whole>(body) {
        let api_version = envelope_checks(whole.api_version, whole.kind.as_deref())?;
        let request = whole.request.ok_or(ReviewError::MissingRequest)?;
        return with_uid(api_version, request);
    }
    // Parse the envelope first, so "wrong version" is reported as such and not as whatever
    // field of a v1beta1 request happens not to match v1.
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ReviewError::Json(e.to_string())
        } else {
            ReviewError::Shape(e.to_string())
        }
    })?;
    let api_version = envelope_checks(envelope.api_version, envelope.kind.as_deref())?;
    let raw = envelope.request.ok_or(ReviewError::MissingRequest)?;
    if raw.get() == "null" {
        return Err(ReviewError::MissingRequest);
    }
    let request: AdmissionRequest =
        parse_at(raw.get(), format_args!("request")).map_err(ReviewError::Shape)?;
    with_uid(api_version, request)
}

/// The envelope's apiVersion (returned, to echo) and kind must be the ones served.
fn envelope_checks(api_version: Option<String>, kind: Option<&str>) -> Result<String, ReviewError> {
    let api_version = api_version.ok_or(ReviewError::MissingApiVersion)?;
    if api_version != API_VERSION {
        return Err(ReviewError::ApiVersion(api_version));
    }
    match kind {
        Some(KIND) => Ok(api_version),
        other => Err(ReviewError::Kind(other.unwrap_or_default().to_owned())),
    }
}

fn with_uid(
    api_version: String,
    request: AdmissionRequest,
) -> Result<(String, AdmissionRequest), ReviewError> {
    if request.uid.is_empty() {
        return Err(ReviewError::MissingUid);
    }
    Ok((api_version, request))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// base64 of the JSON patch: the API server rejects a JSON array here.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct StatusOut<'a> {
    code: u16,
    reason: &'static str,
    message: &'a str,
}

/// Encodes the response to a review.
pub fn encode(api_version: &str, uid: &str, verdict: &Verdict) -> Result<Vec<u8>, ReviewError> {
    let patch = if verdict.allowed && !verdict.patch.is_empty() {
        let json =
            serde_json::to_vec(&verdict.patch).map_err(|e| ReviewError::Encode(e.to_string()))?;
        Some(base64::engine::general_purpose::STANDARD.encode(json))
    } else {
        None
    };
    let status = verdict.denial.as_ref().map(
        |Denial {
             code,
             reason,
             message,
         }| StatusOut {
            code: *code,
            reason,
            message,
        },
    );
    let out = ReviewOut {
        api_version,
        kind: KIND,
        response: ResponseOut {
            uid,
            allowed: verdict.allowed,
            status,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: &verdict.warnings,
        },
    };
    serde_json::to_vec(&out).map_err(|e| ReviewError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_bad_envelope_has_its_own_error() {
        type Check = fn(&ReviewError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("{", |e| matches!(e, ReviewError::Json(_))),
            ("[]", |e| matches!(e, ReviewError::Shape(_))),
            (r#"{"kind":"AdmissionReview"}"#, |e| {
                matches!(e, ReviewError::MissingApiVersion)
            }),
            (
                r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
                |e| matches!(e, ReviewError::ApiVersion(v) if v == "admission.k8s.io/v1beta1"),
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
                |e| matches!(e, ReviewError::Kind(_)),
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                |e| matches!(e, ReviewError::MissingRequest),
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#,
                |e| matches!(e, ReviewError::MissingRequest),
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Node"},"resource":{"resource":"nodes"},"operation":"CREATE"}}"#,
                |e| matches!(e, ReviewError::MissingUid),
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Node"},"resource":{"resource":"nodes"},"operation":"PATCH"}}"#,
                |e| matches!(e, ReviewError::Shape(m) if m.contains("request.operation")),
            ),
        ];
        for (body, check) in cases {
            let err = decode(body.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert!(check(&err), "{body} gave {err}");
        }
    }

    #[test]
    fn patch_is_a_base64_string() {
        let verdict = Verdict {
            allowed: true,
            denial: None,
            patch: vec![crate::rules::patch::add(
                crate::rules::patch::pointer(["spec", "x"]),
                serde_json::json!("y"),
            )],
            warnings: vec!["w".into()],
            rules: vec![],
        };
        let out: serde_json::Value =
            serde_json::from_slice(&encode(API_VERSION, "u1", &verdict).unwrap()).unwrap();
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let patch = out["response"]["patch"]
            .as_str()
            .expect("patch must be a string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&decoded).unwrap(),
            serde_json::json!([{"op": "add", "path": "/spec/x", "value": "y"}])
        );
        assert_eq!(out["response"]["uid"], "u1");
        assert_eq!(out["response"]["warnings"], serde_json::json!(["w"]));
    }
}
