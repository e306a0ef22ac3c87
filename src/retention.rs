//! The retention task of `serve` (SPEC §14): purges what is older than `--retention`
//! soon after start and then at an interval, in small write jobs that never hold up
//! ingest (see `store::retention`).

use crate::store::{PurgePlan, Store};
use std::time::Duration;
use tokio::sync::watch;

/// Decisions per write job: a few milliseconds of the writer's time.
pub const BATCH: i64 = 100;

/// The least wait between two write jobs of a pass (see `PurgePlan::pause`).
pub const PAUSE: Duration = Duration::from_millis(50);

/// How long after start the first pass runs.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(1);

/// The plan `serve` uses for a retention period.
pub fn plan(retention: Duration) -> PurgePlan {
    PurgePlan {
        retention,
        session_idle: crate::http::dashboard::session::IDLE,
        batch: BATCH,
        pause: PAUSE,
    }
}

/// The time between passes: a quarter of the retention period, from 1 s to 1 h.
pub fn interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Runs passes until `stop` turns true.
pub fn spawn(
    store: Store,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = FIRST_PASS_AFTER;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let pass = store.purge_expired(plan(retention));
            tokio::select! {
                result = pass => match result {
                    Ok(purged) if purged != Default::default() => tracing::info!(
                        decisions = purged.decisions,
                        attempts = purged.attempts,
                        sessions = purged.sessions,
                        idempotency_keys = purged.idempotency_keys,
                        bounce_messages = purged.bounce_messages,
                        "retention: purged"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention: purge failed; retrying later"),
                },
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            wait = interval(retention);
        }
    })
}
