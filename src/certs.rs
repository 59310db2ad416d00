//! Certificates with rcgen: a CA and a serving certificate signed by it, for `serve --dev`
//! (localhost) and `storage-admission certs` (a Service's DNS names).
//!
//! The CA's private key is discarded after signing, so nobody can mint further certificates
//! the webhook configuration would trust; rotation means generating a new pair and updating
//! `caBundle` (or letting cert-manager or the controller's self-managed mode do it).

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
    let (not_before, not_after) = (now - Duration::hours(1), now + Duration::days(days));

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
    fn rejects_names_that_are_not_dns_labels() {
        assert!(check_dns_label("service", "storage-admission").is_ok());
        assert!(check_dns_label("service", "Storage_Admission").is_err());
        assert!(check_dns_label("namespace", "").is_err());
    }
}
