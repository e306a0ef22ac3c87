//! Ingest while a retention purge runs (SPEC §14): the same 64-client load as
//! `ingest`, against two servers on the same seeded history (decisions over the last
//! 90 days). One keeps everything (`--retention 400d`, the baseline); the other is
//! started with `--retention 1d`, so its first purge pass, one second after start,
//! has most of the history to remove while the load runs. The ratio shows what the
//! purge's small write jobs cost ingest.

use super::Plan;
use super::ingest::{LoadRun, load};
use super::server::{Commit, Server, Workdir};
use crate::store::{Micros, Store, StoreOptions, now_micros, seed_bulk};
use anyhow::Context;
use std::path::Path;
use std::time::Instant;

/// What the runs measured.
#[derive(Clone, Debug)]
pub struct RetentionResult {
    /// Decisions seeded into each database.
    pub seeded: u64,
    /// Ingest with nothing to purge, each run.
    pub without: Vec<LoadRun>,
    /// Ingest while the purge runs, each run.
    pub with_purge: Vec<LoadRun>,
    /// Seeded decisions gone by the end of each purging run.
    pub purged: Vec<u64>,
    /// Seconds from each purging server's start to the end of its load.
    pub purge_seconds: Vec<f64>,
}

/// Seeds a fresh database for every run and measures ingest on it, alternating the
/// baseline and the purging server (at least twice each: single runs on a shared
/// machine swing by 2x), so noise from neighbours hits both alike.
pub async fn measure(plan: &Plan) -> anyhow::Result<RetentionResult> {
    let seeded = if plan.quick { 100_000 } else { 300_000 };
    let customers = seeded / 5;
    let mut result = RetentionResult {
        seeded,
        without: Vec::new(),
        with_purge: Vec::new(),
        purged: Vec::new(),
        purge_seconds: Vec::new(),
    };
    for _ in 0..plan.ingest_runs.max(2) {
        let dir = Workdir::new("retention-baseline")?;
        let db = seed(&dir, seeded, customers).await?;
        let server = Server::start_with(
            &dir,
            &db,
            Commit::Grouped,
            &[("MAILTRAIL_RETENTION", "400d")],
        )
        .await?;
        result.without.push(load(plan, &server).await?);
        drop(server);

        let dir = Workdir::new("retention")?;
        let db = seed(&dir, seeded, customers).await?;
        let started = Instant::now();
        let before = now_micros();
        let server =
            Server::start_with(&dir, &db, Commit::Grouped, &[("MAILTRAIL_RETENTION", "1d")])
                .await?;
        result.with_purge.push(load(plan, &server).await?);
        result.purge_seconds.push(started.elapsed().as_secs_f64());
        drop(server);
        let left = seeded_left(&db, before).await?;
        result.purged.push(seeded.saturating_sub(left));
    }
    Ok(result)
}

async fn seed(dir: &Workdir, decisions: u64, customers: u64) -> anyhow::Result<std::path::PathBuf> {
    let db = dir.join("bench.db");
    let path = db.clone();
    let quiet = tracing::subscriber::NoSubscriber::default();
    tokio::task::spawn_blocking(move || {
        tracing::subscriber::with_default(quiet, || {
            seed_bulk(&path, decisions, decisions / 10, customers)
        })
    })
    .await?
    .context("cannot seed the history")?;
    Ok(db)
}

/// Seeded decisions still stored: those created before the server started (the
/// load's own came later).
async fn seeded_left(db: &Path, before: Micros) -> anyhow::Result<u64> {
    let store = Store::connect(
        &crate::store::DbLocation::Sqlite(db.to_owned()),
        StoreOptions::default(),
    )
    .await?;
    let n = store.decisions_created_before(before).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
