//! TLS with mutual certificate authentication (rustls, `ring` provider): the listener
//! requires a client certificate signed by the CA and the client verifies the listener's
//! certificate against the same CA. Certificates and keys are PEM files (see
//! `docs/transport.md` for the openssl commands that make them).

use super::error::{Result, TransportError};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a side's TLS material is: the CA that signs the peers, this side's certificate
/// (chain) and private key, all PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) the peer's certificate must chain to.
    pub ca: PathBuf,
    /// This side's certificate chain.
    pub cert: PathBuf,
    /// This side's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn cfg_err(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TransportError {
    config_err(path.display(), e)
}

/// A PEM file that could not be loaded; one that could not be read keeps its I/O error as
/// the source (the PEM error itself has no `source()`).
fn pem_err(path: &Path, e: pem::Error) -> TransportError {
    match e {
        pem::Error::Io(io) => cfg_err(path, io),
        e => cfg_err(path, e),
    }
}

/// [`TransportError::TlsConfig`]: building `what` failed with `e`.
pub(super) fn config_err(
    what: impl std::fmt::Display,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> TransportError {
    TransportError::TlsConfig {
        what: what.to_string(),
        source: e.into(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| pem_err(ca, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| pem_err(ca, e))?;
    if certs.is_empty() {
        return Err(cfg_err(ca, "no certificate in the file"));
    }
    for c in certs {
        roots.add(c).map_err(|e| cfg_err(ca, e))?;
    }
    Ok(roots)
}

fn identity(files: &TlsFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_err(&files.cert, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| pem_err(&files.cert, e))?;
    if certs.is_empty() {
        return Err(cfg_err(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_err(&files.key, e))?;
    Ok((certs, key))
}

/// The listener's configuration: its own certificate, and client certificates required and
/// verified against the CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let roots = Arc::new(roots(&files.ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| config_err("client verifier", e))?;
    let (certs, key) = identity(files)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| cfg_err(&files.cert, e))?;
    // A TLS 1.3 client finishes its handshake before this side has checked its certificate;
    // the session ticket sent once it has is the acceptance the connecting side waits for
    // (a refusal is an alert instead). rustls sends tickets by default; this keeps it so.
    cfg.send_tls13_tickets = cfg.send_tls13_tickets.max(1);
    Ok(Arc::new(cfg))
}

/// The connecting side's configuration: the listener verified against the CA, this side's
/// certificate presented.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let roots = roots(&files.ca)?;
    let (certs, key) = identity(files)?;
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err("protocol versions", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| cfg_err(&files.cert, e))?;
    Ok(Arc::new(cfg))
}

/// The name the listener's certificate must carry: the host part of the address (an IP
/// address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .map_err(|e| config_err(format_args!("server name {host:?}"), e))
}

/// A TLS session as a link's stream: rustls's `StreamOwned`, except that reading never
/// first tries to send what a failed write left queued. (`StreamOwned::read` flushes
/// pending writes before it reads, so once the peer has closed, a source whose last write
/// failed could not read the refusal the peer sent before closing; see `send.rs`.)
pub(super) struct TlsStream<C, S>(pub(super) rustls::StreamOwned<C, std::net::TcpStream>)
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData;

impl<C, S> std::io::Read for TlsStream<C, S>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let s = &mut self.0;
        loop {
            match s.conn.reader().read(buf) {
                // Plaintext, or the peer's close_notify (Ok(0)), or its end without one.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext buffered: read records from the socket (a read timeout ends the
            // attempt; the link counts the wait).
            if s.conn.read_tls(&mut s.sock)? == 0 {
                // End of the socket: what was decrypted has been returned above; the
                // reader reports the end (UnexpectedEof without close_notify).
                s.conn
                    .process_new_packets()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                return s.conn.reader().read(buf);
            }
            s.conn
                .process_new_packets()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl<C, S> std::io::Write for TlsStream<C, S>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
