//! Recording decisions (SPEC §3, §5): adding customers, resending, re-queueing what was
//! skipped. The store reads the facts and applies the pure rules in one transaction;
//! these operations add what every caller needs after it: counting the decisions and
//! waking the delivery worker when mail became due.

use super::{App, AppResult};
use crate::model::{EmailAddress, ProjectKey, ReasonCode, Role};
use crate::store::{
    IdempotencyKey, IngestRequest, Micros, Outcome, ResendOutcome, ResendSkippedOutcome,
};

/// Who may record decisions (add customers, resend). SPEC §6 gives support "look up,
/// resend", so the service desk's integration uses an admin token.
pub const CREATE_ROLE: Role = Role::Admin;

/// Most addresses in one agent add (SPEC §3).
pub const MAX_AGENT_ADDRESSES: usize = 1000;

impl App {
    /// Records one decision per recipient of `request` (customers join the project as
    /// the rules say), committed before this returns.
    pub async fn ingest(
        &self,
        request: IngestRequest,
        idempotency: Option<IdempotencyKey>,
    ) -> AppResult<Vec<Outcome>> {
        let outcomes = self.store.ingest(request, idempotency).await?;
        self.after_decisions(&outcomes);
        Ok(outcomes)
    }

    /// Records a `resend` decision for a member of `project`.
    pub async fn resend(
        &self,
        project: ProjectKey,
        email: EmailAddress,
        idempotency: Option<IdempotencyKey>,
    ) -> AppResult<ResendOutcome> {
        let outcome = self.store.resend(project, email, idempotency).await?;
        if let ResendOutcome::Recorded(recorded) = &outcome {
            self.after_decisions(std::slice::from_ref(recorded));
        }
        Ok(outcome)
    }

    /// Re-queues, as new resend decisions, what was skipped for `reason` in the window.
    pub async fn resend_skipped(
        &self,
        reason: ReasonCode,
        window: (Micros, Micros),
        project: Option<ProjectKey>,
        by: String,
        idempotency: Option<IdempotencyKey>,
    ) -> AppResult<ResendSkippedOutcome> {
        let (since, until) = window;
        let outcome = self
            .store
            .resend_skipped(reason, since, until, project, by, idempotency)
            .await?;
        if outcome.queued > 0 {
            self.wake_worker();
        }
        Ok(outcome)
    }
}
