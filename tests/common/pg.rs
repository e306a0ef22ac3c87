//! PostgreSQL for the integration tests (SPEC §10): when `TEST_MAILTRAIL_PG` names a
//! server — the throw-away cluster `./scripts/test.sh` starts for its PostgreSQL pass —
//! every [`App`](super::App) gets a database of its own on it; otherwise apps use SQLite.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable naming the server, as `postgres://user@host:port` (no database).
pub const SERVER_VAR: &str = "TEST_MAILTRAIL_PG";

/// The server's base URL, when this run tests PostgreSQL.
pub fn server() -> Option<String> {
    std::env::var(SERVER_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// Whether this run tests PostgreSQL.
pub fn enabled() -> bool {
    server().is_some()
}

/// Creates an empty database and answers its URL; `None` when this run tests SQLite.
pub fn fresh_database() -> Option<String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = server()?;
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL at {base}: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    Some(format!("{base}/{name}"))
}

/// A PostgreSQL cluster of one test's own, for a test that stops and starts its server
/// (the shared one serves every other test meanwhile). Stopped and removed on `Drop`.
pub struct PrivateServer {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivateServer {
    /// Creates and starts a cluster on a free port (as the `postgres` user when root,
    /// since PostgreSQL refuses to run as root).
    pub fn start() -> PrivateServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed by ./scripts/test.sh")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::Builder::new()
            .prefix("mailtrail-pg-")
            .tempdir()
            .expect("a temp dir");
        let server = PrivateServer {
            port: super::free_tcp_port(),
            dir,
            bin,
        };
        server.as_postgres(&format!(
            "{}/initdb -D {}/data -A trust -U mt --no-sync >/dev/null",
            server.bin.display(),
            server.dir.path().display()
        ));
        server.resume();
        server
    }

    /// Runs `command` as the `postgres` user (or as ourselves when not root).
    fn run_as_postgres(&self, command: &str) -> bool {
        let status = if super::is_root() {
            let _ = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(self.dir.path())
                .status();
            std::process::Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", command])
                .status()
        } else {
            std::process::Command::new("sh")
                .args(["-c", command])
                .status()
        };
        status.is_ok_and(|s| s.success())
    }

    fn as_postgres(&self, command: &str) {
        assert!(self.run_as_postgres(command), "`{command}` failed");
    }

    /// Starts the (stopped) server again, on the same port and data.
    pub fn resume(&self) {
        let d = self.dir.path().display();
        self.as_postgres(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/log -w -o '-p {} -k {d} -c listen_addresses=127.0.0.1' start >/dev/null",
            self.bin.display(),
            self.port
        ));
    }

    /// Stops the server at once (as a crash or a failover would).
    pub fn halt(&self) {
        let d = self.dir.path().display();
        self.as_postgres(&format!(
            "{}/pg_ctl -D {d}/data -m immediate stop >/dev/null",
            self.bin.display()
        ));
    }

    /// A new empty database on this server, as a URL.
    pub fn database(&self, name: &str) -> String {
        let base = format!("postgres://mt@127.0.0.1:{}", self.port);
        let mut admin = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls)
            .expect("connecting to the private PostgreSQL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating a database");
        format!("{base}/{name}")
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let d = self.dir.path().display();
        self.run_as_postgres(&format!(
            "{}/pg_ctl -D {d}/data -m immediate stop >/dev/null 2>&1",
            self.bin.display()
        ));
    }
}
