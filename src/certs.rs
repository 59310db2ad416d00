//! Certificates with rcgen: a CA and a serving certificate signed by it, for `serve --dev`
//! (localhost) and `storage-admission certs` (a Service's DNS names, plus any `--san`).
//!
//! The CA's private key is discarded after signing, so nobody can mint further certificates
//! the webhook configuration would trust; rotation means generating a new pair and updating
//! `caBundle` (or letting cert-manager or the controller's self-managed mode do it).
//!
//! [`inspect`] reads back what the self-managed mode needs to decide on rotation: validity,
//! subject alternative names, and which CA signed a certificate (x509-parser).

use std::net::IpAddr;
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
    #[error("{} already holds {}: refusing to replace them", dir.display(), files.join(", "))]
    Exists { dir: PathBuf, files: Vec<String> },
}

/// An extra subject alternative name of the serving certificate (`certs --san`): the host the
/// API server calls when it does not go through the Service, e.g. a `url:` webhook pointing at
/// a developer's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// An IP address when the value parses as one (it then goes into the certificate as an
    /// iPAddress SAN, which is what TLS clients compare an IP host with), else a DNS name.
    /// The DNS name is checked here because rcgen accepts any ASCII, and a name with a typo'd
    /// character would only show up as a TLS failure in the API server's log.
    pub fn parse(value: &str) -> Result<San, CertError> {
        let invalid = |message: &str| CertError::Invalid {
            what: "--san",
            value: value.to_owned(),
            message: message.to_owned(),
        };
        if value.is_empty() {
            return Err(invalid(
                "empty; give a DNS name (host.docker.internal) or an IP address (172.18.0.1)",
            ));
        }
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        // The dev-url overlay's address is host:port, so pasting it here is an easy mistake.
        if value.contains(':') {
            return Err(invalid(
                "a SAN is a host name or an IP address, without a port or scheme",
            ));
        }
        if value.len() > 253 {
            return Err(invalid("longer than 253 characters"));
        }
        let labels_ok = value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !labels_ok {
            return Err(invalid(
                "not a DNS name: dot-separated labels of 1-63 letters, digits or '-', each starting and ending with a letter or digit",
            ));
        }
        // Names ending in a numeric label (1.2.3, 10.0.0.256) are mistyped IP addresses, not
        // host names: no top-level domain is numeric.
        if value
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("not a valid IP address, nor a DNS name"));
        }
        // DNS names compare case-insensitively; one spelling keeps the printed list honest.
        Ok(San::Dns(value.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => ip.fmt(f),
        }
    }
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

/// The Service's names followed by the extra SANs, without duplicates: the serving
/// certificate's subject alternative names for `storage-admission certs`.
pub fn names_with(service: &str, namespace: &str, extra: &[San]) -> Vec<String> {
    let mut names = service_names(service, namespace);
    for san in extra {
        let san = san.to_string();
        if !names.contains(&san) {
            names.push(san);
        }
    }
    names
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
#[derive(Debug)]
pub struct Written {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What [`write`] does when a file it writes is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (`serve --dev`'s throw-away files, `certs --force`).
    Replace,
    /// Write nothing and fail with [`CertError::Exists`]: the `ca.crt` there may be the CA
    /// that webhook configurations trust, and a renewal needs it for the transition bundle.
    Refuse,
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it.
pub fn write(dir: &Path, generated: &Generated, existing: Existing) -> Result<Written, CertError> {
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
    let create_new = existing == Existing::Refuse;
    if create_new {
        // All three are checked before any is written, so a refusal leaves the directory as
        // it was instead of half old, half new. (Each file is still created with create_new,
        // so one appearing in between is not replaced either.)
        let files: Vec<String> = [&written.ca_cert, &written.cert, &written.key]
            .into_iter()
            .filter(|path| path.symlink_metadata().is_ok())
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        if !files.is_empty() {
            return Err(CertError::Exists {
                dir: dir.to_owned(),
                files,
            });
        }
    }
    write_file(
        &written.ca_cert,
        generated.ca_cert_pem.as_bytes(),
        create_new,
        false,
    )
    .map_err(err(&written.ca_cert))?;
    write_file(
        &written.cert,
        generated.cert_pem.as_bytes(),
        create_new,
        false,
    )
    .map_err(err(&written.cert))?;
    write_file(&written.key, generated.key_pem.as_bytes(), create_new, true)
        .map_err(err(&written.key))?;
    Ok(written)
}

/// Writes `bytes` to `path`, with mode 0600 when `private` (on Unix; the mode only applies
/// to a file this creates).
fn write_file(path: &Path, bytes: &[u8], create_new: bool, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)?.write_all(bytes)
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
        let written = write(dir.path(), &generated, Existing::Refuse).unwrap();
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
    fn write_refuses_to_replace_existing_files_unless_told_to() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&["localhost".into()], "first", 1).unwrap();
        let second = generate(&["localhost".into()], "second", 1).unwrap();
        let written = write(dir.path(), &first, Existing::Refuse).unwrap();

        let err = write(dir.path(), &second, Existing::Refuse).unwrap_err();
        assert!(
            matches!(&err, CertError::Exists { files, .. } if files == &["ca.crt", "tls.crt", "tls.key"]),
            "{err:?}"
        );
        assert!(err.to_string().contains("refusing to replace"), "{err}");
        // Nothing was touched: the CA is still the first one.
        let ca = || std::fs::read_to_string(&written.ca_cert).unwrap();
        assert_eq!(ca(), first.ca_cert_pem);

        // One file left over is enough to refuse, and nothing is written then either.
        std::fs::remove_file(&written.ca_cert).unwrap();
        std::fs::remove_file(&written.cert).unwrap();
        let err = write(dir.path(), &second, Existing::Refuse).unwrap_err();
        assert!(
            matches!(&err, CertError::Exists { files, .. } if files == &["tls.key"]),
            "{err:?}"
        );
        assert!(!written.ca_cert.exists() && !written.cert.exists());

        write(dir.path(), &second, Existing::Replace).unwrap();
        assert_eq!(ca(), second.ca_cert_pem);
        assert_eq!(
            std::fs::read_to_string(&written.key).unwrap(),
            second.key_pem
        );
    }

    #[test]
    fn san_is_an_ip_address_when_it_parses_as_one_else_a_checked_dns_name() {
        let ok = |s: &str| San::parse(s).unwrap();
        assert_eq!(ok("172.18.0.1"), San::Ip("172.18.0.1".parse().unwrap()));
        assert_eq!(ok("fd00::1"), San::Ip("fd00::1".parse().unwrap()));
        assert_eq!(
            ok("Host.Docker.Internal"),
            San::Dns("host.docker.internal".into())
        );
        assert_eq!(ok("my-laptop"), San::Dns("my-laptop".into()));
        let err = |s: &str| San::parse(s).unwrap_err().to_string();
        assert!(err("").contains("empty"), "{}", err(""));
        for (bad, why) in [
            ("host.docker.internal:8443", "without a port"),
            ("https://host", "without a port or scheme"),
            ("my_laptop", "not a DNS name"),
            ("has space", "not a DNS name"),
            ("-lead.example", "not a DNS name"),
            ("a..b", "not a DNS name"),
            ("trailing.", "not a DNS name"),
            ("10.0.0.256", "not a valid IP address"),
        ] {
            let message = err(bad);
            assert!(
                message.contains(why) && message.contains(&format!("--san {bad:?}")),
                "{bad}: {message}"
            );
        }
        assert!(err(&"a".repeat(254)).contains("longer than 253"));
    }

    #[test]
    fn extra_sans_go_into_the_certificate_next_to_the_service_names() {
        use x509_parser::extensions::GeneralName;
        use x509_parser::prelude::FromDer;
        let extra = [
            San::parse("host.docker.internal").unwrap(),
            San::parse("172.18.0.1").unwrap(),
            // Already a Service name: listed once.
            San::parse("sa.ns.svc").unwrap(),
        ];
        let names = names_with("sa", "ns", &extra);
        assert_eq!(
            names,
            [
                "sa",
                "sa.ns",
                "sa.ns.svc",
                "sa.ns.svc.cluster.local",
                "host.docker.internal",
                "172.18.0.1"
            ]
        );
        let generated = generate(&names, "sa", 1).unwrap();
        let info = &inspect(generated.cert_pem.as_bytes()).unwrap()[0];
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&info.der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        // The IP is an iPAddress SAN (what a TLS client compares an IP host with), not a DNS
        // name spelled with digits.
        assert_eq!(ips, [vec![172, 18, 0, 1]]);
        assert_eq!(
            dns,
            [
                "sa",
                "sa.ns",
                "sa.ns.svc",
                "sa.ns.svc.cluster.local",
                "host.docker.internal"
            ]
        );
    }

    #[test]
    fn rejects_names_that_are_not_dns_labels() {
        assert!(check_dns_label("service", "storage-admission").is_ok());
        assert!(check_dns_label("service", "Storage_Admission").is_err());
        assert!(check_dns_label("namespace", "").is_err());
    }
}
