//! The real `mailtrail serve` binary as a test fixture: a fresh temp dir as its current
//! dir (so `./data/...` defaults land there), test settings through `MAILTRAIL_*`, a
//! blocking HTTP client that sends the admin token, and one-shot CLI runs against the
//! same database.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;
use tempfile::TempDir;

use super::http::{Api, Resp};
use super::process::Supervised;
use super::{DnsPeer, SmtpPeer, TlsSmtpPeer};

/// The admin API token every `App` accepts (`MAILTRAIL_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The password of the `admin` user created on first start (`MAILTRAIL_ADMIN_PASSWORD`).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// How long the binary may take to print its "listening" line (a debug build, 2 cores,
/// several tests starting apps at once).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `terminate` waits after SIGTERM before it kills and complains.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The line `mailtrail serve` prints on stdout once it accepts connections (SPEC §7,
/// agreed with the binary's authors); the base URL follows it.
const READY_PREFIX: &str = "mailtrail: listening on ";

/// Settings every test app starts with; a builder's `env` overrides any of them.
fn default_env() -> Vec<(String, Option<String>)> {
    [
        ("MAILTRAIL_LISTEN", "127.0.0.1:0"),
        ("MAILTRAIL_ADMIN_TOKEN", ADMIN_TOKEN),
        ("MAILTRAIL_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("MAILTRAIL_POLL_INTERVAL", "100ms"),
        ("MAILTRAIL_RETRY_SCHEDULE", "1s,1s,1s"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), Some(value.to_owned())))
    .collect()
}

/// Configures an [`App`] before it starts: extra environment, extra `serve` arguments,
/// files in its directory.
pub struct AppBuilder {
    /// Prefix of the app's forwarded log lines, e.g. `mailtrail` or `worker-b`.
    name: String,
    /// `(key, Some(value))` sets, `(key, None)` removes; later entries win.
    env: Vec<(String, Option<String>)>,
    /// Arguments after `serve`, e.g. `--demo`.
    args: Vec<String>,
    /// Files written into the app's directory before it starts (path relative to it).
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl AppBuilder {
    /// Sets an environment variable for the server and for `App::cli` runs.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> AppBuilder {
        self.env.push((key.to_owned(), Some(value.into())));
        self
    }

    /// Removes a variable, including one of the defaults (e.g. `MAILTRAIL_ADMIN_PASSWORD`).
    pub fn env_remove(mut self, key: &str) -> AppBuilder {
        self.env.push((key.to_owned(), None));
        self
    }

    /// Adds an argument after `serve` (e.g. `--demo`).
    pub fn arg(mut self, arg: impl Into<String>) -> AppBuilder {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments after `serve`.
    pub fn args<I, S>(mut self, args: I) -> AppBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Names the app in forwarded log lines (useful with two apps in one test).
    pub fn name(mut self, name: &str) -> AppBuilder {
        self.name = name.to_owned();
        self
    }

    /// Writes a file (e.g. `mailtrail.toml`) into the app's directory before it starts.
    pub fn file(mut self, relative_path: &str, contents: impl Into<Vec<u8>>) -> AppBuilder {
        self.files
            .push((PathBuf::from(relative_path), contents.into()));
        self
    }

    /// Sets `MAILTRAIL_TRANSPORT`.
    pub fn transport(self, transport: impl Into<String>) -> AppBuilder {
        self.env("MAILTRAIL_TRANSPORT", transport)
    }

    /// Relays through `peer` as a plain smarthost (`smtp://127.0.0.1:PORT`).
    pub fn smarthost(self, peer: &SmtpPeer) -> AppBuilder {
        self.transport(peer.url())
    }

    /// Relays through the TLS peer with AUTH, by STARTTLS (`starttls`) or implicit TLS,
    /// trusting the peer's certificate through `MAILTRAIL_SMTP_CA`.
    pub fn tls_smarthost(self, peer: &TlsSmtpPeer, starttls: bool) -> AppBuilder {
        let url = if starttls {
            peer.starttls_url()
        } else {
            peer.smtps_url()
        };
        self.transport(url)
            .env("MAILTRAIL_SMTP_CA", peer.cert_path().display().to_string())
    }

    /// Delivers directly to MX hosts found through `dns`, on `mx`'s port (the test MX
    /// hosts resolve to 127.0.0.x; `mx` listens on 127.0.0.1).
    pub fn direct(self, dns: &DnsPeer, mx: &SmtpPeer) -> AppBuilder {
        self.transport("direct")
            .env("MAILTRAIL_DNS", dns.addr())
            .env("MAILTRAIL_MX_PORT", mx.port().to_string())
    }

    /// Creates the directory and starts `mailtrail serve`; panics if it is not ready
    /// (listening and `/healthz` answering 200) within 30 s.
    pub fn start(self) -> App {
        let mut app = self.build_stopped();
        app.start_server();
        app
    }

    /// Creates the directory and settings but starts nothing, for tests that run CLI
    /// commands first (`app.cli(..)`) and start the server later (`app.restart()`).
    pub fn build_stopped(self) -> App {
        let dir = tempfile::Builder::new()
            .prefix("mailtrail-test-")
            .tempdir()
            .expect("creating a temp dir");
        for (relative_path, contents) in &self.files {
            let path = dir.path().join(relative_path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("creating a parent dir in the app dir");
            }
            std::fs::write(&path, contents).expect("writing a file into the app dir");
        }
        let mut env = default_env();
        // SQLite in the app's dir, or a fresh database when this run tests PostgreSQL.
        let db = super::pg::fresh_database()
            .unwrap_or_else(|| dir.path().join("mailtrail.db").display().to_string());
        env.push(("MAILTRAIL_DB".to_owned(), Some(db)));
        // The builder's own entries come last, so they win.
        env.extend(self.env);
        let http = Client::builder()
            // A proxy from the environment must never see 127.0.0.1 requests.
            .no_proxy()
            // Tests look at redirects themselves (login answers 303, for instance).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building a reqwest client");
        App {
            name: self.name,
            dir: Some(dir),
            env,
            args: self.args,
            server: None,
            api: Api::new(http, ADMIN_TOKEN),
        }
    }
}

/// A running `mailtrail serve` (or one stopped by the test), killed on `Drop`.
pub struct App {
    /// Prefix of forwarded log lines.
    name: String,
    /// The temp dir: current dir of the server and of CLI runs, holds the database.
    /// An `Option` only so `Drop` can keep it when `MAILTRAIL_KEEP_TEST_DIRS` is set.
    dir: Option<TempDir>,
    /// The environment of the server and of CLI runs (`None` removes the variable).
    env: Vec<(String, Option<String>)>,
    /// Arguments after `serve`.
    args: Vec<String>,
    /// The server process, while it runs.
    server: Option<Supervised>,
    /// The HTTP client for the current server, with the admin token.
    api: Api,
}

impl App {
    /// Starts an app with the default test settings.
    pub fn start() -> App {
        App::builder().start()
    }

    /// A builder for an app with extra settings.
    pub fn builder() -> AppBuilder {
        AppBuilder {
            name: "mailtrail".to_owned(),
            env: Vec::new(),
            args: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The path of the binary under test.
    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_mailtrail")
    }

    /// Starts `mailtrail serve` in the app's dir and waits until it is ready.
    pub fn start_server(&mut self) {
        assert!(
            self.server.is_none(),
            "{}: the server is already running",
            self.name
        );
        let mut command = self.command();
        command.arg("serve").args(&self.args);
        let mut server = Supervised::spawn(&self.name, command)
            .unwrap_or_else(|error| panic!("starting {}: {error}", App::binary()));
        let line = server
            .wait_for_stdout_line(START_TIMEOUT, |line| line.starts_with(READY_PREFIX))
            .unwrap_or_else(|error| panic!("{error}"));
        let base_url = line[READY_PREFIX.len()..].trim().trim_end_matches('/');
        self.api.set_base_url(base_url);
        self.server = Some(server);
        self.wait_healthy();
    }

    /// Waits until `GET /healthz` answers 200, failing early if the server exits.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.url("/healthz");
        let mut last: String;
        loop {
            match self.api.http().get(&url).send() {
                Ok(response) if response.status().as_u16() == 200 => return,
                Ok(response) => last = format!("HTTP {}", response.status()),
                Err(error) => last = error.to_string(),
            }
            let server = self.server.as_mut().expect("set by start_server");
            if let Some(status) = server.try_exit_status() {
                let tail = server.stderr_tail_text();
                panic!(
                    "{}: exited ({status}) before /healthz answered 200{tail}",
                    self.name
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: /healthz not 200 after {START_TIMEOUT:?}: {last}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `Command` for the binary with the app's environment and current dir.
    fn command(&self) -> Command {
        let mut command = Command::new(App::binary());
        command.current_dir(self.dir());
        // Settings of the developer's shell must not leak into a test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MAILTRAIL_") {
                command.env_remove(key);
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// Every log line the running server wrote to stderr so far.
    pub fn server_log(&self) -> Vec<String> {
        self.server
            .as_ref()
            .map(|s| s.stderr_lines())
            .unwrap_or_default()
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`. Panics if the server never started.
    pub fn base_url(&self) -> &str {
        let base_url = self.api.base_url();
        assert!(
            !base_url.is_empty(),
            "{}: the server was never started",
            self.name
        );
        base_url
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        self.api.url(path)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        let base_url = self.base_url();
        base_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {base_url}"))
    }

    /// Starts `mailtrail worker` with the app's environment and dir (several workers
    /// and servers may share one PostgreSQL database); killed when the result drops.
    pub fn spawn_worker(&self, name: &str) -> Supervised {
        let mut command = self.command();
        command.arg("worker");
        Supervised::spawn(name, command)
            .unwrap_or_else(|error| panic!("starting {} worker: {error}", App::binary()))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Supervised::pid)
    }

    /// The client with the admin token.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// A client that sends `Authorization: Bearer {token}` instead.
    pub fn with_token(&self, token: &str) -> Api {
        self.api.with_token(token)
    }

    /// A client that sends no `Authorization` header.
    pub fn anonymous(&self) -> Api {
        self.api.anonymous()
    }

    /// `GET path` with the admin token.
    pub fn get(&self, path: &str) -> Resp {
        self.api.get(path)
    }

    /// `POST path` with a JSON body and the admin token.
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.api.post_json(path, body)
    }

    /// `PUT path` with a JSON body and the admin token.
    pub fn put_json(&self, path: &str, body: &Value) -> Resp {
        self.api.put_json(path, body)
    }

    /// `PATCH path` with a JSON body and the admin token.
    pub fn patch_json(&self, path: &str, body: &Value) -> Resp {
        self.api.patch_json(path, body)
    }

    /// `DELETE path` with the admin token.
    pub fn delete(&self, path: &str) -> Resp {
        self.api.delete(path)
    }

    /// `POST path` with a raw body of `content_type` (a DSN, a CSV file) and the token.
    pub fn post_raw(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.api.post_raw(path, content_type, body)
    }

    /// A request with the admin token, for headers the helpers do not cover
    /// (`Idempotency-Key`, `Accept: text/csv`); send it with [`App::send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    /// Sends a request built by [`App::request`].
    pub fn send(&self, request: RequestBuilder) -> Resp {
        self.api.send(request)
    }

    /// Polls `GET /api/v1/decisions/{id}` until its `status` is `status`; returns the
    /// decision, or panics with the last one seen after `timeout`.
    pub fn wait_for_decision_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let found = super::wait_for(timeout, || {
            last = self.get(&format!("/api/v1/decisions/{id}")).json();
            (last["status"] == status).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!("decision {id} not {status:?} after {timeout:?}; last seen: {last:#}")
        })
    }

    /// Kills the server with SIGKILL (no shutdown code runs) and reaps it.
    pub fn kill_hard(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Sends SIGTERM and waits up to 10 s for a clean exit; returns its status. Panics
    /// (after a SIGKILL) if the server does not stop in time.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut server = self
            .server
            .take()
            .unwrap_or_else(|| panic!("{}: terminate() but no server runs", self.name));
        match server.terminate(TERMINATE_TIMEOUT) {
            Some(status) => status,
            None => {
                server.kill();
                panic!(
                    "{}: still running {TERMINATE_TIMEOUT:?} after SIGTERM",
                    self.name
                );
            }
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(Supervised::is_running)
    }

    /// Stops the server if it runs (SIGTERM) and starts it again on the same dir and
    /// database; the port may change, `url()` follows it.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.server = None;
        self.start_server();
    }

    /// The app's directory (current dir of the server and of CLI runs).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }

    /// The database (`MAILTRAIL_DB`): a SQLite path, or a PostgreSQL URL.
    pub fn db(&self) -> String {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == "MAILTRAIL_DB")
            .and_then(|(_, value)| value.clone())
            .unwrap_or_default()
    }

    /// Whether this app's database is PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.db().starts_with("postgres")
    }

    /// Runs `sql` (no parameters) on the app's database, whichever engine it is, for a
    /// test that ages rows; answers the rows changed.
    pub fn db_execute(&self, sql: &str) -> u64 {
        if self.on_postgres() {
            let mut client = postgres::Client::connect(&self.db(), postgres::NoTls)
                .expect("connecting to the app's PostgreSQL database");
            client.execute(sql, &[]).expect("the statement runs")
        } else {
            rusqlite::Connection::open(self.db_path())
                .expect("opening the app's SQLite database")
                .execute(sql, [])
                .expect("the statement runs") as u64
        }
    }

    /// The first column of the first row of `sql` as an integer, whichever engine.
    pub fn db_query_i64(&self, sql: &str) -> i64 {
        if self.on_postgres() {
            let mut client = postgres::Client::connect(&self.db(), postgres::NoTls)
                .expect("connecting to the app's PostgreSQL database");
            client.query_one(sql, &[]).expect("a row").get::<_, i64>(0)
        } else {
            rusqlite::Connection::open(self.db_path())
                .expect("opening the app's SQLite database")
                .query_row(sql, [], |r| r.get(0))
                .expect("a row")
        }
    }

    /// The SQLite database file (meaningful only when not [`App::on_postgres`]).
    pub fn db_path(&self) -> PathBuf {
        self.dir().join("mailtrail.db")
    }

    /// Where the default `file:` transport writes messages (`./data/outgoing`).
    pub fn outgoing_dir(&self) -> PathBuf {
        self.dir().join("data").join("outgoing")
    }

    /// The `.eml` files the `file:` transport wrote so far, oldest name first.
    pub fn outgoing_messages(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.outgoing_dir()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        paths.sort();
        paths
    }

    /// Runs the binary once as a CLI command (`["why", "a@example.test"]`) with the
    /// app's environment and dir; stdin is empty.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    /// Like [`App::cli`], with `stdin` as standard input (`user add` reads a password).
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = self.command();
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("running {} {args:?}: {error}", App::binary()));
        let mut input = child.stdin.take().expect("stdin was piped above");
        let stdin = stdin.as_bytes().to_vec();
        // Written from a thread so a child that answers before reading cannot deadlock us.
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = input.write_all(&stdin);
        });
        let output = child
            .wait_with_output()
            .unwrap_or_else(|error| panic!("waiting for {args:?}: {error}"));
        let _ = writer.join();
        eprintln!(
            "[{} cli] {args:?} -> {}\n--- stdout\n{}--- stderr\n{}",
            self.name,
            output.status,
            output.stdout_text(),
            output.stderr_text()
        );
        output
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill_hard();
        if std::env::var_os("MAILTRAIL_KEEP_TEST_DIRS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("[{}] kept test dir {}", self.name, dir.keep().display());
        }
    }
}

/// Readable access to a CLI run's [`Output`].
pub trait OutputExt {
    /// The exit code; -1 when a signal ended the process.
    fn code(&self) -> i32;
    /// Standard output, lossy UTF-8.
    fn stdout_text(&self) -> String;
    /// Standard error, lossy UTF-8.
    fn stderr_text(&self) -> String;
}

impl OutputExt for Output {
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
