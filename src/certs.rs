//! Certificates with rcgen: a CA and a serving certificate signed by it, for `serve --dev`
//! (localhost) and `storage-admission certs` (a Service's DNS names).
//!
//! The CA's private key is discarded after signing, so nobody can mint further certificates
//! the webhook configuration would trust; rotation means generating a new pair and updating
//! `caBundle` (or letting cert-manager or the controller's self-managed mode do it).
//!
//! [`inspect`] reads back what the self-managed mode needs to decide on rotation: validity,
//! subject alternative names, and which CA signed a certificate (x509-parser).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {what} {value:?}: {message}")]
    Invalid {
        what: &'static str,
        value: String,
        message: String,
    },
}

/// A CA certificate and a serving certificate + key, all PEM.
pub struct Generated {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The DNS names a Service is reached by from the API server.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Generates a fresh CA and a serving certificate for `names` (DNS names or IP addresses),
/// valid from an hour ago (clock skew) for `days`.
pub fn generate(names: &[String], common_name: &str, days: i64) -> Result<Generated, CertError> {
    let now = OffsetDateTime::now_utc();
    generate_at(
        names,
        common_name,
        now - Duration::hours(1),
        now + Duration::days(days),
    )
}

/// Like [`generate`], with explicit validity bounds (the CA and the certificate share them, so
/// the CA is useless exactly when the certificate it signed expires).
pub fn generate_at(
    names: &[String],
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Generated, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{common_name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or(common_name, String::as_str),
    );
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let cert = leaf.signed_by(&key, &issuer)?;

    Ok(Generated {
        ca_cert_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The files [`write`] creates.
pub struct Written {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it.
pub fn write(dir: &Path, generated: &Generated) -> Result<Written, CertError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| CertError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let written = Written {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&written.ca_cert, &generated.ca_cert_pem).map_err(err(&written.ca_cert))?;
    std::fs::write(&written.cert, &generated.cert_pem).map_err(err(&written.cert))?;
    write_private(&written.key, generated.key_pem.as_bytes()).map_err(err(&written.key))?;
    Ok(written)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Checks a Kubernetes object name (DNS-1123 label) given on the command line.
pub fn check_dns_label(what: &'static str, value: &str) -> Result<(), CertError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CertError::Invalid {
            what,
            value: value.to_owned(),
            message: "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit".into(),
        })
    }
}

/// What the self-managed mode reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses (as text) of the subjectAltName extension.
    pub names: Vec<String>,
    pub is_ca: bool,
}

impl CertInfo {
    /// Whether `self` is signed by `issuer`'s key (and names it as its issuer).
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        use x509_parser::prelude::FromDer;
        let (Ok((_, cert)), Ok((_, ca))) = (
            x509_parser::certificate::X509Certificate::from_der(&self.der),
            x509_parser::certificate::X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Valid at `now` (inclusive bounds, as RFC 5280 has them).
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Parses every certificate of a PEM text (a chain or a bundle), in order.
pub fn inspect(pem: &[u8]) -> Result<Vec<CertInfo>, CertError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |message: String| CertError::Invalid {
        what: "certificate",
        value: String::new(),
        message,
    };
    let ders = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if ders.is_empty() {
        return Err(bad("no PEM certificate".into()));
    }
    ders.iter().map(|der| inspect_der(der, &bad)).collect()
}

fn inspect_der(der: &[u8], bad: &dyn Fn(String) -> CertError) -> Result<CertInfo, CertError> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let time = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp())
            .map_err(|e| bad(format!("validity out of range: {e}")))
    };
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| bad(format!("bad subjectAltName: {e}")))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .map(std::net::IpAddr::from)
                            .ok(),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        der: der.to_vec(),
        not_before: time(&cert.validity().not_before)?,
        not_after: time(&cert.validity().not_after)?,
        names,
        is_ca: cert.is_ca(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tls;

    #[test]
    fn generated_pair_loads_into_rustls() {
        let generated = generate(
            &service_names("storage-admission", "storage-admission"),
            "storage-admission",
            30,
        )
        .unwrap();
        let provider = tls::provider();
        let key = tls::certified_key(
            generated.cert_pem.as_bytes(),
            generated.key_pem.as_bytes(),
            Path::new("tls.crt"),
            Path::new("tls.key"),
            &provider,
        )
        .unwrap();
        assert_eq!(key.cert.len(), 1);
    }

    #[test]
    fn a_chain_with_the_ca_after_the_leaf_is_served_whole() {
        let generated = generate(&["localhost".into()], "chain", 1).unwrap();
        let chain = format!("{}{}", generated.cert_pem, generated.ca_cert_pem);
        let key = tls::certified_key(
            chain.as_bytes(),
            generated.key_pem.as_bytes(),
            Path::new("chain.crt"),
            Path::new("tls.key"),
            &tls::provider(),
        )
        .unwrap();
        assert_eq!(key.cert.len(), 2, "leaf first, then the CA");
        // The other order is refused: the key does not match the first certificate.
        let reversed = format!("{}{}", generated.ca_cert_pem, generated.cert_pem);
        assert!(
            tls::certified_key(
                reversed.as_bytes(),
                generated.key_pem.as_bytes(),
                Path::new("r.crt"),
                Path::new("k"),
                &tls::provider()
            )
            .is_err()
        );
    }

    #[test]
    fn service_names_cover_every_form_the_api_server_uses() {
        assert_eq!(
            service_names("sa", "ns"),
            ["sa", "sa.ns", "sa.ns.svc", "sa.ns.svc.cluster.local"]
        );
    }

    #[test]
    fn writes_files_with_a_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let generated = generate(&["localhost".into(), "127.0.0.1".into()], "dev", 1).unwrap();
        let written = write(dir.path(), &generated).unwrap();
        assert!(
            std::fs::read_to_string(&written.ca_cert)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&written.key)
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn inspect_reads_validity_names_and_issuer() {
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let end = start + Duration::days(30);
        let names = vec![
            "svc".to_owned(),
            "svc.ns.svc".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let a = generate_at(&names, "a", start, end).unwrap();
        let b = generate_at(&names, "b", start, end).unwrap();
        let leaf = &inspect(a.cert_pem.as_bytes()).unwrap()[0];
        let ca_a = &inspect(a.ca_cert_pem.as_bytes()).unwrap()[0];
        let ca_b = &inspect(b.ca_cert_pem.as_bytes()).unwrap()[0];
        assert_eq!((leaf.not_before, leaf.not_after), (start, end));
        assert_eq!(leaf.names, names);
        assert!(!leaf.is_ca && ca_a.is_ca);
        assert!(leaf.is_signed_by(ca_a));
        assert!(!leaf.is_signed_by(ca_b), "same subject layout, other key");
        assert!(leaf.is_valid_at(end) && !leaf.is_valid_at(end + Duration::seconds(1)));
        let bundle = format!("{}{}", a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(inspect(bundle.as_bytes()).unwrap().len(), 2);
        assert!(inspect(b"not pem").is_err());
        assert!(
            inspect(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
    }

    #[test]
    fn rejects_names_that_are_not_dns_labels() {
        assert!(check_dns_label("service", "storage-admission").is_ok());
        assert!(check_dns_label("service", "Storage_Admission").is_err());
        assert!(check_dns_label("namespace", "").is_err());
    }
}
