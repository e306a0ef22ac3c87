//! The server under test: this very binary, run as `mailtrail serve` in a scratch
//! directory, so the benchmark measures what users run (the HTTP stack, the writer
//! thread, the real database file) and reads the server's memory from the outside.
//!
//! Both the process and the directory are cleaned up on `Drop`, so an error or a
//! panic half-way through a run leaves no server behind.

use super::client::{Connection, request};
use anyhow::{Context, anyhow, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A scratch directory under the system's temp dir, removed on `Drop`.
pub struct Workdir {
    /// The directory.
    pub path: PathBuf,
}

impl Workdir {
    /// Creates `mailtrail-bench-<pid>-<random>-<label>`.
    pub fn new(label: &str) -> anyhow::Result<Workdir> {
        let path = std::env::temp_dir().join(format!(
            "mailtrail-bench-{}-{}-{label}",
            std::process::id(),
            &crate::store::new_secret("")[..8]
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Workdir { path })
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How to run the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// The shipped configuration: concurrent writes share one transaction.
    Grouped,
    /// The baseline: one transaction, and one fsync, per request.
    PerRequest,
}

/// A running `mailtrail serve`, killed on `Drop`.
pub struct Server {
    /// The process.
    child: Child,
    /// Its process id, for `/proc/<pid>/status`.
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin API token it accepts.
    pub token: String,
    /// The password of its `admin` dashboard user.
    pub password: String,
}

impl Server {
    /// Starts the server on `db` (created if missing) with its files in `dir`, and
    /// waits until it prints the address it listens on.
    pub async fn start(
        dir: &Workdir,
        db: impl AsRef<std::ffi::OsStr>,
        commit: Commit,
    ) -> anyhow::Result<Server> {
        Server::start_with(dir, db, commit, &[]).await
    }

    /// [`Server::start`] with more `MAILTRAIL_*` settings, e.g. a retention period.
    pub async fn start_with(
        dir: &Workdir,
        db: impl AsRef<std::ffi::OsStr>,
        commit: Commit,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("cannot find the mailtrail binary")?;
        let token = crate::store::new_secret("bench-");
        let password = crate::store::new_secret("")[..24].to_owned();
        let stderr_path = dir.join("server.stderr");
        let stderr =
            std::fs::File::create(&stderr_path).context("cannot create the server's log file")?;
        let mut command = Command::new(exe);
        // Only our settings: a MAILTRAIL_* of the calling shell must not change the
        // server under test, and the scratch directory has no mailtrail.toml.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MAILTRAIL_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .current_dir(&dir.path)
            .env("MAILTRAIL_LISTEN", "127.0.0.1:0")
            .env("MAILTRAIL_DB", db)
            .env("MAILTRAIL_ADMIN_TOKEN", &token)
            .env("MAILTRAIL_ADMIN_PASSWORD", &password)
            .env(
                "MAILTRAIL_TRANSPORT",
                format!("file:{}", dir.join("out").display()),
            )
            .env("MAILTRAIL_WORKER", "false")
            .env("MAILTRAIL_LOG", "warn")
            .env(
                "MAILTRAIL_GROUP_COMMIT",
                if commit == Commit::Grouped {
                    "true"
                } else {
                    "false"
                },
            )
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot start `mailtrail serve`")?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited at once"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the server"))?;
        let mut lines = BufReader::new(stdout).lines();
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("mailtrail: listening on http://") {
                    return Ok(Some(url.trim().parse::<SocketAddr>()?));
                }
            }
            anyhow::Ok(None)
        })
        .await;
        let addr = match waited {
            Ok(Ok(Some(addr))) => addr,
            Ok(Ok(None)) => bail!(
                "the server stopped before listening: {}",
                tail(&stderr_path)
            ),
            Ok(Err(e)) => bail!(
                "cannot read the server's address: {e}: {}",
                tail(&stderr_path)
            ),
            Err(_) => bail!(
                "the server did not listen within 60 s: {}",
                tail(&stderr_path)
            ),
        };
        // Keep reading stdout so a later line never blocks the server on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            child,
            pid,
            addr,
            token,
            password,
        })
    }

    /// The `Authorization` header value for the admin token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Creates (or resets) project `key` through the API, as an admin would.
    pub async fn put_project(&self, key: &str, name: &str) -> anyhow::Result<()> {
        let mut connection = Connection::open(self.addr).await?;
        let body = serde_json::json!({ "name": name }).to_string();
        let bearer = self.bearer();
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let answer = connection
            .send(&request(
                "PUT",
                &format!("/api/v1/projects/{key}"),
                &headers,
                body.as_bytes(),
            ))
            .await?;
        if !(200..300).contains(&answer.status) {
            bail!(
                "PUT /api/v1/projects/{key} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        Ok(())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's resident memory now, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: the database is a throwaway and WAL survives it (SPEC §8 durability).
        let _ = self.child.start_kill();
    }
}

/// `VmRSS` of process `pid`, in KiB; `None` where `/proc` is not available.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The last lines of the server's log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        "(no output on stderr)".into()
    } else {
        tail
    }
}
