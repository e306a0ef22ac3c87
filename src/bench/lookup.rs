//! Look-up latency against a small and a large history (SPEC §8): the why API, and
//! the dashboard pages when they exist.
//!
//! For each size a fresh database is seeded in bulk (`store::seed_bulk`, timed: the
//! seeding time is a figure too), then the shipped server is started on it and one
//! client sends requests one after another over random seeded customers, after a
//! warm-up. One client, not many: the figure is the latency a support agent sees, not
//! what the machine can serve. The small history (1,000 decisions) is the baseline of
//! the large one (1,000,000 and 100,000 suppressions), both measured in the same run
//! on the same machine, so the ratio shows how look-ups scale with the data.

use super::Plan;
use super::client::{Connection, request};
use super::pages::{self, PagesOutcome};
use super::server::{Commit, Server, Workdir};
use crate::store::{SeedReport, seed_bulk, seed_customer_address};
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
}

/// Seeds each size, starts a server on it and times what `why` and `pages` ask for.
pub async fn measure(plan: &Plan, why: bool, pages: bool) -> anyhow::Result<LookupResult> {
    let small = measure_size(plan, plan.small, "small", why, pages).await?;
    let large = measure_size(plan, plan.large, "large", why, pages).await?;
    Ok(LookupResult { small, large })
}

async fn measure_size(plan: &Plan, size: Size, label: &str, why: bool, pages: bool) -> anyhow::Result<SizeResult> {
    let dir = Workdir::new(label)?;
    let db = dir.join("bench.db");
    let seed = {
        let db = db.clone();
        // The migrations log at info; from inside the benchmark that is only noise.
        let quiet = tracing::subscriber::NoSubscriber::default();
        tokio::task::spawn_blocking(move || {
            tracing::subscriber::with_default(quiet, || seed_bulk(&db, size.decisions, size.suppressions, size.customers))
        })
        .await??
    };
    let server = Server::start(&dir, &db, Commit::Grouped).await?;
    let why = if why { Some(why_latency(plan, &server, size).await?) } else { None };
    let pages = if pages { Some(pages::measure(plan, &server, size).await?) } else { None };
    Ok(SizeResult { size, seed, why, pages })
}

async fn why_latency(plan: &Plan, server: &Server, size: Size) -> anyhow::Result<Latency> {
    let bearer = server.bearer();
    let headers = [("Authorization", bearer.as_str())];
    let requests = (0..plan.lookup_warmup + plan.lookups).map(|_| {
        let email = random_customer(size);
        request("GET", &format!("/api/v1/why/{email}"), &headers, b"")
    });
    let mut connection = Connection::open(server.addr).await?;
    time_requests(&mut connection, requests, plan.lookup_warmup, None).await
}

/// The address of a random seeded customer.
pub fn random_customer(size: Size) -> String {
    seed_customer_address(rand::random::<u64>() % size.customers.max(1))
}

/// Sends `requests` one after another; the first `warmup` are not timed. Stops early
/// once `budget` has passed (when given), so a slow page cannot stall the run. Every
/// answer must be 200: a benchmark of errors measures nothing.
pub async fn time_requests(
    connection: &mut Connection,
    requests: impl Iterator<Item = Vec<u8>>,
    warmup: usize,
    budget: Option<Duration>,
) -> anyhow::Result<Latency> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut first = Duration::ZERO;
    for (n, bytes) in requests.enumerate() {
        let sent = Instant::now();
        let answer = connection.send(&bytes).await?;
        let took = sent.elapsed();
        if answer.status != 200 {
            let line = String::from_utf8_lossy(&bytes[..bytes.iter().position(|b| *b == b'\r').unwrap_or(0)]).into_owned();
            bail!("`{line}` answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]));
        }
        if n == 0 {
            first = took;
        }
        if n >= warmup {
            samples.push(took);
        }
        if budget.is_some_and(|b| started.elapsed() > b) && samples.len() >= 20 {
            break;
        }
    }
    Ok(Latency { first_ms: first.as_secs_f64() * 1000.0, ..percentiles(samples) })
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
    Latency { p50_ms: rank(0.50), p99_ms: rank(0.99), requests: samples.len(), first_ms: 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = percentiles(samples);
        assert_eq!((latency.p50_ms, latency.p99_ms, latency.requests), (50.0, 99.0, 100));
    }
}
