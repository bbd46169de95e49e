//! Addresses (`tcp://HOST:PORT`, `tls://HOST:PORT`), connecting and listening: a socket
//! becomes a [`Link`], through a TLS handshake with mutual authentication unless the
//! transport is explicitly insecure.

use super::error::{Result, TransportError};
use super::link::{Link, POLL};
use super::marked::MarkedSocket;
use crate::migration::stream::Needed;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;
#[cfg(feature = "tls")]
use std::time::Instant;

#[cfg(feature = "tls")]
pub use super::tls::TlsFiles;

/// Without the `tls` feature: the type exists so that callers compile, and every TLS
/// endpoint is refused with [`TransportError::NoTls`].
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s).
    pub ca: std::path::PathBuf,
    /// This side's certificate chain.
    pub cert: std::path::PathBuf,
    /// This side's private key.
    pub key: std::path::PathBuf,
}

/// Which transport an address names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// Plain TCP (`tcp://`): only with an explicit [`Security::Insecure`] (`--insecure` on the
    /// command line).
    Tcp,
    /// TLS with mutual certificate authentication (`tls://`).
    Tls,
}

/// A peer's address: `tcp://HOST:PORT` or `tls://HOST:PORT` (an address without a scheme is
/// TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::str::FromStr for Endpoint {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Endpoint> {
        let bad = |why: &str| TransportError::Address {
            addr: s.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = if let Some(r) = s.strip_prefix("tcp://") {
            (Scheme::Tcp, r)
        } else if let Some(r) = s.strip_prefix("tls://") {
            (Scheme::Tls, r)
        } else if s.contains("://") {
            return Err(bad("the scheme must be tcp:// or tls://"));
        } else {
            (Scheme::Tls, s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = port.parse::<u16>().map_err(|_| bad("bad port"))?;
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        };
        if self.host.contains(':') {
            write!(f, "{s}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{s}://{}:{}", self.host, self.port)
        }
    }
}

/// How a link is secured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Security {
    /// Plain TCP: no authentication, no encryption (`--insecure` on the command line).
    Insecure,
    /// TLS with mutual certificate authentication.
    Tls(TlsFiles),
}

fn tune(sock: &TcpStream, what: &str) -> Result<()> {
    let io = |source| TransportError::Connect {
        what: what.to_string(),
        source,
    };
    sock.set_nodelay(true).map_err(io)?;
    sock.set_read_timeout(Some(POLL)).map_err(io)?;
    sock.set_write_timeout(Some(POLL)).map_err(io)?;
    Ok(())
}

/// A plain TCP link: the socket and its clone are the two halves (no lock between them);
/// the reading half waits for what the frame being read still lacks ([`MarkedSocket`]).
fn tcp_link(sock: TcpStream, what: &str, timeout: Duration) -> Result<Link> {
    let io = |source| TransportError::Connect {
        what: what.to_string(),
        source,
    };
    let needed = Needed::new();
    let rd = MarkedSocket::new(sock.try_clone().map_err(io)?, needed.clone()).map_err(io)?;
    Ok(Link::from_halves_needing(
        Box::new(rd),
        Box::new(sock),
        timeout,
        needed,
    ))
}

/// Connects to `ep` and, for TLS, completes the handshake (verifying the listener's
/// certificate, presenting ours). `timeout` bounds the connect, the handshake and every
/// later wait on the link.
///
/// # Examples
///
/// A plain TCP link on the loopback, and an address that asks for TLS without the files
/// to make it (refused before anything goes on the network):
///
/// ```
/// use std::time::Duration;
/// use vfio_harness::transport::{connect, Endpoint, Listener, Security, TransportError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("127.0.0.1:0", Security::Insecure)?;
/// let endpoint: Endpoint = format!("tcp://{}", listener.local_addr()?).parse()?;
/// let accepting = std::thread::spawn(move || listener.accept(Duration::from_secs(10)));
/// let link = connect(&endpoint, &Security::Insecure, Duration::from_secs(10))?;
/// let (_their_link, peer) = accepting.join().expect("the accepting thread")?;
/// assert!(peer.ip().is_loopback());
/// assert!(link.fault().is_none());
///
/// let tls: Endpoint = "tls://127.0.0.1:1".parse()?;
/// let e = connect(&tls, &Security::Insecure, Duration::from_secs(1)).unwrap_err();
/// assert!(matches!(e, TransportError::Address { .. }));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - [`TransportError::Address`]: a `tls://` address with [`Security::Insecure`], or a
///   `tcp://` one with TLS files, or a host that does not resolve.
/// - [`TransportError::TlsConfig`]: a CA, certificate or key file cannot be used (read before
///   connecting).
/// - [`TransportError::Connect`]: the connection failed (refused, unreachable, timed out).
/// - [`TransportError::Handshake`]: the TLS handshake failed (the listener's certificate did
///   not verify, or it refused ours).
pub fn connect(ep: &Endpoint, security: &Security, timeout: Duration) -> Result<Link> {
    // What the address asks for is checked, and TLS files are read, before anything goes on
    // the network: an unusable certificate or key is reported as such, not as whatever the
    // connection ran into.
    let tls = match (ep.scheme, security) {
        (Scheme::Tcp, Security::Insecure) => None,
        (Scheme::Tls, Security::Tls(files)) => Some(client_setup(ep, files)?),
        (Scheme::Tls, Security::Insecure) => {
            return Err(TransportError::Address {
                addr: ep.to_string(),
                why: "a tls:// address needs TLS certificates (Security::Tls; --ca/--cert/--key \
                      on the command line), or use tcp:// insecurely"
                    .into(),
            })
        }
        (Scheme::Tcp, Security::Tls(_)) => {
            return Err(TransportError::Address {
                addr: ep.to_string(),
                why: "plain TCP is allowed only when asked for (Security::Insecure; --insecure \
                      on the command line), or use tls://"
                    .into(),
            })
        }
    };
    let what = format!("connect {}:{}", ep.host, ep.port);
    let addrs: Vec<SocketAddr> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|source| TransportError::Connect {
            what: what.clone(),
            source,
        })?
        .collect();
    let mut last = None;
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let sock = sock.ok_or_else(|| TransportError::Connect {
        what: what.clone(),
        source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    })?;
    tune(&sock, &what)?;
    match tls {
        None => tcp_link(sock, &what, timeout),
        Some(setup) => client_tls(sock, ep, setup, timeout),
    }
}

/// A TLS client's configuration (its files read and checked) and the listener's name.
#[cfg(feature = "tls")]
type ClientSetup = (
    std::sync::Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
);
/// Without the `tls` feature there is nothing to set up.
#[cfg(not(feature = "tls"))]
type ClientSetup = ();

#[cfg(feature = "tls")]
fn client_setup(ep: &Endpoint, files: &TlsFiles) -> Result<ClientSetup> {
    Ok((
        super::tls::client_config(files)?,
        super::tls::server_name(&ep.host)?,
    ))
}

#[cfg(not(feature = "tls"))]
fn client_setup(_: &Endpoint, _: &TlsFiles) -> Result<ClientSetup> {
    Err(TransportError::NoTls)
}

#[cfg(feature = "tls")]
fn client_tls(
    sock: TcpStream,
    ep: &Endpoint,
    setup: ClientSetup,
    timeout: Duration,
) -> Result<Link> {
    let (cfg, name) = setup;
    let conn = rustls::ClientConnection::new(cfg, name)
        .map_err(|e| super::tls::config_err("client session", e))?;
    let peer = format!("{}:{}", ep.host, ep.port);
    let mut stream = handshake(rustls::StreamOwned::new(conn, sock), &peer, timeout)?;
    // With TLS 1.3 the client finishes its handshake before the listener has checked the
    // client's certificate. The listener's verdict follows: a session ticket when it accepted
    // us (`tls::server_config` has it send one), a fatal alert when it refused. Wait for
    // whichever comes first, so that a refusal is reported as one however late the listener
    // gets to run, and not as a link that broke after our first frame. A listener that sends
    // no ticket (not one of ours) costs the wait, at most `timeout`, and is then used.
    if stream.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        let t0 = Instant::now();
        loop {
            match stream.conn.complete_io(&mut stream.sock) {
                // Read nothing and wrote nothing: the listener closed without a word.
                Ok((0, 0)) => {
                    return Err(TransportError::Handshake {
                        peer,
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the listener closed the connection after the handshake",
                        ),
                    })
                }
                // Sent what was queued (the end of our handshake): go on waiting.
                Ok((0, _)) if t0.elapsed() < timeout => {}
                Ok((0, _)) => break,
                // The ticket: accepted.
                Ok(_) => break,
                Err(e) if is_timeout(&e) && t0.elapsed() < timeout => {}
                Err(e) if is_timeout(&e) => break,
                Err(source) => return Err(TransportError::Handshake { peer, source }),
            }
        }
    }
    Ok(Link::new(Box::new(super::tls::TlsStream(stream)), timeout))
}

#[cfg(not(feature = "tls"))]
fn client_tls(_: TcpStream, _: &Endpoint, _: ClientSetup, _: Duration) -> Result<Link> {
    Err(TransportError::NoTls)
}

#[cfg(feature = "tls")]
fn handshake<C, S>(
    mut s: rustls::StreamOwned<C, TcpStream>,
    peer: &str,
    timeout: Duration,
) -> Result<rustls::StreamOwned<C, TcpStream>>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    let t0 = Instant::now();
    while s.conn.is_handshaking() {
        match s.conn.complete_io(&mut s.sock) {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                if t0.elapsed() >= timeout {
                    return Err(TransportError::Handshake {
                        peer: peer.to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no handshake within {timeout:?}"),
                        ),
                    });
                }
            }
            Err(source) => {
                return Err(TransportError::Handshake {
                    peer: peer.to_string(),
                    source,
                })
            }
        }
    }
    Ok(s)
}

#[cfg(feature = "tls")]
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A listening socket for `receive`.
///
/// # Examples
///
/// A destination that stops waiting for a peer when asked to (Ctrl-C in the CLI): the wait
/// ends with [`MigrationError::Interrupted`](crate::migration::MigrationError::Interrupted).
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use std::time::Duration;
/// use vfio_harness::migration::MigrationError;
/// use vfio_harness::transport::{Listener, Security, TransportError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("127.0.0.1:0", Security::Insecure)?;
/// assert_ne!(listener.local_addr()?.port(), 0);
/// let cancel = AtomicBool::new(true);
/// let e = listener
///     .accept_unless(Duration::from_secs(10), Some(&cancel))
///     .unwrap_err();
/// assert!(matches!(e, TransportError::Migration(MigrationError::Interrupted)));
/// # Ok(())
/// # }
/// ```
pub struct Listener {
    sock: TcpListener,
    security: Security,
    #[cfg(feature = "tls")]
    server: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Listener {
    /// Listens on `addr` (`HOST:PORT`; port 0 picks a free one). With TLS the configuration
    /// (CA, certificate, key) is loaded here, so a bad file is reported before anyone
    /// connects.
    pub fn bind(addr: &str, security: Security) -> Result<Listener> {
        let sock = TcpListener::bind(addr).map_err(|source| TransportError::Connect {
            what: format!("listen on {addr}"),
            source,
        })?;
        #[cfg(feature = "tls")]
        let server = match &security {
            Security::Tls(files) => Some(super::tls::server_config(files)?),
            Security::Insecure => None,
        };
        #[cfg(not(feature = "tls"))]
        if let Security::Tls(_) = security {
            return Err(TransportError::NoTls);
        }
        Ok(Listener {
            sock,
            security,
            #[cfg(feature = "tls")]
            server,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.sock
            .local_addr()
            .map_err(|source| TransportError::Connect {
                what: "local address".into(),
                source,
            })
    }

    /// Accepts one peer and, with TLS, authenticates it (its certificate must chain to the
    /// CA): an unauthenticated peer is refused with [`TransportError::Handshake`] here, before
    /// anything else happens. Waits for a peer to connect for as long as it takes
    /// ([`Listener::accept_unless`] can be cancelled while it waits); `timeout` bounds the TLS
    /// handshake and is the returned link's timeout.
    pub fn accept(&self, timeout: Duration) -> Result<(Link, SocketAddr)> {
        self.accept_unless(timeout, None)
    }

    /// [`Listener::accept`], giving up with [`MigrationError::Interrupted`] once `cancel` is
    /// set (polled every [`POLL`] while no peer connects).
    ///
    /// [`MigrationError::Interrupted`]: crate::migration::MigrationError::Interrupted
    pub fn accept_unless(
        &self,
        timeout: Duration,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<(Link, SocketAddr)> {
        let io = |source| TransportError::Connect {
            what: "accept".into(),
            source,
        };
        self.sock.set_nonblocking(cancel.is_some()).map_err(io)?;
        let (sock, peer) = loop {
            match self.sock.accept() {
                Ok(v) => break v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                        return Err(crate::migration::MigrationError::Interrupted.into());
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        };
        sock.set_nonblocking(false).map_err(io)?;
        tune(&sock, &format!("accept {peer}"))?;
        match &self.security {
            Security::Insecure => Ok((tcp_link(sock, &format!("accept {peer}"), timeout)?, peer)),
            #[cfg(feature = "tls")]
            Security::Tls(_) => {
                let cfg = self.server.clone().ok_or(TransportError::NoTls)?;
                let conn = rustls::ServerConnection::new(cfg)
                    .map_err(|e| super::tls::config_err("server session", e))?;
                let stream = handshake(
                    rustls::StreamOwned::new(conn, sock),
                    &peer.to_string(),
                    timeout,
                )?;
                Ok((
                    Link::new(Box::new(super::tls::TlsStream(stream)), timeout),
                    peer,
                ))
            }
            #[cfg(not(feature = "tls"))]
            Security::Tls(_) => Err(TransportError::NoTls),
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.sock.local_addr().ok())
            .field("security", &self.security)
            .finish()
    }
}

#[cfg(test)]
#[path = "marked_tests.rs"]
mod marked_tests;
