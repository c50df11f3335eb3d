//! Serving certificate: load, validate, hot-reload, and generate.
//!
//! The certificate is resolved per TLS handshake from an in-memory slot. A poller re-reads the
//! files every `interval` and swaps the slot only when the *content* changed and the new pair is
//! valid (parses, key matches certificate). Comparing content instead of watching inodes handles
//! the kubelet Secret-volume update, which swaps a `..data` symlink and never touches the file
//! the path names. A broken or half-written pair keeps the last good one and is logged.

use crate::metrics::Metrics;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no PEM certificate found in the certificate file")]
    NoCertificate,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("no usable private key: {0}")]
    Key(String),
    #[error("private key does not match the certificate")]
    KeyMismatch,
    #[error("certificate cannot be parsed: {0}")]
    X509(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(String),
}

/// The crypto provider meshguard uses everywhere (pure Rust `ring`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A parsed, validated serving pair.
#[derive(Debug)]
pub struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf, as a Unix timestamp.
    pub not_after: i64,
}

/// Parse a PEM certificate chain and private key into a validated pair.
pub fn load_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<LoadedPair, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate);
    };
    let not_after = leaf_not_after(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(TlsError::KeyMismatch),
        // Unknown key type for the check: rustls could not verify; accept as loaded.
        Err(_) => {}
    }
    Ok(LoadedPair {
        key: Arc::new(ck),
        not_after,
    })
}

fn leaf_not_after(leaf: &CertificateDer<'_>) -> Result<i64, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::X509(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generated at start (no reload).
    Memory {
        cert_pem: String,
        key_pem: String,
    },
}

/// The per-handshake certificate slot, plus the reload logic.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    source: CertSource,
    /// Content of the files that produced `current` (or that last failed), to detect changes.
    last_seen: RwLock<(Vec<u8>, Vec<u8>)>,
    metrics: Option<Metrics>,
}

impl CertStore {
    /// Load the initial pair; failing here is fatal (nothing to serve with).
    pub fn new(source: CertSource, metrics: Option<Metrics>) -> Result<Arc<CertStore>, TlsError> {
        let (cert, key) = read_source(&source)?;
        let pair = load_pair(&cert, &key)?;
        if let Some(m) = &metrics {
            m.tls_expiry.set(pair.not_after as f64);
        }
        Ok(Arc::new(CertStore {
            current: RwLock::new(pair.key),
            source,
            last_seen: RwLock::new((cert, key)),
            metrics,
        }))
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-read the files; swap in the new pair if it changed and is valid.
    /// Returns `Ok(true)` on a swap, `Ok(false)` when nothing changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        if matches!(self.source, CertSource::Memory { .. }) {
            return Ok(false);
        }
        let (cert, key) = read_source(&self.source)?;
        {
            let seen = self.last_seen.read().unwrap_or_else(|p| p.into_inner());
            if seen.0 == cert && seen.1 == key {
                return Ok(false);
            }
        }
        // Remember this content either way so a bad pair is reported once, not every poll.
        *self.last_seen.write().unwrap_or_else(|p| p.into_inner()) = (cert.clone(), key.clone());
        let pair = load_pair(&cert, &key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = pair.key;
        if let Some(m) = &self.metrics {
            m.tls_expiry.set(pair.not_after as f64);
        }
        Ok(true)
    }

    /// Poll for changes until the process ends.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        if matches!(self.source, CertSource::Memory { .. }) {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.clone();
            let result = tokio::task::spawn_blocking(move || store.reload()).await;
            let outcome = match result {
                Ok(Ok(true)) => {
                    tracing::info!("serving certificate reloaded");
                    Some("success")
                }
                Ok(Ok(false)) => None,
                Ok(Err(e @ TlsError::Read { .. })) => {
                    // Mid-swap reads can fail transiently; keep the last good pair silently
                    // unless it persists (the next poll will tell).
                    tracing::debug!(error = %e, "certificate files not readable; keeping the current pair");
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "new certificate pair rejected; keeping the last good one");
                    Some("failure")
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload task failed");
                    Some("failure")
                }
            };
            if let (Some(result), Some(m)) = (outcome, &self.metrics) {
                m.tls_reloads.with_label_values(&[result]).inc();
            }
        }
    }
}

fn read_source(source: &CertSource) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    match source {
        CertSource::Memory { cert_pem, key_pem } => {
            Ok((cert_pem.as_bytes().to_vec(), key_pem.as_bytes().to_vec()))
        }
        CertSource::Files { cert, key } => Ok((read(cert)?, read(key)?)),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// rustls server configuration: TLS 1.3 and 1.2 (ring's AEAD/ECDHE suites only),
/// ALPN h2 + http/1.1, certificate resolved per handshake from `store`, optional client
/// certificate verification against `client_ca` (PEM bundle).
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&[u8]>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::ClientCa(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TlsError::ClientCa(
                    "no certificate in the client CA bundle".into(),
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A CA and a serving certificate signed by it, all PEM.
#[derive(Clone, Debug)]
pub struct Generated {
    pub ca_cert_pem: String,
    pub(crate) ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generate a CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String], valid_days: i64) -> Result<Generated, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "meshguard webhook CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(valid_days.max(1) + 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "meshguard".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(valid_days.max(1));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_mismatch_is_rejected() {
        let a = generate(&["localhost".into(), "127.0.0.1".into()], 30).expect("gen");
        let b = generate(&["localhost".into()], 30).expect("gen");
        let pair = load_pair(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).expect("load");
        assert!(pair.not_after > 0);
        let err = load_pair(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
        let err = load_pair(b"", a.key_pem.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate), "{err}");
        let half = &a.cert_pem.as_bytes()[..a.cert_pem.len() / 2];
        assert!(load_pair(half, a.key_pem.as_bytes()).is_err());
    }
}
