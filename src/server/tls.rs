//! TLS: rustls with TLS 1.2/1.3 only, ALPN `h2` and `http/1.1`, and a certificate that is
//! re-read from its files without restarting the listener.
//!
//! The certificate lives behind an [`ArcSwap`] read by a [`ResolvesServerCert`] on every
//! handshake: a reload swaps the pointer, open connections keep the key they negotiated and new
//! ones get the new pair. Reloads read the *paths* again (kubelet updates a Secret volume by
//! swapping the `..data` symlink, so a watch on the old file would go stale) and compare bytes,
//! so polling is cheap. A pair that does not parse or whose key does not match its certificate
//! is logged and counted, and the old pair keeps serving.
//!
//! With `--certs self-managed` there are no files: the pair arrives from a watched Secret and
//! is set in memory ([`ReloadingCert::set_pem`]). Until a first pair is set, the resolver has
//! no certificate, so handshakes fail and readiness is false.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("the key in {key} does not belong to the certificate in {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The one crypto provider of the process (ring, as kube's client uses).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and key into a checked [`CertifiedKey`].
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        message: e.to_string(),
    })
}

/// The serving certificate, reloadable from its two files or set in memory.
#[derive(Debug)]
pub struct ReloadingCert {
    /// `None` when the pair is set in memory ([`ReloadingCert::empty`]).
    files: Option<(PathBuf, PathBuf)>,
    provider: Arc<CryptoProvider>,
    current: ArcSwapOption<CertifiedKey>,
    /// The bytes the current pair was built from, to skip unchanged files cheaply.
    loaded: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded,
}

impl ReloadingCert {
    /// Loads the pair; fails if it cannot be used (at start-up there is no old pair to keep).
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        let key = certified_key(&cert_pem, &key_pem, cert_path, key_path, &provider)?;
        Ok(Self {
            files: Some((cert_path.to_owned(), key_path.to_owned())),
            provider,
            current: ArcSwapOption::from_pointee(key),
            loaded: std::sync::Mutex::new((cert_pem, key_pem)),
        })
    }

    /// No certificate yet: it will be set in memory with [`ReloadingCert::set_pem`].
    pub fn empty(provider: Arc<CryptoProvider>) -> Self {
        Self {
            files: None,
            provider,
            current: ArcSwapOption::empty(),
            loaded: std::sync::Mutex::new((Vec::new(), Vec::new())),
        }
    }

    /// Re-reads the files; swaps in the new pair when it changed and is valid. On error the
    /// current pair stays in place. Without files there is nothing to re-read.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        let Some((cert_path, key_path)) = &self.files else {
            return Ok(Reload::Unchanged);
        };
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        self.swap(cert_pem, key_pem, cert_path, key_path)
    }

    /// Sets the pair from memory (`origin` names where it came from, for errors); swaps it in
    /// when it differs from the current one and is valid. On error the current pair stays.
    pub fn set_pem(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        origin: &str,
    ) -> Result<Reload, TlsError> {
        let cert_path = PathBuf::from(format!("{origin} tls.crt"));
        let key_path = PathBuf::from(format!("{origin} tls.key"));
        self.swap(cert_pem.to_vec(), key_pem.to_vec(), &cert_path, &key_path)
    }

    fn swap(
        &self,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Reload, TlsError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.current.load().is_some() && loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(Reload::Unchanged);
        }
        let key = certified_key(&cert_pem, &key_pem, cert_path, key_path, &self.provider)?;
        self.current.store(Some(Arc::new(key)));
        *loaded = (cert_pem, key_pem);
        Ok(Reload::Reloaded)
    }

    /// The pair being served; `None` until one was set.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    Ok((read(cert)?, read(key)?))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None (no certificate yet) makes rustls abort the handshake.
        self.current.load_full()
    }
}

/// The server configuration: TLS 1.3 and 1.2 only, ALPN h2 then http/1.1.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
