//! A real Postfix (Debian's `postfix` package) as a test MTA: its own configuration and
//! queue in a temp dir, listening on one loopback port, logging to stdout, with no
//! chroot (`../shared/PEERS.md` §7.5). It relays everything to a `relayhost` and routes
//! chosen domains elsewhere (`transport_maps`); the bounces it writes itself go back to
//! the envelope sender like any other mail, so a test can watch a real MTA's own
//! bounce come home.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::Supervised;
use super::{free_tcp_port, wait_until};

/// Postfix's daemons, as Debian installs them.
const SBIN: &str = "/usr/lib/postfix/sbin";

/// A running Postfix `master` with its own config dir, killed (SIGTERM) on `Drop`.
pub struct PostfixPeer {
    process: Supervised,
    port: u16,
    _dir: TempDir,
}

impl PostfixPeer {
    /// Starts Postfix on a free loopback port: mail for a domain of `routes` goes to
    /// its `127.0.0.1` port, everything else to `relayhost` on `127.0.0.1`.
    pub fn start(relayhost: u16, routes: &[(&str, u16)]) -> PostfixPeer {
        assert!(
            Path::new(SBIN).join("master").exists(),
            "Postfix is not installed: run ./scripts/test.sh (it installs the postfix package)"
        );
        let dir = tempfile::Builder::new()
            .prefix("postfix-peer-")
            .tempdir()
            .expect("creating a temp dir");
        let root = dir.path();
        // The postfix user must reach the queue: mkdtemp's 0700 stops it.
        run(Command::new("chmod").arg("755").arg(root));
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir(root.join(sub)).expect("creating a postfix dir");
        }
        run(Command::new("chown").arg("postfix").arg(root.join("data")));
        let conf = root.join("conf");
        let port = free_tcp_port();
        let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("Debian's master.cf");
        let master: String = master
            .lines()
            .map(|line| {
                if line.starts_with("smtp ") && line.contains(" inet ") {
                    format!("127.0.0.1:{port} inet n - n - - smtpd")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(conf.join("master.cf"), master + "\n").expect("writing master.cf");
        run(Command::new("cp")
            .arg("-r")
            .arg("/etc/postfix/dynamicmaps.cf")
            .arg("/etc/postfix/dynamicmaps.cf.d")
            .arg(&conf));
        let routes: Vec<String> = routes
            .iter()
            .map(|(domain, port)| format!("{domain}=smtp:[127.0.0.1]:{port}"))
            .collect();
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = mta.test\n\
             mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost = [127.0.0.1]:{relayhost}\n\
             transport_maps = inline:{{ {routes} }}\n\
             maillog_file = /dev/stdout\n\
             delay_warning_time = 0\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             smtp_tls_security_level = none\n",
            queue = root.join("queue").display(),
            data = root.join("data").display(),
            routes = routes.join(", "),
        );
        std::fs::write(conf.join("main.cf"), main).expect("writing main.cf");
        run(Command::new(Path::new(SBIN).join("post-install"))
            .arg(format!("config_directory={}", conf.display()))
            .arg("meta_directory=/etc/postfix")
            .arg("create-missing"));
        // No daemon chroots into the temp queue (it holds none of /etc's files).
        run(Command::new("postconf")
            .arg("-c")
            .arg(&conf)
            .args(["-F", "*/*/chroot = n"]));
        let mut command = Command::new(Path::new(SBIN).join("master"));
        command.arg("-c").arg(&conf).arg("-d");
        let process = Supervised::spawn("postfix", command).expect("starting postfix master");
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "postfix did not listen on 127.0.0.1:{port}"
        );
        PostfixPeer {
            process,
            port,
            _dir: dir,
        }
    }

    /// Its SMTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT`, a smarthost transport URL for mailtrail.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

impl Drop for PostfixPeer {
    fn drop(&mut self) {
        // SIGTERM lets master stop its children; `Supervised` kills whatever is left.
        let _ = self.process.terminate(Duration::from_secs(5));
    }
}

/// Runs a set-up command and panics with its output when it fails.
fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
