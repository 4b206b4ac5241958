//! TLS for the status page (rustls, ring provider): loading the PEM files named in `[web]`, at start
//! and again at every reload ([`TlsSwap`]). The handshake itself runs in the connection's task in
//! [`super::server`], under the header timeout, so a slow or silent client never holds up anyone.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::error::WebError;
use crate::config::TlsFiles;

/// A loaded certificate chain and key.
pub(super) struct TlsConfig {
    acceptor: TlsAcceptor,
}

pub(super) fn load(files: &TlsFiles) -> Result<TlsConfig, WebError> {
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| WebError::TlsRead {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let bad = |what: &'static str, path: &std::path::Path, message: String| WebError::TlsBad {
        what,
        path: path.to_path_buf(),
        message,
    };
    let cert_pem = read("certificate", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "certificate",
            &files.cert,
            "no CERTIFICATE block found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad("key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", &files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("key", &files.key, e.to_string()))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConfig {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// The acceptor in use, replaced when a reload re-reads the files (a renewed certificate applies to
/// new connections; open ones keep theirs).
pub(super) struct TlsSwap(RwLock<TlsAcceptor>);

impl TlsSwap {
    pub(super) fn new(tls: TlsConfig) -> TlsSwap {
        TlsSwap(RwLock::new(tls.acceptor))
    }

    pub(super) fn acceptor(&self) -> TlsAcceptor {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads `files`; on an error the acceptor in use stays.
    pub(super) fn reload(&self, files: &TlsFiles) -> Result<(), WebError> {
        let loaded = load(files)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = loaded.acceptor;
        Ok(())
    }
}
