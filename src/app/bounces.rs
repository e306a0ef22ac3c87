//! A bounce or complaint arrives (SPEC §4, §11): through `POST /api/v1/bounces` or the
//! SMTP door, the same pipeline — parse (pure, off the executor), map to actions (pure),
//! apply in one transaction, count.

use super::{App, AppResult};
use crate::delivery::{bounces, report};
use crate::model::SuppressionReason;
use crate::store::{ReportOutcome, StoreError};
use serde::Serialize;

/// One received message, as a door hands it over.
#[derive(Debug, Clone)]
pub struct IncomingBounce {
    /// The whole message, headers and body, as received.
    pub raw: Vec<u8>,
    /// The `RCPT TO` it came to when it came over SMTP (a VERP address or the feedback
    /// address); `None` over HTTP.
    pub smtp_recipient: Option<String>,
}

/// What a received report did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportAnswer {
    /// `dsn` or `complaint`.
    #[serde(rename = "type")]
    pub kind: String,
    /// One entry per address the report names.
    pub recipients: Vec<ReportOutcome>,
}

impl App {
    /// Understands `message` and applies what it proves, committed before this returns;
    /// `by` is the actor the audit names. A message that is not understood is an
    /// `Invalid` error on `body` and changes nothing.
    pub async fn receive_bounce(
        &self,
        message: IncomingBounce,
        by: &str,
    ) -> AppResult<ReportAnswer> {
        let raw = message.raw;
        let (parsed, raw) = tokio::task::spawn_blocking(move || (report::parse(&raw), raw))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the report parser failed");
                StoreError::invalid("body", "the message could not be read")
            })?;
        let parsed = parsed.map_err(|e| {
            self.metrics.bounce_report("invalid");
            StoreError::invalid("body", e.to_string())
        })?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (kind, actions) = bounces::actions(&parsed, &raw).map_err(|m| {
            self.metrics.bounce_report("invalid");
            StoreError::invalid("body", m)
        })?;
        let recipients = self
            .store
            .apply_report(kind.clone(), actions, raw, by.to_owned())
            .await?;
        let reason = if kind == "complaint" {
            SuppressionReason::Complaint
        } else {
            SuppressionReason::BounceReport
        };
        for r in &recipients {
            self.metrics.bounce_report(&r.result);
            if r.result == "suppressed" {
                self.metrics.suppressed(reason, 1);
            }
        }
        Ok(ReportAnswer { kind, recipients })
    }
}
