//! Bounce intake (issue 12): RFC 3464 reports per second through the SMTP bounce door
//! from 16 concurrent sessions, each report committed before its `250`, against the
//! same reports posted to `POST /api/v1/bounces` from 16 keep-alive connections.
//!
//! One server (this binary as `mailtrail serve`, the delivery worker off, the door on a
//! loopback port) and one database hold both runs, so the doors differ and nothing else.
//! First a pool of queued decisions is ingested through the API (1,000 addresses per
//! request); every report names a decision of its own (VERP address, Final-Recipient and
//! Message-ID), so each one bounces a decision and suppresses an address, as a real
//! bounce does. HTTP runs first, then SMTP, each with a warm-up and a measured window;
//! only `200`/`250` answers inside the window count. Each SMTP session pipelines
//! `MAIL`, `RCPT` and `DATA` (the door offers PIPELINING), then sends the report.

use super::Plan;
use super::client::{Connection, request};
use super::scratch::ScratchDb;
use super::server::{Commit, Server, Workdir};
use anyhow::{Context, bail};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Concurrent sessions (SMTP) and connections (HTTP), as issue 12 asks.
pub const SESSIONS: usize = 16;

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BounceFigures {
    /// Reports per second through the SMTP door (each `250` after its commit).
    pub smtp_per_sec: f64,
    /// Reports per second through `POST /api/v1/bounces`.
    pub http_per_sec: f64,
    /// `smtp_per_sec / http_per_sec`.
    pub ratio: f64,
    /// Reports answered inside each window: SMTP, HTTP.
    pub smtp_reports: u64,
    /// See `smtp_reports`.
    pub http_reports: u64,
    /// Answers other than `250`/`200`, both runs.
    pub errors: u64,
    /// The measured window of each run, in seconds.
    pub seconds: f64,
    /// `sqlite` or `postgres`.
    pub engine: String,
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

/// A decision to bounce: its id and its address.
type Target = (String, String);

/// Runs both doors on one fresh server and database.
pub async fn measure(plan: &Plan) -> anyhow::Result<BounceFigures> {
    let dir = Workdir::new("bounces")?;
    let scratch = ScratchDb::new(plan.postgres.as_deref(), &dir.path, "bounces").await?;
    let door = free_port()?;
    let listen = format!("127.0.0.1:{door}");
    let server = Server::start_with(
        &dir,
        scratch.setting(),
        Commit::Grouped,
        &[("MAILTRAIL_BOUNCE_LISTEN", listen.as_str())],
    )
    .await?;
    server.put_project("BENCH", "Bench").await?;
    let door: SocketAddr = listen.parse()?;
    // Enough decisions for each run at the rate this engine could at most reach here.
    let ceiling = if plan.postgres.is_some() {
        6_000.0
    } else {
        12_000.0
    };
    let per_run = ((plan.warmup + plan.ingest_window).as_secs_f64() * ceiling) as usize;
    super::progress(&format!(
        "bounces: seeding {} queued decisions",
        2 * per_run
    ));
    let targets = seed(&server, 2 * per_run).await?;
    let (http_targets, smtp_targets) = targets.split_at(per_run);

    super::progress(&format!(
        "bounces: {SESSIONS} HTTP connections posting reports ({} decisions ready)",
        targets.len()
    ));
    let (http_reports, http_errors, seconds) = run(
        plan,
        Door::Http(server.addr, server.bearer()),
        http_targets.to_vec(),
    )
    .await?;
    super::progress(&format!(
        "bounces: {SESSIONS} SMTP sessions through the door"
    ));
    let (smtp_reports, smtp_errors, _) = run(plan, Door::Smtp(door), smtp_targets.to_vec()).await?;
    drop(server);
    scratch.close().await;
    let (smtp_per_sec, http_per_sec) =
        (smtp_reports as f64 / seconds, http_reports as f64 / seconds);
    Ok(BounceFigures {
        smtp_per_sec,
        http_per_sec,
        ratio: smtp_per_sec / http_per_sec.max(f64::MIN_POSITIVE),
        smtp_reports,
        http_reports,
        errors: http_errors + smtp_errors,
        seconds,
        engine: if plan.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
        .into(),
    })
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Ingests `count` new addresses (queued: the worker is off) from 8 connections at once,
/// 500 per request, and returns each decision's id and address.
async fn seed(server: &Server, count: usize) -> anyhow::Result<Vec<Target>> {
    const BATCH: usize = 500;
    const CONNECTIONS: usize = 8;
    let batches = count.div_ceil(BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (next, addr, bearer) = (next.clone(), server.addr, server.bearer());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await?;
            let headers = [
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
            ];
            let mut targets = Vec::new();
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return anyhow::Ok(targets);
                }
                let emails: Vec<String> = (batch * BATCH..(batch + 1) * BATCH)
                    .map(|i| format!("b{i}@bench.example"))
                    .collect();
                let body = serde_json::json!({ "emails": emails }).to_string();
                let answer = connection
                    .send(&request(
                        "POST",
                        "/api/v1/projects/BENCH/customers",
                        &headers,
                        body.as_bytes(),
                    ))
                    .await?;
                if answer.status != 200 {
                    bail!(
                        "seeding answered {}: {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    );
                }
                let value: serde_json::Value = serde_json::from_slice(&answer.body)?;
                for result in value["results"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(email)) =
                        (result["decision_id"].as_str(), result["email"].as_str())
                    {
                        targets.push((id.to_owned(), email.to_owned()));
                    }
                }
            }
        }));
    }
    let mut targets = Vec::with_capacity(count);
    for task in tasks {
        targets.extend(task.await??);
    }
    if targets.len() < count {
        bail!("seeding made {} decisions of {count}", targets.len());
    }
    targets.truncate(count);
    Ok(targets)
}

/// A Postfix-shaped RFC 3464 report that `email`'s decision `id` bounced (550 5.1.1).
pub fn report(id: &str, email: &str) -> String {
    format!(
        "Return-Path: <>\r\n\
         From: MAILER-DAEMON@mta.bench.example (Mail Delivery System)\r\n\
         To: bounces+{id}@example.com\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B-{id}\"\r\n\
         Message-Id: <bounce-{id}@mta.bench.example>\r\n\
         \r\n\
         --B-{id}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         <{email}>: host mx.bench.example said: 550 5.1.1 User unknown\r\n\
         \r\n\
         --B-{id}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mta.bench.example\r\n\
         \r\n\
         Final-Recipient: rfc822; {email}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{email}>: User unknown\r\n\
         \r\n\
         --B-{id}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Message-ID: <{id}@example.com>\r\n\
         To: {email}\r\n\
         Subject: Welcome to Bench\r\n\
         \r\n\
         --B-{id}--\r\n"
    )
}

/// Which door a run goes through.
#[derive(Clone)]
enum Door {
    /// `POST /api/v1/bounces` on this server, with this bearer header.
    Http(SocketAddr, String),
    /// The SMTP door.
    Smtp(SocketAddr),
}

/// One run: a warm-up, then the measured window. Returns the reports answered inside
/// the window, every failure, and the window's length.
async fn run(plan: &Plan, door: Door, targets: Vec<Target>) -> anyhow::Result<(u64, u64, f64)> {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let next = Arc::new(AtomicUsize::new(0));
    let targets = Arc::new(targets);
    let load = {
        let (phase, next, targets) = (phase.clone(), next.clone(), targets.clone());
        // The load runs on a thread of its own with a single-threaded runtime, as the
        // ingest benchmark's does: at most one core of two for the client.
        std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut sessions = Vec::with_capacity(SESSIONS);
                for _ in 0..SESSIONS {
                    let (phase, next, targets, door) =
                        (phase.clone(), next.clone(), targets.clone(), door.clone());
                    sessions.push(tokio::spawn(async move {
                        match door {
                            Door::Http(addr, bearer) => {
                                http_session(addr, bearer, phase, next, targets).await
                            }
                            Door::Smtp(addr) => smtp_session(addr, phase, next, targets).await,
                        }
                    }));
                }
                let (mut ok, mut failed) = (0, 0);
                for s in sessions {
                    let (a, b) = s.await??;
                    ok += a;
                    failed += b;
                }
                Ok((ok, failed))
            })
        })
    };
    tokio::time::sleep(plan.warmup).await;
    phase.store(MEASURING, Ordering::SeqCst);
    let window = Instant::now();
    tokio::time::sleep(plan.ingest_window).await;
    phase.store(STOPPED, Ordering::SeqCst);
    let seconds = window.elapsed().as_secs_f64();
    let joined = tokio::task::spawn_blocking(move || load.join()).await?;
    let (ok, failed) = joined.map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    if next.load(Ordering::Relaxed) >= targets.len() {
        bail!("the run used up its {} decisions: seed more", targets.len());
    }
    Ok((ok, failed, seconds))
}

/// The next decision to bounce, or `None` when the pool is used up.
fn take<'a>(next: &AtomicUsize, targets: &'a [Target]) -> Option<&'a Target> {
    targets.get(next.fetch_add(1, Ordering::Relaxed))
}

async fn http_session(
    addr: SocketAddr,
    bearer: String,
    phase: Arc<AtomicU8>,
    next: Arc<AtomicUsize>,
    targets: Arc<Vec<Target>>,
) -> anyhow::Result<(u64, u64)> {
    let mut connection = Connection::open(addr).await?;
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "message/rfc822"),
    ];
    let (mut ok, mut failed) = (0u64, 0u64);
    while let Some((id, email)) = take(&next, &targets) {
        let body = report(id, email);
        let answer = connection
            .send(&request(
                "POST",
                "/api/v1/bounces",
                &headers,
                body.as_bytes(),
            ))
            .await;
        let measuring = match phase.load(Ordering::Relaxed) {
            STOPPED => break,
            state => state == MEASURING,
        };
        match answer {
            Ok(a) if a.status == 200 => ok += u64::from(measuring),
            Ok(_) => failed += 1,
            Err(e) => return Err(e.context("POST /api/v1/bounces failed")),
        }
    }
    Ok((ok, failed))
}

async fn smtp_session(
    addr: SocketAddr,
    phase: Arc<AtomicU8>,
    next: Arc<AtomicUsize>,
    targets: Arc<Vec<Target>>,
) -> anyhow::Result<(u64, u64)> {
    let stream = TcpStream::connect(addr)
        .await
        .context("cannot reach the bounce door")?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    expect(&mut read, 220).await?;
    write.write_all(b"EHLO bench.example\r\n").await?;
    expect(&mut read, 250).await?;
    let (mut ok, mut failed) = (0u64, 0u64);
    while let Some((id, email)) = take(&next, &targets) {
        let envelope = format!("MAIL FROM:<>\r\nRCPT TO:<bounces+{id}@example.com>\r\nDATA\r\n");
        write.write_all(envelope.as_bytes()).await?;
        expect(&mut read, 250).await?;
        expect(&mut read, 250).await?;
        expect(&mut read, 354).await?;
        // The report has no line starting with a dot: no stuffing needed.
        let mut message = report(id, email).into_bytes();
        message.extend_from_slice(b".\r\n");
        write.write_all(&message).await?;
        let code = reply(&mut read).await?;
        let measuring = match phase.load(Ordering::Relaxed) {
            STOPPED => break,
            state => state == MEASURING,
        };
        if code == 250 {
            ok += u64::from(measuring);
        } else {
            failed += 1;
        }
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok((ok, failed))
}

/// Reads one reply and returns its code.
async fn reply(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> anyhow::Result<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            bail!("the bounce door closed the session");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("not an SMTP reply: {line:?}"));
        }
    }
}

async fn expect(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: u16,
) -> anyhow::Result<()> {
    let got = reply(read).await?;
    if got != code {
        bail!("the bounce door answered {got}, expected {code}");
    }
    Ok(())
}
