//! Look-up latency against a small and a large history (SPEC §8): the why API, and
//! the dashboard pages when they exist.
//!
//! For each size a fresh database is seeded in bulk (`store::seed_bulk`, timed: the
//! seeding time is a figure too) and the shipped server started on it. Then one
//! client sends requests one after another over random seeded customers, after a
//! warm-up, alternating between the two servers, so both sizes are timed under the
//! same conditions. One client, not many: the figure is the latency a support agent
//! sees, not what the machine can serve. The small history (1,000 decisions) is the baseline of
//! the large one (1,000,000 and 100,000 suppressions), both measured in the same run
//! on the same machine, so the ratio shows how look-ups scale with the data.

use super::Plan;
use super::client::{Connection, request};
use super::pages::{self, PagesOutcome};
use super::scratch::ScratchDb;
use super::server::{Commit, Server, Workdir};
use crate::store::{DbLocation, SeedReport, seed_bulk, seed_customer_address};
use anyhow::bail;
use std::time::{Duration, Instant};

/// A history to seed.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Decisions stored.
    pub decisions: u64,
    /// Suppressions stored.
    pub suppressions: u64,
    /// Customers (about five decisions each).
    pub customers: u64,
}

/// Latency percentiles of one kind of request.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank), in milliseconds.
    pub p99_ms: f64,
    /// The slowest timed request, in milliseconds.
    pub max_ms: f64,
    /// Requests timed (after the warm-up).
    pub requests: usize,
    /// The very first request, cold (not in the percentiles), in milliseconds.
    pub first_ms: f64,
}

/// What was measured at one size.
#[derive(Debug)]
pub struct SizeResult {
    /// The history.
    pub size: Size,
    /// How seeding went.
    pub seed: SeedReport,
    /// `GET /api/v1/why/{email}`, when asked for.
    pub why: Option<Latency>,
    /// The dashboard pages, when asked for.
    pub pages: Option<PagesOutcome>,
}

/// Both sizes.
#[derive(Debug)]
pub struct LookupResult {
    /// The baseline: 1,000 decisions.
    pub small: SizeResult,
    /// 1,000,000 decisions (100,000 with `--quick`).
    pub large: SizeResult,
    /// Whether the histories were on PostgreSQL (seeded into SQLite, then copied).
    pub postgres: bool,
}

/// A seeded database with a server running on it.
pub struct Target {
    /// The history seeded.
    pub size: Size,
    /// The server; dropped (killed) before its database and its directory.
    pub server: Server,
    /// A keep-alive connection to it.
    pub connection: Connection,
    /// The scratch PostgreSQL database, with `--db postgres://…`.
    _postgres: Option<ScratchDb>,
    /// Its scratch directory.
    _dir: Workdir,
}

/// Seeds both sizes, starts a server on each, and times what `why` and `pages` ask
/// for, alternating between the two servers request by request so that a burst of
/// noise from a neighbour falls on both alike.
pub async fn measure(plan: &Plan, why: bool, pages: bool) -> anyhow::Result<LookupResult> {
    let postgres = plan.postgres.as_deref();
    let (mut small, small_seed) = prepare(plan.small, "small", postgres).await?;
    let (mut large, large_seed) = prepare(plan.large, "large", postgres).await?;
    let (mut why_small, mut why_large) = (None, None);
    if why {
        let requests = |target: &Target| {
            let bearer = target.server.bearer();
            let size = target.size;
            (0..plan.lookup_warmup + plan.lookups)
                .map(|_| {
                    request(
                        "GET",
                        &format!("/api/v1/why/{}", random_customer(size)),
                        &[("Authorization", &bearer)],
                        b"",
                    )
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (requests(&small), requests(&large));
        let (s, l) = time_paired(&mut small, a, &mut large, b, plan.lookup_warmup, None).await?;
        (why_small, why_large) = (Some(s), Some(l));
    }
    let (mut pages_small, mut pages_large) = (None, None);
    if pages {
        let (s, l) = pages::measure(plan, &mut small, &mut large).await?;
        (pages_small, pages_large) = (Some(s), Some(l));
    }
    Ok(LookupResult {
        small: SizeResult {
            size: plan.small,
            seed: small_seed,
            why: why_small,
            pages: pages_small,
        },
        large: SizeResult {
            size: plan.large,
            seed: large_seed,
            why: why_large,
            pages: pages_large,
        },
        postgres: postgres.is_some(),
    })
}

/// Seeds `size` and starts a server on it. With `postgres`, the history is seeded into
/// SQLite (the bulk seeder writes SQLite only) and moved to a scratch database on that
/// server by `db copy`, so both engines are timed on the same rows; the seeding time
/// then includes the copy.
async fn prepare(
    size: Size,
    label: &str,
    postgres: Option<&str>,
) -> anyhow::Result<(Target, SeedReport)> {
    let dir = Workdir::new(label)?;
    let db = dir.join("bench.db");
    let scratch = match postgres {
        Some(server) => Some(ScratchDb::new(Some(server), &dir.path, label).await?),
        None => None,
    };
    let seed = {
        let (db, to) = (db.clone(), scratch.as_ref().map(|s| s.location().clone()));
        // The migrations log at info; from inside the benchmark that is only noise.
        let quiet = tracing::subscriber::NoSubscriber::default();
        tokio::task::spawn_blocking(move || {
            tracing::subscriber::with_default(quiet, || {
                let started = Instant::now();
                let mut seed = seed_bulk(&db, size.decisions, size.suppressions, size.customers)?;
                if let Some(to) = to {
                    let copied = crate::store::copy(&DbLocation::Sqlite(db.clone()), &to)?;
                    if !copied.matches() {
                        bail!("the seeded history did not copy whole: {:?}", copied.tables);
                    }
                    seed.elapsed = started.elapsed();
                }
                anyhow::Ok(seed)
            })
        })
        .await??
    };
    let setting = match &scratch {
        Some(scratch) => scratch.setting(),
        None => db.display().to_string(),
    };
    let server = Server::start(&dir, setting, Commit::Grouped).await?;
    let connection = Connection::open(server.addr).await?;
    Ok((
        Target {
            size,
            server,
            connection,
            _postgres: scratch,
            _dir: dir,
        },
        seed,
    ))
}

/// The address of a random seeded customer.
pub fn random_customer(size: Size) -> String {
    seed_customer_address(rand::random::<u64>() % size.customers.max(1))
}

/// Sends `a[i]` to `first` and `b[i]` to `second`, in turn (which one goes first
/// alternates too); the first `warmup` pairs are not timed. Stops early once `budget`
/// has passed (when given), so a slow page cannot stall the run. Every answer must be
/// 200: a benchmark of errors measures nothing.
pub async fn time_paired(
    first: &mut Target,
    a: Vec<Vec<u8>>,
    second: &mut Target,
    b: Vec<Vec<u8>>,
    warmup: usize,
    budget: Option<Duration>,
) -> anyhow::Result<(Latency, Latency)> {
    let started = Instant::now();
    let (mut samples_a, mut samples_b) = (Vec::new(), Vec::new());
    let (mut first_a, mut first_b) = (Duration::ZERO, Duration::ZERO);
    for (n, (bytes_a, bytes_b)) in a.iter().zip(&b).enumerate() {
        let (took_a, took_b) = if n % 2 == 0 {
            let took_a = timed(&mut first.connection, bytes_a).await?;
            (took_a, timed(&mut second.connection, bytes_b).await?)
        } else {
            let took_b = timed(&mut second.connection, bytes_b).await?;
            (timed(&mut first.connection, bytes_a).await?, took_b)
        };
        if n == 0 {
            (first_a, first_b) = (took_a, took_b);
        }
        if n >= warmup {
            samples_a.push(took_a);
            samples_b.push(took_b);
        }
        if budget.is_some_and(|b| started.elapsed() > b) && samples_a.len() >= 20 {
            break;
        }
    }
    let latency = |samples, first: Duration| Latency {
        first_ms: first.as_secs_f64() * 1000.0,
        ..percentiles(samples)
    };
    Ok((latency(samples_a, first_a), latency(samples_b, first_b)))
}

/// Sends one request and times it to the end of the answer.
async fn timed(connection: &mut Connection, bytes: &[u8]) -> anyhow::Result<Duration> {
    let sent = Instant::now();
    let answer = connection.send(bytes).await?;
    let took = sent.elapsed();
    if answer.status != 200 {
        let line =
            String::from_utf8_lossy(&bytes[..bytes.iter().position(|b| *b == b'\r').unwrap_or(0)])
                .into_owned();
        bail!(
            "`{line}` answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        );
    }
    Ok(took)
}

/// p50 and p99 by nearest rank.
pub fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let rank = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    Latency {
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: rank(1.0),
        requests: samples.len(),
        first_ms: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = percentiles(samples);
        assert_eq!(
            (latency.p50_ms, latency.p99_ms, latency.requests),
            (50.0, 99.0, 100)
        );
    }
}
