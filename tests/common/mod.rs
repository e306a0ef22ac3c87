//! Fixtures for the integration tests: the real `mailtrail` binary and the real peers it
//! talks to (an aiosmtpd SMTP server, its TLS variant, Postfix's smtp-sink, dnsmasq), all
//! on 127.0.0.1, each started on a free port in its own temp dir and killed on `Drop`.
//!
//! The peers are installed by `./scripts/test.sh` (apt packages and `.peers/venv`); a
//! fixture whose peer is missing panics with a message saying so. Nothing here fakes a
//! server: a test that needs an SMTP reply asks the policy peer for it by recipient
//! (see `tests/peers/smtp_peer.py`).
//!
//! Waiting is always by polling a condition (`wait_until`), never a bare sleep.

// Every test module uses only a subset of these fixtures; without this each unused
// helper would warn in the modules that do not need it.
#![allow(dead_code)]

mod app;
mod dns;
mod http;
pub mod pg;
mod postfix;
mod process;
mod smtp;
mod webhook;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// Re-exported so tests can name every fixture type; a module that names none of some
// of them would otherwise warn about an unused import.
#[allow(unused_imports)]
pub use app::{ADMIN_PASSWORD, ADMIN_TOKEN, App, AppBuilder, OutputExt};
#[allow(unused_imports)]
pub use dns::DnsPeer;
#[allow(unused_imports)]
pub use http::{Api, Resp};
#[allow(unused_imports)]
pub use postfix::PostfixPeer;
#[allow(unused_imports)]
pub use process::Supervised;
#[allow(unused_imports)]
pub use smtp::{
    ReceivedMessage, SmtpPeer, SmtpSink, TlsSmtpPeer, generate_test_cert, read_maildir,
};
#[allow(unused_imports)]
pub use webhook::WebhookReceiver;

/// The checkout the tests run from: `MAILTRAIL_REPO` when set (a scratch crate that
/// borrows these fixtures points it at the real checkout), else this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    match std::env::var_os("MAILTRAIL_REPO") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

/// Polls `condition` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || condition().then_some(())).is_some()
}

/// Polls `probe` every 50 ms until it yields a value, or gives up after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago. The caller binds it soon after
/// and retries on "address in use": another test may have taken it in between.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0 always works on a machine with loopback")
        .port()
}

/// A port on 127.0.0.1 free for both TCP and UDP (a DNS server needs both).
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let port = free_tcp_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("found no port on 127.0.0.1 free for both TCP and UDP in 100 tries");
}

/// A port P on 127.0.0.1 with P and P+1 both free for TCP (the TLS peer uses both).
pub fn free_tcp_port_pair() -> u16 {
    for _ in 0..100 {
        let port = free_tcp_port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("found no two adjacent free TCP ports on 127.0.0.1 in 100 tries");
}

/// Whether the tests run as root (then smtp-sink and dnsmasq must be told to drop to
/// `nobody`; as another user they cannot switch users and must not be asked to).
pub fn is_root() -> bool {
    static IS_ROOT: OnceLock<bool> = OnceLock::new();
    *IS_ROOT.get_or_init(|| {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// The path of a system binary: `/usr/sbin/NAME` when it exists (not on every user's
/// PATH), else the bare name for a PATH look-up.
pub(crate) fn system_binary(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin"] {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(name)
}
