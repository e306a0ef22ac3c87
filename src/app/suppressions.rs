//! The suppression list by hand (SPEC §4, §15): adding one, removing one (with its
//! note), importing a CSV, and removing many at once (an incident, or a filter). Each
//! is audited by the store; these operations add what every front door needs after it:
//! counting new suppressions into the metrics.

use super::{App, AppResult};
use crate::model::{EmailAddress, SuppressionReason};
use crate::store::{BulkOutcome, BulkSelection, NewSuppression, SuppressionRecord};

impl App {
    /// Suppresses `email` by hand (reason `manual`); `Conflict` if it already is.
    pub async fn suppress_by_hand(
        &self,
        email: EmailAddress,
        note: Option<String>,
        by: String,
    ) -> AppResult<SuppressionRecord> {
        let record = self
            .store
            .suppress(
                NewSuppression::plain(email, SuppressionReason::Manual, note),
                by,
            )
            .await?;
        self.metrics.suppressed(SuppressionReason::Manual, 1);
        Ok(record)
    }

    /// Removes the suppression of `email` (`NotFound` when there is none), audited with
    /// `note`.
    pub async fn unsuppress(
        &self,
        email: EmailAddress,
        note: String,
        by: String,
    ) -> AppResult<SuppressionRecord> {
        self.store.unsuppress(email, note, by).await
    }

    /// Imports `rows` all or none; answers (added, already suppressed).
    pub async fn import_suppressions(
        &self,
        rows: Vec<NewSuppression>,
        by: String,
    ) -> AppResult<(i64, i64)> {
        let (added, already) = self.store.import_suppressions(rows, by).await?;
        self.metrics
            .suppressed(SuppressionReason::Import, u64::try_from(added).unwrap_or(0));
        Ok((added, already))
    }

    /// Removes exactly `selection` (an incident's ids, or a filter that never takes
    /// complaints or opt-outs unless it names them) in one audited step; with
    /// `dry_run`, only counts what it would remove.
    pub async fn bulk_remove(
        &self,
        selection: BulkSelection,
        note: String,
        by: String,
        dry_run: bool,
    ) -> AppResult<BulkOutcome> {
        self.store.bulk_remove(selection, note, by, dry_run).await
    }
}
