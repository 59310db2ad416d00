//! The AdmissionReview envelope (`admission.k8s.io/v1`): decoding with clear errors, and
//! encoding responses (patches as base64 strings, as the API server requires).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::verdict::{Denial, Verdict};
use crate::cluster::ResourceKind;
use crate::json_string::push_quoted;
use crate::model::parse_at;
use crate::policy::UserInfo;
use crate::rules::{Object, Operation};

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

impl GroupVersionKind {
    /// The kind the rules judge that this names, if any (the group must match too: a CRD of
    /// another group named `VolumeSnapshot` is not ours).
    pub fn judged_kind(&self) -> Option<ResourceKind> {
        let kind = ResourceKind::from_kind(&self.kind)?;
        if kind.as_str() != self.kind {
            return None; // `...List` is not an admission kind
        }
        (self.group == kind.group() && Object::is_judged(kind)).then_some(kind)
    }
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

/// `request.object` or `request.oldObject`.
#[derive(Debug)]
pub enum Body {
    /// Read straight into the slim model of the kind the rules judge, in the review's one
    /// pass: the object's bytes are scanned once, by the edge, whatever the rules do.
    Read(Box<Object>),
    /// As it came: a kind no rule judges, an object written before the request's `kind`, or a
    /// review read in two steps (see [`decode`]). The engine reads it if a rule needs it, and
    /// then names the field that does not fit.
    Raw(Box<RawValue>),
}

/// `request` of an AdmissionReview.
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
    #[serde(default, deserialize_with = "raw_body")]
    pub object: Option<Body>,
    #[serde(default, deserialize_with = "raw_body")]
    pub old_object: Option<Body>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

fn raw_body<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Body>, D::Error> {
    Ok(Option::<Box<RawValue>>::deserialize(deserializer)?.map(Body::Raw))
}

impl AdmissionRequest {
    /// Names `object` after the request where it does not name itself: the API server fills
    /// these in, but a review built by hand may not, and every message names the object.
    pub fn name_object(&self, object: &mut Object) {
        let meta = object.meta_mut();
        if meta.namespace.as_deref().unwrap_or_default().is_empty()
            && let Some(ns) = self.namespace.as_deref().filter(|n| !n.is_empty())
        {
            meta.namespace = Some(ns.to_owned());
        }
        if meta.name.is_empty()
            && let Some(name) = self.name.as_deref().filter(|n| !n.is_empty())
        {
            meta.name = name.to_owned();
        }
    }

    /// Names the objects read in the one pass (the request's name and namespace may come
    /// after them).
    fn name_read_objects(mut self) -> Self {
        let (mut object, mut old_object) = (self.object.take(), self.old_object.take());
        for body in [&mut object, &mut old_object] {
            if let Some(Body::Read(o)) = body {
                self.name_object(o);
            }
        }
        (self.object, self.old_object) = (object, old_object);
        self
    }
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

/// A review read in one pass (see [`decode`]), with `request.object` and `oldObject` read
/// straight into the slim model of the request's kind. Written by hand because the model to
/// read depends on a field read before it (`request.kind`, which the API server writes first).
/// Anything this rejects is read again in two steps by the derived readers, so error messages
/// do not depend on it: it only has to reject whatever they reject (duplicate and missing
/// fields included).
struct Whole {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<AdmissionRequest>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum WholeField {
    ApiVersion,
    Kind,
    Request,
    #[serde(other)]
    Other,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Resource,
    SubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    #[serde(other)]
    Other,
}

/// Sets a field read once; a second occurrence is an error, as with the derived readers.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor;
        impl<'de> Visitor<'de> for WholeVisitor {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AdmissionReview")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Whole, A::Error> {
                let (mut api_version, mut kind, mut request) = (None, None, None);
                while let Some(field) = map.next_key()? {
                    match field {
                        WholeField::ApiVersion => {
                            once(&mut api_version, "apiVersion", map.next_value()?)?
                        }
                        WholeField::Kind => once(&mut kind, "kind", map.next_value()?)?,
                        WholeField::Request => {
                            once(&mut request, "request", map.next_value_seed(RequestSeed)?)?
                        }
                        WholeField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Whole {
                    api_version: api_version.flatten(),
                    kind: kind.flatten(),
                    request: request.flatten(),
                })
            }
        }
        deserializer.deserialize_map(WholeVisitor)
    }
}

/// `request`, or null.
struct RequestSeed;

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = Option<AdmissionRequest>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = Option<AdmissionRequest>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an admission request")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(RequestVisitor).map(Some)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = AdmissionRequest;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an admission request")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AdmissionRequest, A::Error> {
        let mut uid = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut resource = None;
        let mut sub_resource = None;
        let mut name = None;
        let mut namespace = None;
        let mut operation = None;
        let mut user_info = None;
        let mut object = None;
        let mut old_object = None;
        let mut dry_run = None;
        while let Some(field) = map.next_key()? {
            match field {
                Field::Uid => once(&mut uid, "uid", map.next_value()?)?,
                Field::Kind => once(&mut kind, "kind", map.next_value()?)?,
                Field::Resource => once(&mut resource, "resource", map.next_value()?)?,
                Field::SubResource => once(&mut sub_resource, "subResource", map.next_value()?)?,
                Field::Name => once(&mut name, "name", map.next_value()?)?,
                Field::Namespace => once(&mut namespace, "namespace", map.next_value()?)?,
                Field::Operation => once(&mut operation, "operation", map.next_value()?)?,
                Field::UserInfo => once(&mut user_info, "userInfo", map.next_value()?)?,
                Field::Object | Field::OldObject => {
                    let seed = BodySeed(kind.as_ref().and_then(GroupVersionKind::judged_kind));
                    let body = map.next_value_seed(seed)?;
                    match field {
                        Field::Object => once(&mut object, "object", body)?,
                        _ => once(&mut old_object, "oldObject", body)?,
                    }
                }
                Field::DryRun => once(&mut dry_run, "dryRun", map.next_value()?)?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(AdmissionRequest {
            uid: uid.unwrap_or_default(),
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            resource: resource.ok_or_else(|| de::Error::missing_field("resource"))?,
            sub_resource: sub_resource.flatten(),
            name: name.flatten(),
            namespace: namespace.flatten(),
            operation: operation.ok_or_else(|| de::Error::missing_field("operation"))?,
            user_info: user_info.unwrap_or_default(),
            object: object.flatten(),
            old_object: old_object.flatten(),
            dry_run: dry_run.flatten(),
        })
    }
}

/// `object` or `oldObject`, or null: read as the kind's slim model when the request's kind
/// (read before it) is one the rules judge, raw otherwise.
struct BodySeed(Option<ResourceKind>);

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Option<Body>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.0 {
            Some(kind) => deserializer.deserialize_option(ReadBody(kind)),
            None => raw_body(deserializer),
        }
    }
}

struct ReadBody(ResourceKind);

impl<'de> Visitor<'de> for ReadBody {
    type Value = Option<Body>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} object", self.0)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let object = Object::deserialize_as(self.0, deserializer)?;
        Ok(Some(Body::Read(Box::new(object))))
    }
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
    // The common case in one pass: a well-formed review is read whole, its object straight
    // into the rules' model, so the object's bytes are scanned once. Whatever fails is read
    // again below in two steps, which name what is wrong precisely (the object stays raw
    // there, for the engine to read and name the field that does not fit).
    if let Ok(whole) = serde_json::from_slice::<Whole>(body) {
        let api_version = envelope_checks(whole.api_version, whole.kind.as_deref())?;
        let request = whole.request.ok_or(ReviewError::MissingRequest)?;
        return with_uid(api_version, request.name_read_objects());
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

/// Encodes the response to a review: `{"apiVersion", "kind", "response": {"uid", "allowed",
/// "status"?, "patchType"?, "patch"?, "warnings"?}}`.
///
/// Written piece by piece rather than through a derived `Serialize`: the patch is base64,
/// whose alphabet needs no JSON escaping, so it is encoded straight into the body instead of
/// into a String that serde_json would then scan byte by byte (on a patched Pod review, a
/// fifth of the response's cost). Every text is written by [`crate::json_string`], byte for
/// byte as serde_json would write it, at a fraction of the cost; the patch by
/// [`crate::rules::patch::push_json`], its values already JSON text.
pub fn encode(api_version: &str, uid: &str, verdict: &Verdict) -> Vec<u8> {
    let patch = if verdict.allowed && !verdict.patch.is_empty() {
        // Sized up front: growing a buffer from empty is a chain of reallocations per review.
        let mut json = String::with_capacity(PATCH_OP_BYTES * verdict.patch.len());
        crate::rules::patch::push_json(&mut json, &verdict.patch);
        Some(json)
    } else {
        None
    };
    let texts: usize = verdict.warnings.iter().map(String::len).sum::<usize>()
        + verdict.denial.as_ref().map_or(0, |d| d.message.len())
        + patch.as_ref().map_or(0, |p| p.len() / 3 * 4 + 4);
    let mut body = String::with_capacity(ENVELOPE_BYTES + texts + texts / 8);

    body.push_str("{\"apiVersion\":");
    push_quoted(&mut body, api_version);
    body.push_str(",\"kind\":\"");
    body.push_str(KIND);
    body.push_str("\",\"response\":{\"uid\":");
    push_quoted(&mut body, uid);
    body.push_str(if verdict.allowed {
        ",\"allowed\":true"
    } else {
        ",\"allowed\":false"
    });
    if let Some(Denial {
        code,
        reason,
        message,
    }) = &verdict.denial
    {
        body.push_str(",\"status\":{\"code\":");
        body.push_str(&code.to_string());
        body.push_str(",\"reason\":");
        push_quoted(&mut body, reason);
        body.push_str(",\"message\":");
        push_quoted(&mut body, message);
        body.push('}');
    }
    if let Some(json) = patch {
        // The API server rejects a JSON array here: the patch is base64 of its JSON.
        body.push_str(",\"patchType\":\"JSONPatch\",\"patch\":\"");
        base64_simd::STANDARD.encode_append(json.as_bytes(), &mut body);
        body.push('"');
    }
    if !verdict.warnings.is_empty() {
        body.push_str(",\"warnings\":[");
        for (i, warning) in verdict.warnings.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            push_quoted(&mut body, warning);
        }
        body.push(']');
    }
    body.push_str("}}");
    body.into_bytes()
}

/// What a response needs besides its texts (envelope, uid, field names), and what one patch
/// operation takes, roughly: starting sizes, so the buffers rarely grow.
const ENVELOPE_BYTES: usize = 256;
const PATCH_OP_BYTES: usize = 128;

#[cfg(test)]
mod tests {
    use base64::Engine as _;

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

    fn review(request: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#
        )
    }

    const POD: &str = r#"{"metadata":{},"spec":{"nodeName":"node-a","volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"data"}}],"containers":[{"name":"app","image":"app:1"}]}}"#;

    #[test]
    fn the_object_of_a_judged_kind_is_read_into_its_model_in_the_one_pass_and_named_after_the_request()
     {
        let body = review(&format!(
            r#"{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE","object":{POD},"oldObject":null,"name":"web-0","namespace":"shop"}}"#
        ));
        let (_, req) = decode(body.as_bytes()).unwrap();
        let Some(Body::Read(object)) = &req.object else {
            panic!("object not read in the one pass: {:?}", req.object)
        };
        let Object::Pod(pod) = &**object else {
            panic!("read as another kind: {object:?}")
        };
        // name and namespace came after the object; it is named after them all the same
        assert_eq!(pod.metadata.name, "web-0");
        assert_eq!(pod.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(pod.spec.node_name.as_deref(), Some("node-a"));
        assert!(req.old_object.is_none());
    }

    #[test]
    fn an_object_is_kept_raw_when_its_kind_is_not_judged_or_not_known_yet_or_does_not_fit() {
        let cases = [
            // a kind no rule judges
            format!(
                r#"{{"uid":"u","kind":{{"group":"apps","version":"v1","kind":"Deployment"}},"resource":{{"group":"apps","version":"v1","resource":"deployments"}},"operation":"CREATE","object":{POD}}}"#
            ),
            // a kind cached for diagnoses only
            r#"{"uid":"u","kind":{"group":"storage.k8s.io","version":"v1","kind":"CSIDriver"},"resource":{"group":"storage.k8s.io","version":"v1","resource":"csidrivers"},"operation":"CREATE","object":{"metadata":{"name":"d.csi"}}}"#.to_owned(),
            // the object before the request's kind
            format!(
                r#"{{"uid":"u","object":{POD},"kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE"}}"#
            ),
            // a Pod whose nodeName is a number: read in two steps, the engine names the field
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","object":{"spec":{"nodeName":7}}}"#.to_owned(),
        ];
        for request in cases {
            let (_, req) = decode(review(&request).as_bytes()).unwrap();
            assert!(
                matches!(req.object, Some(Body::Raw(_))),
                "{request}: {:?}",
                req.object
            );
        }
    }

    #[test]
    fn a_field_given_twice_is_refused_as_the_two_step_reader_refuses_it() {
        let request = format!(
            r#"{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE","object":{POD},"object":{POD}}}"#
        );
        let err = decode(review(&request).as_bytes()).unwrap_err();
        assert!(
            matches!(&err, ReviewError::Shape(m) if m.contains("duplicate field `object`")),
            "{err}"
        );
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
            rules: Default::default(),
        };
        let out: serde_json::Value =
            serde_json::from_slice(&encode(API_VERSION, "u1", &verdict)).unwrap();
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

    /// The vectorised encoder works in blocks (12, 24, 32 bytes of input, by instruction set)
    /// with a scalar tail: patches of every length across several blocks, each a byte longer
    /// than the last, encode exactly as the reference encoder does, padding included.
    #[test]
    fn patches_of_every_length_encode_as_standard_base64() {
        for len in 0..200 {
            let verdict = Verdict {
                patch: vec![crate::rules::patch::add(
                    crate::rules::patch::pointer(["spec", "x"]),
                    serde_json::json!("y".repeat(len)),
                )],
                ..Verdict::allow()
            };
            let patch_json = serde_json::to_vec(&verdict.patch).unwrap();
            let out: serde_json::Value =
                serde_json::from_slice(&encode(API_VERSION, "u", &verdict)).unwrap();
            assert_eq!(
                out["response"]["patch"],
                base64::engine::general_purpose::STANDARD.encode(&patch_json),
                "a patch of {} bytes",
                patch_json.len()
            );
        }
    }

    #[test]
    fn every_shape_of_response_is_the_json_it_stands_for() {
        use serde_json::json;
        let tricky = "say \"no\"\\ to\nthe\tclass \u{1} ✓";
        let patch = vec![crate::rules::patch::add(
            crate::rules::patch::pointer(["metadata", "labels", "a/b"]),
            json!(tricky),
        )];
        let patch_json = serde_json::to_vec(&patch).unwrap();
        let base64 = base64::engine::general_purpose::STANDARD.encode(&patch_json);
        let denial = Denial {
            code: 403,
            reason: "Forbidden",
            message: tricky.into(),
        };
        let cases = [
            (Verdict::allow(), json!({"uid": tricky, "allowed": true})),
            (
                Verdict {
                    allowed: false,
                    denial: Some(denial.clone()),
                    patch: patch.clone(),
                    warnings: vec![tricky.into(), "second".into()],
                    rules: Default::default(),
                },
                json!({"uid": tricky, "allowed": false,
                       "status": {"code": 403, "reason": "Forbidden", "message": tricky},
                       "warnings": [tricky, "second"]}),
            ),
            (
                Verdict {
                    patch: patch.clone(),
                    ..Verdict::allow()
                },
                json!({"uid": tricky, "allowed": true, "patchType": "JSONPatch", "patch": base64}),
            ),
            (
                Verdict {
                    patch,
                    warnings: vec![tricky.into()],
                    ..Verdict::allow()
                },
                json!({"uid": tricky, "allowed": true, "patchType": "JSONPatch", "patch": base64,
                       "warnings": [tricky]}),
            ),
        ];
        for (verdict, response) in cases {
            let body = encode(API_VERSION, tricky, &verdict);
            let text = std::str::from_utf8(&body).unwrap();
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                json!({"apiVersion": API_VERSION, "kind": KIND, "response": response}),
                "{text}"
            );
            // One line, its fields in the order the derived encoder wrote them.
            assert!(!text.contains('\n'), "{text}");
            let order = [
                "\"uid\"",
                "\"allowed\"",
                "\"status\"",
                "\"patchType\"",
                "\"warnings\"",
            ];
            let at: Vec<_> = order.iter().filter_map(|f| text.find(f)).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        }
    }
}
