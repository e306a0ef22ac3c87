//! The DNS peer: dnsmasq on 127.0.0.1 (UDP and TCP) serving the test zone of
//! `tests/peers/dnsmasq.conf.template`, for `MAILTRAIL_DNS` in direct-delivery tests.
//!
//! Names served (everything else is NXDOMAIN):
//! - `example.test` MX 10 `mx.example.test` (A 127.0.0.1)
//! - `aonly.test` A 127.0.0.1, no MX (implicit MX)
//! - `nullmx.test` MX 0 `.`; `nullmx-web.test` MX 0 `.` plus A 127.0.0.1
//! - `twomx.test` MX 10 → 127.0.0.2 (nothing listens), MX 20 → 127.0.0.1
//! - `mxdown.test` MX 10 → 127.0.0.3 (connection refused)
//! - `tempfail.test` never answered (resolver timeout)

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::Supervised;
use super::{free_tcp_udp_port, is_root, repo_root, system_binary};

/// How long dnsmasq may take to answer its first query (it starts in well under 1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries with a new port when the chosen one was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;
/// What the up-check query (`example.test MX`, `dig +short`) prints.
const READY_ANSWER: &str = "10 mx.example.test.";

/// A running dnsmasq serving the test zone, killed on `Drop`.
pub struct DnsPeer {
    /// The dnsmasq process (in the foreground, logging to stderr).
    process: Supervised,
    /// Its port on 127.0.0.1, UDP and TCP.
    port: u16,
    /// Holds the generated config; removed on drop.
    dir: TempDir,
}

impl DnsPeer {
    /// Starts dnsmasq with the standard test zone.
    pub fn start() -> DnsPeer {
        DnsPeer::start_with(&[])
    }

    /// Starts dnsmasq with the standard test zone plus `extra` config lines, e.g.
    /// `"mx-host=other.test,mx.example.test,5"`.
    pub fn start_with(extra: &[&str]) -> DnsPeer {
        let template_path = repo_root().join("tests/peers/dnsmasq.conf.template");
        let template = std::fs::read_to_string(&template_path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", template_path.display()));
        let dir = tempfile::Builder::new()
            .prefix("dns-peer-")
            .tempdir()
            .expect("creating a temp dir");
        let binary = system_binary("dnsmasq");
        let mut errors = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_tcp_udp_port();
            let mut config = template.replace("@PORT@", &port.to_string());
            for line in extra {
                config.push_str(line);
                config.push('\n');
            }
            let config_path: PathBuf = dir.path().join("dnsmasq.conf");
            std::fs::write(&config_path, config).expect("writing the dnsmasq config");

            let mut command = Command::new(&binary);
            command
                .arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", config_path.display()))
                .arg("--pid-file=")
                .arg("--log-facility=-")
                .arg("--log-queries");
            // Only root can (and, for safety, should) drop privileges.
            if is_root() {
                command.args(["--user=nobody", "--group=nogroup"]);
            }
            let mut process = Supervised::spawn("dnsmasq", command).unwrap_or_else(|error| {
                panic!(
                    "cannot start {} (run ./scripts/test.sh): {error}",
                    binary.display()
                )
            });
            let answered = super::wait_until(READY_TIMEOUT, || {
                !process.is_running()
                    || dig_short(port, "example.test", "MX").trim() == READY_ANSWER
            });
            if answered && process.is_running() {
                return DnsPeer { process, port, dir };
            }
            errors.push(format!(
                "port {port}: not ready{}",
                process.stderr_tail_text()
            ));
        }
        panic!(
            "dnsmasq did not start in {PORT_ATTEMPTS} tries:\n{}",
            errors.join("\n")
        );
    }

    /// The port on 127.0.0.1 (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the form `MAILTRAIL_DNS` takes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `dig +short NAME TYPE` against this server (one try, 1 s timeout).
    pub fn dig(&self, name: &str, record_type: &str) -> String {
        dig_short(self.port, name, record_type)
    }

    /// The response status of `NAME TYPE` (`NOERROR`, `NXDOMAIN`, ...), or `timeout`.
    pub fn status(&self, name: &str, record_type: &str) -> String {
        let output = dig(self.port, &["+noall", "+comments", name, record_type]);
        output
            .split("status: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .map_or_else(|| "timeout".to_owned(), str::to_owned)
    }
}

/// `dig +short` output (empty when dig fails or times out).
fn dig_short(port: u16, name: &str, record_type: &str) -> String {
    dig(port, &["+short", name, record_type])
}

/// Runs `dig @127.0.0.1 -p PORT +tries=1 +time=1 ARGS...` and returns its stdout.
fn dig(port: u16, args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=1"])
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running dig (bind9-dnsutils, ./scripts/test.sh): {error}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
