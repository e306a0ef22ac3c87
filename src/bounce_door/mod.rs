//! The SMTP bounce door (SPEC §11): an SMTP server meant to be the MX of the bounce
//! domain. It accepts mail only for `bounces+{decision_id}@…` of a known decision and for
//! the feedback address, hands each message to [`App::receive_bounce`] (the same pipeline
//! as `POST /api/v1/bounces`) and answers `250` only after that returned, i.e. after the
//! outcome is committed. Commands are parsed by `smtp-proto`; this module only frames
//! lines, keeps the limits and chooses the replies.
//!
//! Runs inside `serve` and inside `worker` processes alike when `--bounce-listen` is set.

mod session;
mod tls;

use crate::app::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use tls::load_tls;

/// The door's limits. The defaults are [`Limits::default`]; tests and the benchmark
/// build their own.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `SIZE` advertised; a larger message is refused with `552 5.3.4`.
    pub max_message: usize,
    /// Recipients per message; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// One command line, CRLF included; a longer one gets `500 5.5.2`.
    pub max_line: usize,
    /// Commands between two accepted messages (not counting message text); then
    /// `421 4.7.0` and close.
    pub max_commands: usize,
    /// Refused commands per session; then `421 4.7.0` and close.
    pub max_errors: usize,
    /// How long the door waits for the client's next bytes; then `421 4.4.2` and close.
    pub idle: Duration,
    /// A session's whole life at most; then `421 4.4.2` and close.
    pub session: Duration,
    /// Sessions at once; one more is answered `421 4.3.2` and closed.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message: 10_485_760,
            max_recipients: 100,
            max_line: 2048,
            max_commands: 1000,
            max_errors: 20,
            idle: Duration::from_secs(120),
            session: Duration::from_secs(30 * 60),
            max_sessions: 128,
        }
    }
}

/// What every session of one door shares.
pub(crate) struct Shared {
    pub(crate) app: App,
    pub(crate) limits: Limits,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) hostname: String,
    pub(crate) feedback: Option<String>,
}

/// A bound door, not yet accepting.
pub struct Door {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Door {
    /// Binds `addr` for `app`, with STARTTLS when `tls` is given.
    pub async fn bind(
        app: App,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: Limits,
    ) -> std::io::Result<Door> {
        let listener = listen(addr)?;
        let hostname = lettre::transport::smtp::extension::ClientId::default().to_string();
        let feedback = app.config.feedback_address.clone();
        Ok(Door {
            listener,
            shared: Arc::new(Shared {
                app,
                limits,
                tls,
                hostname,
                feedback,
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts sessions until `stop` turns true. Sessions under way are left to finish
    /// (a message not yet answered is simply sent again by its MTA).
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let Door { listener, shared } = self;
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(shared.limits.max_sessions));
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let (mut stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: wait a moment instead of spinning.
                        tracing::warn!(error = %e, "bounce door: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            session::run(stream, peer, shared).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tokio::spawn(async move {
                            let busy = b"421 4.3.2 Too many connections, try again later\r\n";
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                let _ = stream.write_all(busy).await;
                                let _ = stream.shutdown().await;
                            })
                            .await;
                        });
                    }
                }
            }
        })
    }
}

/// A listening socket with `SO_REUSEPORT`: `serve` and `mailtrail worker` processes on
/// one host read the same settings, so each may bind the same door and the kernel
/// spreads the sessions over them.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Starts the door of this process when `--bounce-listen` is set: binds, loads the TLS
/// files, and accepts until `stop`. A bad certificate or key, or an address that cannot
/// be bound, is an error at start-up.
pub async fn start(
    app: &App,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(addr) = app.config.bounce_listen else {
        return Ok(None);
    };
    let tls = match &app.config.bounce_tls {
        Some((cert, key)) => Some(load_tls(cert, key)?),
        None => None,
    };
    let door = Door::bind(app.clone(), addr, tls, Limits::default())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (bounce_listen): {e}"))?;
    let local = door.local_addr()?;
    tracing::info!(addr = %local, starttls = app.config.bounce_tls.is_some(), "bounce door listening");
    Ok(Some(door.spawn(stop)))
}
