//! TLS for the status page (rustls, ring provider): loading the PEM files named in `[web]` and a
//! listener that hands axum finished TLS streams.
//!
//! Handshakes run in their own tasks under a timeout, so a slow or silent client never holds up the
//! accept loop of everyone else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::error::WebError;
use super::ClientAddr;
use crate::config::TlsFiles;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Accepted TLS connections, handshakes done, for `axum::serve`.
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (shutdown): wait for the graceful shutdown to stop us.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

pub(super) async fn serve(
    listener: TcpListener,
    tls: TlsConfig,
    router: Router,
    shutdown: CancellationToken,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(err) => {
            tracing::error!("status page: no local address: {err}");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tls.acceptor.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::debug!("status page accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, addr)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%addr, "TLS handshake failed: {err}"),
                    Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    let listener = TlsListener { ready: rx, local };
    let service = router.into_make_service_with_connect_info::<ClientAddr>();
    if let Err(err) = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!("status page stopped: {err}");
    }
}
