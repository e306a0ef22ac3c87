//! Ingest throughput and memory (SPEC §8): single-address agent adds over HTTP from
//! 64 concurrent keep-alive clients, each answered only once durable.
//!
//! The same load runs against two configurations, each time on a fresh server and
//! database: as shipped (group commit), and with `MAILTRAIL_GROUP_COMMIT=false`, one
//! transaction and one fsync per request, the baseline. The two alternate, three
//! times each (once with `--quick`), and each reports its median, because the disk's
//! fsync latency on a shared virtual machine swings from run to run and moves the
//! baseline most. Only 200 answers count, and only those that arrive inside the
//! measured window, after a warm-up that fills connections, caches and the first WAL
//! pages. The server's resident memory is read when idle (started, project created,
//! before load) and sampled every 100 ms under the load; the highest is reported.

use super::Plan;
use super::client::{Connection, request};
use super::scratch::ScratchDb;
use super::server::{Commit, Server, Workdir, rss_kib};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The concurrent clients of SPEC §8.
pub const CLIENTS: usize = 64;

/// What one load run measured.
#[derive(Clone, Debug)]
pub struct LoadRun {
    /// 200 answers inside the window, per second.
    pub adds_per_sec: f64,
    /// 200 answers inside the window.
    pub adds: u64,
    /// Non-200 answers and connection failures, during the whole run.
    pub errors: u64,
    /// The measured window.
    pub seconds: f64,
    /// Server RSS after start and project creation, before load (KiB).
    pub idle_kib: u64,
    /// Highest server RSS sampled under load (KiB).
    pub peak_kib: u64,
}

/// Every run of both configurations, in the order they ran.
#[derive(Clone, Debug)]
pub struct IngestResult {
    /// Group commit, as shipped.
    pub grouped: Vec<LoadRun>,
    /// One transaction per request.
    pub baseline: Vec<LoadRun>,
}

impl IngestResult {
    /// The median throughput of the group-commit runs.
    pub fn grouped_adds_per_sec(&self) -> f64 {
        median(self.grouped.iter().map(|r| r.adds_per_sec))
    }

    /// The median throughput of the baseline runs.
    pub fn baseline_adds_per_sec(&self) -> f64 {
        median(self.baseline.iter().map(|r| r.adds_per_sec))
    }
}

pub(super) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs the baseline and the shipped configuration in turn, `plan.ingest_runs` times
/// each, so a burst of noise from a neighbour on a shared machine hits both alike.
pub async fn measure(plan: &Plan) -> anyhow::Result<IngestResult> {
    let mut result = IngestResult {
        grouped: Vec::new(),
        baseline: Vec::new(),
    };
    for _ in 0..plan.ingest_runs {
        result.baseline.push(run(plan, Commit::PerRequest).await?);
        result.grouped.push(run(plan, Commit::Grouped).await?);
    }
    Ok(result)
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

async fn run(plan: &Plan, commit: Commit) -> anyhow::Result<LoadRun> {
    let dir = Workdir::new(if commit == Commit::Grouped {
        "ingest"
    } else {
        "ingest-baseline"
    })?;
    let label = if commit == Commit::Grouped {
        "ingest"
    } else {
        "ingest_baseline"
    };
    let scratch = ScratchDb::new(plan.postgres.as_deref(), &dir.path, label).await?;
    let server = Server::start(&dir, scratch.setting(), commit).await?;
    server.put_project("BENCH", "Bench").await?;
    let measured = load(plan, &server).await;
    drop(server);
    scratch.close().await;
    measured
}

/// Measures the 64 clients' adds against `server`, whose project `BENCH` exists.
pub async fn load(plan: &Plan, server: &Server) -> anyhow::Result<LoadRun> {
    // Let start-up allocations settle (the first admin's argon2 hash, the listener).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = server.rss_kib().unwrap_or(0);

    let phase = Arc::new(AtomicU8::new(WARMING));
    let load = spawn_load(server.addr, server.bearer(), phase.clone());
    let sampler = {
        let phase = phase.clone();
        let pid = server.pid();
        tokio::spawn(async move {
            let mut peak = rss_kib(pid).unwrap_or(0);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while phase.load(Ordering::Relaxed) != STOPPED {
                tick.tick().await;
                peak = peak.max(rss_kib(pid).unwrap_or(0));
            }
            peak
        })
    };

    tokio::time::sleep(plan.warmup).await;
    phase.store(MEASURING, Ordering::SeqCst);
    let window = Instant::now();
    tokio::time::sleep(plan.ingest_window).await;
    phase.store(STOPPED, Ordering::SeqCst);
    let seconds = window.elapsed().as_secs_f64();

    let joined = tokio::task::spawn_blocking(move || load.join()).await?;
    let (adds, errors) = joined.map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    let peak_kib = sampler.await?;
    Ok(LoadRun {
        adds_per_sec: adds as f64 / seconds,
        adds,
        errors,
        seconds,
        idle_kib,
        peak_kib,
    })
}

/// Starts the 64 clients on a thread of their own with a single-threaded runtime: the
/// load generator then takes at most one core of the two, and its tasks never migrate
/// between threads, which keeps its own cost low and steady. Returns the 200 answers
/// received while measuring, and every failure.
fn spawn_load(
    addr: std::net::SocketAddr,
    bearer: String,
    phase: Arc<AtomicU8>,
) -> std::thread::JoinHandle<anyhow::Result<(u64, u64)>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let next_address = Arc::new(AtomicU64::new(0));
            let mut clients = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let connection = Connection::open(addr).await?;
                clients.push(tokio::spawn(client(
                    connection,
                    bearer.clone(),
                    phase.clone(),
                    next_address.clone(),
                )));
            }
            let (mut adds, mut errors) = (0, 0);
            for handle in clients {
                let (ok, failed) = handle.await??;
                adds += ok;
                errors += failed;
            }
            Ok((adds, errors))
        })
    })
}

/// One client: sequential adds of new addresses until stopped. Returns the 200
/// answers received while measuring, and every failure.
async fn client(
    mut connection: Connection,
    bearer: String,
    phase: Arc<AtomicU8>,
    next_address: Arc<AtomicU64>,
) -> anyhow::Result<(u64, u64)> {
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (mut ok, mut failed) = (0u64, 0u64);
    loop {
        let n = next_address.fetch_add(1, Ordering::Relaxed);
        let body = format!(r#"{{"emails":["u{n}@bench.example"]}}"#);
        let bytes = request(
            "POST",
            "/api/v1/projects/BENCH/customers",
            &headers,
            body.as_bytes(),
        );
        let answer = connection.send(&bytes).await;
        let measuring = match phase.load(Ordering::Relaxed) {
            STOPPED => return Ok((ok, failed)),
            state => state == MEASURING,
        };
        match answer {
            Ok(answer) if answer.status == 200 => ok += u64::from(measuring),
            Ok(_) => failed += 1,
            Err(e) => {
                failed += 1;
                // A refused reconnection means the server is gone: stop with the cause.
                if failed > 1000 {
                    return Err(e.context("the ingest load keeps failing"));
                }
            }
        }
    }
}
