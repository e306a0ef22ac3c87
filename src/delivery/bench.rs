//! `mailtrail bench delivery` (issue 4): messages per second from `queued` to `sent`
//! through the smarthost transport into Postfix's `smtp-sink`, every status change
//! committed durably, against two baselines measured in the same run:
//! - a naive worker: one message at a time, a new connection for each, one commit per
//!   status change (lease, then result);
//! - the sink's raw acceptance rate, fed by Postfix's `smtp-source` with reused
//!   connections (`-d -s 20`).

use super::classify::{Stage, TryEnd};
use super::render;
use super::schedule::RetryPolicy;
use super::smtp::{self, Target};
use super::transport::Attempt;
use super::worker::attempt_write;
use super::{SmtpTls, TransportSpec};
use crate::app::App;
use crate::bench::scratch::ScratchDb;
use crate::config::Config;
use crate::model::{Channel, ParsedMailbox, ProjectKey, ProjectPatch};
use crate::store::{DbLocation, IngestRequest, Lease, Recipient, Store, StoreOptions, now_micros};
use anyhow::{Context, bail};
use serde::Serialize;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryFigures {
    /// Our worker, messages per second.
    pub msgs_per_sec: f64,
    /// The naive worker, messages per second.
    pub naive_msgs_per_sec: f64,
    /// `smtp-source` into the same sink, messages per second.
    pub sink_raw_msgs_per_sec: f64,
    /// `msgs_per_sec / naive_msgs_per_sec` (target ≥ 10).
    pub ratio_to_naive: f64,
    /// `msgs_per_sec / sink_raw_msgs_per_sec` (target ≥ 0.30).
    pub ratio_to_sink: f64,
    /// Messages sent by our worker in the measured run.
    pub messages: usize,
    /// Concurrent deliveries of our worker.
    pub concurrency: usize,
    /// `--workers N` (N > 1): separate `mailtrail worker` processes on one store.
    pub processes: Option<ProcessFigures>,
    /// Our worker again with DKIM signing on (issue 13).
    pub dkim: DkimFigures,
}

/// Our worker with every message DKIM-signed, against `msgs_per_sec` unsigned (target
/// ≥ 0.7x: signing costs at most 30 %).
#[derive(Clone, Debug, Serialize)]
pub struct DkimFigures {
    /// Ed25519-SHA256, messages per second.
    pub ed25519_msgs_per_sec: f64,
    /// `ed25519_msgs_per_sec / msgs_per_sec`.
    pub ed25519_ratio: f64,
    /// RSA-SHA256 with a 2048-bit key, messages per second.
    pub rsa_msgs_per_sec: f64,
    /// `rsa_msgs_per_sec / msgs_per_sec`.
    pub rsa_ratio: f64,
    /// One Ed25519 signature of a typical message, on one core, microseconds.
    pub ed25519_sign_micros: f64,
    /// One RSA-2048 signature of a typical message, on one core, microseconds: the
    /// machine's cores divided by this bound signed delivery.
    pub rsa_sign_micros: f64,
}

/// Microseconds per DKIM signature of a typical invitation, signed `rounds` times.
fn sign_cost(algorithm: super::dkim::Algorithm, rounds: u32) -> anyhow::Result<f64> {
    let key = super::dkim::generate(algorithm).map_err(anyhow::Error::msg)?;
    let signer = super::dkim::Signer::new(&key.private, "bench").map_err(anyhow::Error::msg)?;
    let message = lettre::Message::builder()
        .from("Help Desk <help@example.com>".parse()?)
        .to("Alice <alice@example.com>".parse()?)
        .subject("Welcome to IT Help")
        .body("Hello Alice,\r\n\r\nYou have been invited to IT Help.\r\n".repeat(20))?;
    // The first signature parses the key.
    signer
        .sign(&mut message.clone(), "example.com")
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut m = message.clone();
        signer
            .sign(&mut m, "example.com")
            .map_err(anyhow::Error::msg)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}

/// `base` signing with a new key of `algorithm`.
fn signing(base: &Config, algorithm: super::dkim::Algorithm) -> anyhow::Result<Config> {
    let key = super::dkim::generate(algorithm).map_err(anyhow::Error::msg)?;
    let mut config = base.clone();
    config.dkim =
        Some(super::dkim::Signer::new(&key.private, "bench").map_err(anyhow::Error::msg)?);
    Ok(config)
}

/// `bench delivery --workers N`: N `mailtrail worker` processes sharing one store.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessFigures {
    /// Worker processes.
    pub workers: usize,
    /// Messages per second, all processes together.
    pub msgs_per_sec: f64,
    /// Messages queued.
    pub messages: usize,
    /// Messages the sink received (from its dump file).
    pub received: usize,
    /// Messages the sink received more than once (by `Message-ID`); 0 is the target.
    pub sent_twice: usize,
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_sink(port: u16) -> anyhow::Result<Killed> {
    start_sink_with(port, None)
}

/// Starts smtp-sink on `port`; with `dump`, it appends every message to that file.
fn start_sink_with(port: u16, dump: Option<&std::path::Path>) -> anyhow::Result<Killed> {
    let binary = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("smtp-sink is not installed (apt-get install postfix)")?;
    let mut command = Command::new(binary);
    if unsafe_is_root() {
        command.args(["-u", "nobody"]);
    }
    if let Some(dump) = dump {
        command.arg("-D").arg(dump);
    }
    let child = command
        .arg(format!("127.0.0.1:{port}"))
        .arg("1024")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start smtp-sink")?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("smtp-sink did not start listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Killed(child))
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn sink_raw_rate(port: u16, messages: usize) -> anyhow::Result<f64> {
    let binary = ["/usr/sbin/smtp-source", "/usr/bin/smtp-source"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("smtp-source is not installed")?;
    let started = Instant::now();
    let status = Command::new(binary)
        .args([
            "-d",
            "-s",
            "20",
            "-m",
            &messages.to_string(),
            "-l",
            "1024",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("smtp-source failed: {status}");
    }
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

/// A fresh store for one measured configuration, on the engine of `base.db`.
async fn scratch(base: &Config, dir: &std::path::Path, label: &str) -> anyhow::Result<ScratchDb> {
    let server = match &base.db {
        DbLocation::Sqlite(_) => None,
        DbLocation::Postgres(url) => Some(url.as_str()),
    };
    ScratchDb::new(server, dir, label).await
}

async fn queued_store(location: &DbLocation, messages: usize) -> anyhow::Result<Store> {
    let store = Store::connect(location, StoreOptions::default()).await?;
    let key = ProjectKey::parse("BENCH").map_err(anyhow::Error::msg)?;
    let patch: ProjectPatch =
        serde_json::from_value(serde_json::json!({"name": "Bench", "email_format": "text"}))?;
    store
        .put_project(key.clone(), patch, true, "bench".into())
        .await?;
    for chunk in (0..messages).collect::<Vec<_>>().chunks(1000) {
        let recipients = chunk
            .iter()
            .map(|i| {
                let input = format!("user{i}@sink.example");
                Recipient {
                    mailbox: ParsedMailbox::parse(&input),
                    input,
                    channel: Channel::Agent,
                }
            })
            .collect();
        store
            .ingest(
                IngestRequest {
                    project: key.clone(),
                    recipients,
                    invite: true,
                },
                None,
            )
            .await?;
    }
    Ok(store)
}

/// Waits until `messages` are sent; answers the time since `started`.
async fn all_sent(
    store: &Store,
    messages: usize,
    started: Instant,
    who: &str,
) -> anyhow::Result<Duration> {
    loop {
        let sent = sent_count(store).await?;
        if sent as usize >= messages {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("{who} sent only {sent} of {messages} in 180 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sent_count(store: &Store) -> anyhow::Result<i64> {
    // A cheap count: the bench's own polling must not eat the CPU it measures.
    Ok(store.count_status(crate::model::Status::Sent).await?)
}

fn config_for(base: &Config, port: u16, db: DbLocation, concurrency: usize) -> Config {
    let mut config = base.clone();
    config.db = db;
    config.transport = TransportSpec::Smtp {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
    };
    config.concurrency = concurrency;
    config.poll_interval = Duration::from_millis(20);
    config
}

/// Our worker: the real `spawn_worker`, timed from start until every message is sent.
async fn ours(
    base: &Config,
    dir: &std::path::Path,
    port: u16,
    messages: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    // Each configuration on a store of its own (a second run on the first's store
    // would find every message sent already).
    let label = match base.dkim.as_ref().map(|s| s.algorithm()) {
        None => "ours",
        Some(super::dkim::Algorithm::Ed25519) => "ours_ed25519",
        Some(super::dkim::Algorithm::Rsa) => "ours_rsa",
    };
    let db = scratch(base, dir, label).await?;
    let store = queued_store(db.location(), messages).await?;
    let state = App::new(
        store.clone(),
        config_for(base, port, db.location().clone(), concurrency),
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let worker = super::spawn_worker(state, stop_rx);
    let elapsed = all_sent(&store, messages, started, "our worker").await?;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    drop(store);
    db.close().await;
    Ok(messages as f64 / elapsed.as_secs_f64())
}

/// The naive worker: lease one (commit), new connection, send, record (commit).
async fn naive(
    base: &Config,
    dir: &std::path::Path,
    port: u16,
    messages: usize,
) -> anyhow::Result<f64> {
    let db = scratch(base, dir, "naive").await?;
    let store = queued_store(db.location(), messages).await?;
    let config = config_for(base, port, db.location().clone(), 1);
    let policy = RetryPolicy::from_config(&config);
    let project = store
        .projects()
        .await?
        .into_iter()
        .next()
        .context("project")?;
    let site = store.site().await?;
    let target = Target {
        host: "127.0.0.1".into(),
        connect_to: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        tls_config: None,
        ehlo: config.ehlo_name.clone(),
        timeout: Duration::from_secs(30),
    };
    let started = Instant::now();
    for _ in 0..messages {
        let Some(leased) = store
            .lease_due(
                Lease {
                    micros: 300_000_000,
                },
                1,
            )
            .await?
            .pop()
        else {
            break;
        };
        let message = render::prepare(&leased.decision, &project, &site, config.dkim.as_ref())?;
        let at = now_micros();
        let end = match smtp::connect(&target).await {
            Ok(mut conn) => {
                let t = smtp::transact(&mut conn, &message).await;
                conn.quit().await;
                t.end
            }
            Err(end) => end,
        };
        if !matches!(end, TryEnd::Accepted(_)) {
            bail!("naive worker: the sink refused a message: {end:?}");
        }
        let attempt = Attempt {
            end,
            server: Some(format!("127.0.0.1:{port}")),
            copy: None,
            tls: None,
        };
        store
            .record_attempt(attempt_write(&leased, attempt, &policy, at, now_micros()))
            .await?;
    }
    let _ = Stage::Data;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    drop(store);
    db.close().await;
    Ok(rate)
}

/// `--workers N`: N `mailtrail worker` processes deliver one queued store into a sink
/// that dumps what it receives; the dump's `Message-ID`s tell whether any message went
/// out twice.
async fn processes(
    base: &Config,
    dir: &std::path::Path,
    messages: usize,
    workers: usize,
) -> anyhow::Result<ProcessFigures> {
    let port = free_port()?;
    let dumps = dir.join("dump");
    std::fs::create_dir_all(&dumps)?;
    // smtp-sink drops to `nobody` when run as root; it must be able to write there.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o777))?;
    }
    let dump = dumps.join("messages");
    let _sink = start_sink_with(port, Some(&dump))?;
    let db = scratch(base, dir, "processes").await?;
    let store = queued_store(db.location(), messages).await?;
    let exe = std::env::current_exe().context("cannot find the mailtrail binary")?;
    let mut children = Vec::new();
    let started = Instant::now();
    for _ in 0..workers {
        let mut command = Command::new(&exe);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MAILTRAIL_") {
                command.env_remove(name);
            }
        }
        command
            .arg("worker")
            .current_dir(dir)
            .env("MAILTRAIL_DB", db.setting())
            .env("MAILTRAIL_TRANSPORT", format!("smtp://127.0.0.1:{port}"))
            .env("MAILTRAIL_CONCURRENCY", "16")
            .env("MAILTRAIL_POLL_INTERVAL", "20ms")
            .env("MAILTRAIL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        children.push(Killed(
            command.spawn().context("cannot start `mailtrail worker`")?,
        ));
    }
    let elapsed = all_sent(&store, messages, started, &format!("{workers} workers")).await?;
    drop(children);
    // The sink appends after it answers; give the last messages a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read(&dump).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim())
        })
        .collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    drop(store);
    db.close().await;
    Ok(ProcessFigures {
        workers,
        msgs_per_sec: messages as f64 / elapsed.as_secs_f64(),
        messages,
        received: ids.len(),
        sent_twice: ids.len() - unique.len(),
    })
}

/// Runs the delivery benchmark.
pub async fn run(base: &Config, quick: bool, workers: usize) -> anyhow::Result<DeliveryFigures> {
    let dir = std::env::temp_dir().join(format!("mailtrail-bench-delivery-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let port = free_port()?;
        let _sink = start_sink(port)?;
        let (ours_n, naive_n, raw_n) = if quick {
            (2_000, 200, 5_000)
        } else {
            (10_000, 500, 20_000)
        };
        let concurrency = 32;
        // Unsigned unless a figure below asks for a key.
        let unsigned = Config {
            dkim: None,
            ..base.clone()
        };
        let base = &unsigned;
        let sink_raw = sink_raw_rate(port, raw_n)?;
        let naive_rate = naive(base, &dir, port, naive_n).await?;
        let our_rate = ours(base, &dir, port, ours_n, concurrency).await?;
        let ed25519 = ours(
            &signing(base, super::dkim::Algorithm::Ed25519)?,
            &dir,
            port,
            ours_n,
            concurrency,
        )
        .await?;
        let rsa = ours(
            &signing(base, super::dkim::Algorithm::Rsa)?,
            &dir,
            port,
            ours_n,
            concurrency,
        )
        .await?;
        let processes = if workers > 1 {
            Some(processes(base, &dir, ours_n, workers).await?)
        } else {
            None
        };
        Ok(DeliveryFigures {
            processes,
            msgs_per_sec: our_rate,
            naive_msgs_per_sec: naive_rate,
            sink_raw_msgs_per_sec: sink_raw,
            ratio_to_naive: our_rate / naive_rate,
            ratio_to_sink: our_rate / sink_raw,
            messages: ours_n,
            concurrency,
            dkim: DkimFigures {
                ed25519_msgs_per_sec: ed25519,
                ed25519_ratio: ed25519 / our_rate,
                rsa_msgs_per_sec: rsa,
                rsa_ratio: rsa / our_rate,
                ed25519_sign_micros: sign_cost(super::dkim::Algorithm::Ed25519, 2_000)?,
                rsa_sign_micros: sign_cost(super::dkim::Algorithm::Rsa, 200)?,
            },
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
