//! `--certs self-managed`: the service keeps its own CA and serving certificate in a Secret.
//!
//! The Secret (`--tls-secret`, in the service's namespace) holds:
//! - `tls.crt`, `tls.key`: the serving pair every replica serves (watched, swapped in memory);
//! - `ca.crt`: the CA bundle the webhook configurations must trust (their `caBundle`);
//! - `next.crt`, `next.key`: only during a rotation, the next serving pair.
//!
//! Each pair comes with its own fresh CA whose private key is discarded once it signed the
//! pair (as `storage-admission certs` does): nobody, not even a reader of the Secret, can mint
//! another certificate the API server would trust, and nothing needs the key again because
//! every renewal is a new CA plus a new pair.
//!
//! Only the leader writes. A rotation is ordered so that no request ever fails:
//! 1. *stage*: the next pair goes into `next.*` and its CA is **added** to `ca.crt` (old and
//!    new CA); replicas still serve the old pair;
//! 2. registration writes the old+new bundle into every webhook's `caBundle`;
//! 3. *promote*: only once that write succeeded, `next.*` becomes `tls.*`. Replicas pick it up
//!    at their own pace, and both certificates are trusted meanwhile;
//! 4. *prune*: the old CA leaves `ca.crt` (and then `caBundle`) once it has expired. A CA and
//!    the pair it signed share their validity, so at that point the old serving certificate
//!    has expired too: no replica can still serve it successfully, whether or not it saw the
//!    new Secret. (Counting replicas instead would need every replica to report what it serves;
//!    expiry needs no coordination and is what bounds the old certificate's use anyway.)
//!
//! Rotation starts when less than a third of the serving certificate's validity remains, so
//! the old CA stays trusted for that last third while every replica moves over. A Secret that
//! cannot be used (unparseable, wrong names, expired) is renewed the same way, through
//! stage and promote; only a missing Secret is created with a serving pair at once (nothing is
//! served before it exists, and registration follows in the same pass).
//!
//! [`plan`] decides from (now, names, current Secret, CA bundle the webhooks hold) and is pure;
//! [`render`] produces the new Secret data for a plan; [`run`] is the thin I/O around them.

pub mod run;

use std::collections::BTreeMap;

use base64::Engine as _;
use time::OffsetDateTime;

use crate::certs::{self, CertError, CertInfo};

pub use run::{CertRotator, watch_secret};

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
pub const NEXT_CRT: &str = "next.crt";
pub const NEXT_KEY: &str = "next.key";

/// The Secret's data, decoded.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Why a new serving pair is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `tls.crt`/`tls.key` missing, unparseable, mismatched, or not signed by a CA in `ca.crt`.
    Unusable,
    /// The certificate does not cover every Service name (the Service or namespace changed).
    Names,
    Expired,
    /// Less than a third of its validity remains.
    Expiring,
    /// `next.*` is present but unusable.
    NextUnusable,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unusable => "unusable",
            Self::Names => "names",
            Self::Expired => "expired",
            Self::Expiring => "expiring",
            Self::NextUnusable => "next-unusable",
        }
    }
}

/// What the leader should do with the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// No Secret: create one with a fresh CA and serving pair.
    Create,
    /// Put a fresh pair in `next.*` and add its CA to `ca.crt`.
    Stage(Why),
    /// `next.*` is ready but the webhooks do not trust its CA yet: register first.
    WaitForWebhooks,
    /// The webhooks trust the next CA: `next.*` becomes `tls.*`.
    Promote,
    /// Drop expired (or unparseable) CAs from `ca.crt`.
    Prune,
}

impl Plan {
    /// The bounded metric label of a write.
    pub fn action(self) -> &'static str {
        match self {
            Self::Keep | Self::WaitForWebhooks => "none",
            Self::Create => "create",
            Self::Stage(_) => "stage",
            Self::Promote => "promote",
            Self::Prune => "prune",
        }
    }
}

/// A serving pair read from the Secret.
struct Pair {
    leaf: CertInfo,
}

/// Parses the pair under `crt`/`key`: the first certificate is the leaf, and the key must
/// belong to it (the same check rustls makes before serving it).
fn pair(data: &SecretData, crt: &str, key: &str) -> Option<Pair> {
    let (cert_pem, key_pem) = (data.get(crt)?, data.get(key)?);
    let provider = crate::server::tls::provider();
    crate::server::tls::certified_key(
        cert_pem,
        key_pem,
        std::path::Path::new(crt),
        std::path::Path::new(key),
        &provider,
    )
    .ok()?;
    let leaf = certs::inspect(cert_pem).ok()?.into_iter().next()?;
    Some(Pair { leaf })
}

/// The CAs of `ca.crt` that parse; `clean` is false when some block did not.
fn bundle(data: &SecretData) -> (Vec<CertInfo>, bool) {
    let Some(pem) = data.get(CA_CRT) else {
        return (Vec::new(), false);
    };
    let mut cas = Vec::new();
    let mut clean = true;
    for block in pem_blocks(pem) {
        match certs::inspect(block.as_bytes()) {
            Ok(parsed) => cas.extend(parsed),
            Err(_) => clean = false,
        }
    }
    (cas, clean)
}

/// The `-----BEGIN CERTIFICATE-----` blocks of a PEM text, each on its own.
fn pem_blocks(pem: &[u8]) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.split_inclusive(END)
        .filter(|block| block.contains(END))
        .map(|block| format!("{}\n", block.trim_start()))
        .collect()
}

fn covers_names(leaf: &CertInfo, names: &[String]) -> bool {
    names
        .iter()
        .all(|n| leaf.names.iter().any(|have| have == n))
}

fn signed_by_trusted(leaf: &CertInfo, cas: &[CertInfo], now: OffsetDateTime) -> bool {
    cas.iter()
        .any(|ca| ca.is_valid_at(now) && leaf.is_signed_by(ca))
}

/// Decides what to write. `webhook_bundle` is the CA bundle the webhook configurations are
/// known to hold (after a successful registration), `None` when not known yet.
pub fn plan(
    now: OffsetDateTime,
    names: &[String],
    current: Option<&SecretData>,
    webhook_bundle: Option<&[u8]>,
) -> Plan {
    let Some(data) = current else {
        return Plan::Create;
    };
    let (cas, clean) = bundle(data);
    let usable = |pair: &Pair| {
        covers_names(&pair.leaf, names)
            && pair.leaf.is_valid_at(now)
            && signed_by_trusted(&pair.leaf, &cas, now)
    };
    if data.contains_key(NEXT_CRT) || data.contains_key(NEXT_KEY) {
        return match pair(data, NEXT_CRT, NEXT_KEY).filter(usable) {
            Some(next) => {
                let trusted = webhook_bundle
                    .and_then(|pem| certs::inspect(pem).ok())
                    .is_some_and(|cas| cas.iter().any(|ca| next.leaf.is_signed_by(ca)));
                if trusted {
                    Plan::Promote
                } else {
                    Plan::WaitForWebhooks
                }
            }
            None => Plan::Stage(Why::NextUnusable),
        };
    }
    let Some(serving) = pair(data, TLS_CRT, TLS_KEY) else {
        return Plan::Stage(Why::Unusable);
    };
    if !covers_names(&serving.leaf, names) {
        return Plan::Stage(Why::Names);
    }
    if now > serving.leaf.not_after {
        return Plan::Stage(Why::Expired);
    }
    if !signed_by_trusted(&serving.leaf, &cas, now) {
        return Plan::Stage(Why::Unusable);
    }
    let lifetime = serving.leaf.not_after - serving.leaf.not_before;
    if serving.leaf.not_after - now < lifetime / 3 {
        return Plan::Stage(Why::Expiring);
    }
    if !clean || cas.iter().any(|ca| now > ca.not_after) {
        return Plan::Prune;
    }
    Plan::Keep
}

/// How new pairs are made.
#[derive(Debug, Clone)]
pub struct Issuing {
    /// The Service names the certificate must cover ([`certs::service_names`]).
    pub names: Vec<String>,
    pub common_name: String,
    /// Validity of each new CA and serving pair.
    pub validity: time::Duration,
}

/// The Secret data `plan` asks for (`None`: nothing to write). Fresh keys are random; the
/// validity starts an hour before `now` (clock skew between nodes and the API server).
pub fn render(
    plan: Plan,
    now: OffsetDateTime,
    issuing: &Issuing,
    current: Option<&SecretData>,
) -> Result<Option<SecretData>, CertError> {
    let fresh = || {
        certs::generate_at(
            &issuing.names,
            &issuing.common_name,
            now - time::Duration::hours(1),
            now + issuing.validity,
        )
    };
    let mut data = current.cloned().unwrap_or_default();
    match plan {
        Plan::Keep | Plan::WaitForWebhooks => return Ok(None),
        Plan::Create => {
            let generated = fresh()?;
            data = SecretData::from([
                (TLS_CRT.to_owned(), generated.cert_pem.into_bytes()),
                (TLS_KEY.to_owned(), generated.key_pem.into_bytes()),
                (CA_CRT.to_owned(), generated.ca_cert_pem.into_bytes()),
            ]);
        }
        Plan::Stage(_) => {
            let generated = fresh()?;
            // Every CA still valid stays trusted: replicas may be serving a pair it signed.
            let mut ca_bundle = trusted_pem(&data, now);
            ca_bundle.push_str(&generated.ca_cert_pem);
            data.insert(CA_CRT.to_owned(), ca_bundle.into_bytes());
            data.insert(NEXT_CRT.to_owned(), generated.cert_pem.into_bytes());
            data.insert(NEXT_KEY.to_owned(), generated.key_pem.into_bytes());
        }
        Plan::Promote => {
            let (Some(crt), Some(key)) = (data.remove(NEXT_CRT), data.remove(NEXT_KEY)) else {
                return Ok(None);
            };
            data.insert(TLS_CRT.to_owned(), crt);
            data.insert(TLS_KEY.to_owned(), key);
        }
        Plan::Prune => {
            data.insert(CA_CRT.to_owned(), trusted_pem(&data, now).into_bytes());
        }
    }
    Ok(Some(data))
}

/// The CAs of `ca.crt` that parse and have not expired, as PEM.
fn trusted_pem(data: &SecretData, now: OffsetDateTime) -> String {
    bundle(data)
        .0
        .iter()
        .filter(|ca| now <= ca.not_after)
        .map(|ca| pem(&ca.der))
        .collect()
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests;
