//! SMTP peers: the aiosmtpd policy server (`tests/peers/smtp_peer.py`), its TLS + AUTH
//! variant (`smtp_peer_tls.py`), and Postfix's `smtp-sink` for throughput. Each runs on
//! a free port of 127.0.0.1 and is killed on `Drop`.
//!
//! The policy server answers by recipient local part (`bounce*` 550 5.1.1, `defer*`
//! 451, `policy*` 550 5.7.1, `drop*` connection reset, ...; the full table is at the top
//! of `smtp_peer.py`) and stores each accepted message as `<name>.json` + `<name>.eml`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::process::Supervised;
use super::{free_tcp_port, free_tcp_port_pair, is_root, repo_root, system_binary};

/// How long a peer may take to say it listens (Python start-up is about 0.3 s).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries with a new port when the chosen one was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;
/// The AUTH credentials the TLS peer accepts.
const TLS_PEER_USER: &str = "user";
const TLS_PEER_PASSWORD: &str = "pass";

/// One message a peer accepted, read back from its maildir.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The envelope sender (MAIL FROM), e.g. the VERP address `bounces+ID@domain`.
    pub mail_from: String,
    /// The accepted envelope recipients (RCPT TO), in order.
    pub rcpt_tos: Vec<String>,
    /// The client's EHLO/HELO name.
    pub helo: Option<String>,
    /// Whether the message came over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The AUTH user the client logged in as, if it did.
    pub auth_user: Option<String>,
    /// The message exactly as received (lossy UTF-8).
    pub raw: String,
    /// The `.eml` file.
    pub path: PathBuf,
}

impl ReceivedMessage {
    /// The first header called `name` (case-insensitive), unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self
            .raw
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .split("\n\n")
            .next()
            .unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with([' ', '\t']) {
                // A folded continuation of the previous header (RFC 5322 §2.2.3).
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_owned());
            }
        }
        found
    }

    /// The body: everything after the first empty line.
    pub fn body(&self) -> &str {
        if let Some((_, body)) = self.raw.split_once("\r\n\r\n") {
            return body;
        }
        self.raw.split_once("\n\n").map_or("", |(_, body)| body)
    }
}

/// Reads every complete message of a peer's maildir, oldest first (file names start
/// with the time in nanoseconds). The peer writes `.json` before renaming `.eml` into
/// place, so every `.eml` seen here has its envelope.
pub fn read_maildir(maildir: &Path) -> Vec<ReceivedMessage> {
    let Ok(entries) = std::fs::read_dir(maildir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let envelope_path = path.with_extension("json");
            let envelope: Value = std::fs::read_to_string(&envelope_path)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_else(|| panic!("{} has no readable envelope", path.display()));
            let raw = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            let text = |key: &str| envelope[key].as_str().map(str::to_owned);
            ReceivedMessage {
                mail_from: text("mail_from").unwrap_or_default(),
                rcpt_tos: envelope["rcpt_tos"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(|rcpt| rcpt.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                helo: text("helo"),
                tls: envelope["tls"].as_bool().unwrap_or(false),
                auth_user: text("auth_user"),
                raw: String::from_utf8_lossy(&raw).into_owned(),
                path,
            }
        })
        .collect()
}

/// Waits until `maildir` holds at least `count` messages and returns them all; panics
/// after `timeout`, listing what did arrive.
fn wait_for_maildir(maildir: &Path, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
    let mut seen = Vec::new();
    let done = super::wait_until(timeout, || {
        seen = read_maildir(maildir);
        seen.len() >= count
    });
    if !done {
        let summary: Vec<String> = seen
            .iter()
            .map(|message| format!("{} -> {:?}", message.mail_from, message.rcpt_tos))
            .collect();
        panic!(
            "expected {count} message(s) in {} within {timeout:?}, got {}: {summary:?}",
            maildir.display(),
            seen.len()
        );
    }
    seen
}

/// The venv interpreter `./scripts/test.sh` installs aiosmtpd into.
fn peer_python() -> PathBuf {
    let python = repo_root().join(".peers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test.sh (or ./scripts/test.sh --install-only) first",
        python.display()
    );
    python
}

/// Starts a peer script until it prints its ready line, retrying with new ports when
/// the chosen one was taken in between. `command_for` builds the command for a port.
fn start_peer(
    name: &str,
    mut pick_port: impl FnMut() -> u16,
    mut command_for: impl FnMut(u16) -> Command,
    ready_prefix: &str,
) -> (Supervised, u16) {
    let mut errors = Vec::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = pick_port();
        let mut process = Supervised::spawn(name, command_for(port))
            .unwrap_or_else(|error| panic!("{name}: cannot start: {error}"));
        match process.wait_for_stdout_line(READY_TIMEOUT, |line| line.starts_with(ready_prefix)) {
            Ok(_) => return (process, port),
            Err(error) => errors.push(error),
        }
    }
    panic!(
        "{name}: did not start in {PORT_ATTEMPTS} tries:\n{}",
        errors.join("\n")
    );
}

/// The aiosmtpd policy server (`tests/peers/smtp_peer.py`) on 127.0.0.1.
pub struct SmtpPeer {
    /// The Python process.
    process: Supervised,
    /// Its port on 127.0.0.1.
    port: u16,
    /// Holds the maildir; removed on drop.
    dir: TempDir,
    /// Where accepted messages are stored.
    maildir: PathBuf,
}

impl SmtpPeer {
    /// Starts the peer in `accept` mode (the per-recipient policy).
    pub fn start() -> SmtpPeer {
        SmtpPeer::start_with_mode("accept")
    }

    /// Starts the peer in a whole-server mode: `accept`, `accept-no-pipelining` (the
    /// same policy, without PIPELINING in its EHLO reply), `reject-greeting` (554 at
    /// connect), `reject-mail` (550 5.7.1 to MAIL FROM), `defer-mail` (421 to MAIL FROM).
    pub fn start_with_mode(mode: &str) -> SmtpPeer {
        let dir = tempfile::Builder::new()
            .prefix("smtp-peer-")
            .tempdir()
            .expect("creating a temp dir");
        let maildir = dir.path().join("received");
        let script = repo_root().join("tests/peers/smtp_peer.py");
        let python = peer_python();
        let (process, port) = start_peer(
            &format!("smtp-peer {mode}"),
            free_tcp_port,
            |port| {
                let mut command = Command::new(&python);
                // smtp_peer_tls.py imports smtp_peer.py: keep __pycache__ out of the checkout.
                command.env("PYTHONDONTWRITEBYTECODE", "1");
                command
                    .arg(&script)
                    .args(["--port", &port.to_string(), "--mode", mode, "--watch-stdin"])
                    .arg("--maildir")
                    .arg(&maildir);
                command
            },
            "smtp peer listening on ",
        );
        SmtpPeer {
            process,
            port,
            dir,
            maildir,
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The smarthost transport URL, `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The directory accepted messages are stored in.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        read_maildir(&self.maildir)
    }

    /// Waits for at least `count` messages and returns them all; panics after `timeout`.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        wait_for_maildir(&self.maildir, count, timeout)
    }

    /// The peer's process id (a test may SIGSTOP/kill it to simulate an outage).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Makes a self-signed server certificate for `localhost` and `127.0.0.1` in `dir` and
/// returns `(cert.pem, key.pem)`. It is an end-entity cert (CA:FALSE, serverAuth):
/// rustls rejects a CA cert used as a server cert (`CaUsedAsEndEntity`, PEERS.md §1.4).
/// Clients trust it by adding `cert.pem` as a root.
pub fn generate_test_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .output()
        .unwrap_or_else(|error| panic!("running openssl (is it installed?): {error}"));
    assert!(
        output.status.success(),
        "openssl req failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (cert, key)
}

/// The TLS + AUTH variant (`tests/peers/smtp_peer_tls.py`): STARTTLS required on
/// `starttls_port()`, implicit TLS on `implicit_port()` (= +1), AUTH `user`/`pass`,
/// the same per-recipient policy and maildir as [`SmtpPeer`].
pub struct TlsSmtpPeer {
    /// The Python process serving both ports.
    process: Supervised,
    /// The STARTTLS port; the implicit-TLS port is the next one.
    port: u16,
    /// Holds the maildir and the certificate; removed on drop.
    dir: TempDir,
    /// Where accepted messages are stored.
    maildir: PathBuf,
    /// The server certificate (PEM), which clients must trust.
    cert: PathBuf,
}

impl TlsSmtpPeer {
    /// Starts the TLS peer in `accept` mode with a fresh certificate.
    pub fn start() -> TlsSmtpPeer {
        TlsSmtpPeer::start_with_mode("accept")
    }

    /// Starts the TLS peer in a whole-server mode (see [`SmtpPeer::start_with_mode`]).
    pub fn start_with_mode(mode: &str) -> TlsSmtpPeer {
        let dir = tempfile::Builder::new()
            .prefix("smtp-tls-peer-")
            .tempdir()
            .expect("creating a temp dir");
        let maildir = dir.path().join("received");
        let (cert, key) = generate_test_cert(dir.path());
        let script = repo_root().join("tests/peers/smtp_peer_tls.py");
        let python = peer_python();
        let (process, port) = start_peer(
            &format!("smtp-tls-peer {mode}"),
            free_tcp_port_pair,
            |port| {
                let mut command = Command::new(&python);
                // smtp_peer_tls.py imports smtp_peer.py: keep __pycache__ out of the checkout.
                command.env("PYTHONDONTWRITEBYTECODE", "1");
                command
                    .arg(&script)
                    .args(["--port", &port.to_string(), "--mode", mode, "--watch-stdin"])
                    .args(["--user", TLS_PEER_USER, "--password", TLS_PEER_PASSWORD])
                    .arg("--maildir")
                    .arg(&maildir)
                    .arg("--cert")
                    .arg(&cert)
                    .arg("--key")
                    .arg(&key);
                command
            },
            "smtp tls peer listening on ",
        );
        TlsSmtpPeer {
            process,
            port,
            dir,
            maildir,
            cert,
        }
    }

    /// The STARTTLS port on 127.0.0.1.
    pub fn starttls_port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS (smtps) port on 127.0.0.1.
    pub fn implicit_port(&self) -> u16 {
        self.port + 1
    }

    /// `smtp://user:pass@127.0.0.1:PORT?tls=starttls` (the cert names 127.0.0.1 too).
    pub fn starttls_url(&self) -> String {
        format!(
            "smtp://{TLS_PEER_USER}:{TLS_PEER_PASSWORD}@127.0.0.1:{}?tls=starttls",
            self.starttls_port()
        )
    }

    /// `smtps://user:pass@127.0.0.1:PORT+1`.
    pub fn smtps_url(&self) -> String {
        format!(
            "smtps://{TLS_PEER_USER}:{TLS_PEER_PASSWORD}@127.0.0.1:{}",
            self.implicit_port()
        )
    }

    /// The certificate to trust (`MAILTRAIL_SMTP_CA`).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The AUTH user name the peer accepts.
    pub fn user(&self) -> &'static str {
        TLS_PEER_USER
    }

    /// The AUTH password the peer accepts.
    pub fn password(&self) -> &'static str {
        TLS_PEER_PASSWORD
    }

    /// The directory accepted messages are stored in.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        read_maildir(&self.maildir)
    }

    /// Waits for at least `count` messages and returns them all; panics after `timeout`.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        wait_for_maildir(&self.maildir, count, timeout)
    }
}

/// Postfix's `smtp-sink`: accepts everything as fast as it can and stores nothing. The
/// ceiling for the delivery benchmark (SPEC §8).
pub struct SmtpSink {
    /// The smtp-sink process.
    process: Supervised,
    /// Its port on 127.0.0.1.
    port: u16,
}

impl SmtpSink {
    /// Starts `smtp-sink 127.0.0.1:PORT 1024`.
    pub fn start() -> SmtpSink {
        SmtpSink::start_with_args(&[])
    }

    /// Starts smtp-sink with extra options before the address (e.g. `["-c"]` for a
    /// running count, `["-f", "rcpt", "-B", "550 5.1.1 user unknown"]` to refuse all).
    pub fn start_with_args(extra: &[&str]) -> SmtpSink {
        let binary = system_binary("smtp-sink");
        let mut errors = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_tcp_port();
            let mut command = Command::new(&binary);
            // As root smtp-sink refuses to run without a user to switch to; as anyone
            // else it cannot switch (PEERS.md §2.3).
            if is_root() {
                command.args(["-u", "nobody"]);
            }
            command
                .args(extra)
                .arg(format!("127.0.0.1:{port}"))
                .arg("1024");
            let mut process = Supervised::spawn("smtp-sink", command).unwrap_or_else(|error| {
                panic!(
                    "cannot start {} (run ./scripts/test.sh): {error}",
                    binary.display()
                )
            });
            // smtp-sink prints nothing when ready: wait for its greeting instead.
            let greeted = super::wait_until(READY_TIMEOUT, || {
                !process.is_running() || read_greeting(port).is_some_and(|l| l.starts_with("220"))
            });
            if greeted && process.is_running() {
                return SmtpSink { process, port };
            }
            errors.push(format!(
                "port {port}: not ready{}",
                process.stderr_tail_text()
            ));
        }
        panic!(
            "smtp-sink did not start in {PORT_ATTEMPTS} tries:\n{}",
            errors.join("\n")
        );
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The smarthost transport URL, `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

/// Connects to 127.0.0.1:`port` and returns the first line the server sends.
fn read_greeting(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}
