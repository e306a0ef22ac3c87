//! What the delivery worker records (SPEC §4): a try's outcome, counted.

use super::{App, AppResult};
use crate::store::AttemptWrite;
use std::time::Duration;

impl App {
    /// Records one try — its attempt row, the decision's new status and the suppression
    /// it causes, in one transaction — and counts it; `took` is how long the try talked
    /// to the server.
    pub async fn record_attempt(&self, write: AttemptWrite, took: Duration) -> AppResult<()> {
        let (status, suppression) = (write.status, write.suppression.as_ref().map(|s| s.reason));
        self.store.record_attempt(write).await?;
        self.metrics.delivery_recorded(status, took);
        if let Some(reason) = suppression {
            self.metrics.suppressed(reason, 1);
        }
        Ok(())
    }
}
