//! TLS on the main listener (`--tls-cert`, `--tls-key`), for running
//! keygate without a proxy in front: rustls, TLS 1.2 and 1.3 with its safe
//! defaults, HTTP/1.1.
//!
//! Policy: the certificate chain and key are read at start and again on
//! SIGHUP ([`Tls::reload`]); a connection keeps the configuration it was
//! accepted with, so a reload drops none, and a reload that cannot read
//! or match the new files keeps the old ones and says why. A handshake
//! must finish within the header read timeout, like a request's head.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The listener's certificate and key, and where they are read from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the PEM certificate chain at `cert` and the PEM private key at
    /// `key`; the error says which file is wrong and how.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let config = config(cert, key)?;
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), config: RwLock::new(Arc::new(config)) })
    }

    /// Reads both files again; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = config(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// What accepts the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

fn config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: holds no certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: not a PEM private key: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| format!("--tls-cert and --tls-key do not make a pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
