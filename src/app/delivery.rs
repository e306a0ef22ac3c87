//! What the delivery worker records (SPEC §4): tries' outcomes, counted.

use super::{App, AppResult};
use crate::store::AttemptWrite;
use std::time::Duration;

/// A finished try: its row changes, and how long it talked to the server.
pub type FinishedTry = (AttemptWrite, Duration);

impl App {
    /// Records one try — its attempt row, the decision's new status and the suppression
    /// it causes, in one transaction — and counts it.
    pub async fn record_attempt(&self, write: AttemptWrite, took: Duration) -> AppResult<()> {
        self.record_attempts(vec![(write, took)]).await
    }

    /// Records finished tries in one transaction (each as [`App::record_attempt`] would)
    /// and counts them once committed.
    pub async fn record_attempts(&self, tries: Vec<FinishedTry>) -> AppResult<()> {
        let counted: Vec<_> = tries
            .iter()
            .map(|(w, took)| (w.status, w.suppression.as_ref().map(|s| s.reason), *took))
            .collect();
        self.store
            .record_attempts(tries.into_iter().map(|(w, _)| w).collect())
            .await?;
        for (status, suppression, took) in counted {
            self.metrics.delivery_recorded(status, took);
            if let Some(reason) = suppression {
                self.metrics.suppressed(reason, 1);
            }
        }
        Ok(())
    }
}
