//! Webhook operations (SPEC §13): subscribe, unsubscribe, and the delivery loop's
//! bookkeeping (counting tries, watching the bounce rate).

use super::App;
use crate::delivery::webhooks::{bounce_rate_crossing, check_url, new_secret};
use crate::model::WebhookEvent;
use crate::store::{NewWebhook, StoreError, TryResult, WebhookRecord, WebhookTry};

type AppResult<T> = Result<T, StoreError>;

/// Longest description kept.
const DESCRIPTION_MAX: usize = 500;

impl App {
    /// Subscribes `url` to `events` (wire names, or `*`). The answer carries the new
    /// secret, the only time it is shown. Bad input is `Invalid` naming the field.
    pub async fn create_webhook(
        &self,
        url: String,
        events: Vec<String>,
        description: Option<String>,
        by: String,
    ) -> AppResult<WebhookRecord> {
        let url = url.trim().to_owned();
        check_url(&url).map_err(|m| StoreError::invalid("url", format!("the URL {m}")))?;
        if events.is_empty() {
            return Err(StoreError::invalid(
                "events",
                "name at least one event, or \"*\" for all",
            ));
        }
        let mut checked: Vec<String> = Vec::with_capacity(events.len());
        for e in &events {
            let e = e.trim();
            if e != "*" && e.parse::<WebhookEvent>().is_err() {
                let known: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                return Err(StoreError::invalid(
                    "events",
                    format!(
                        "unknown event {:?}; known: {}, or \"*\"",
                        e.chars().take(80).collect::<String>(),
                        known.join(", ")
                    ),
                ));
            }
            if !checked.iter().any(|c| c == e) {
                checked.push(e.to_owned());
            }
        }
        let description = description
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        if let Some(d) = &description {
            if d.len() > DESCRIPTION_MAX {
                return Err(StoreError::invalid(
                    "description",
                    format!("longer than {DESCRIPTION_MAX} bytes"),
                ));
            }
            if d.chars().any(char::is_control) {
                return Err(StoreError::invalid(
                    "description",
                    "contains control characters",
                ));
            }
        }
        self.store
            .create_webhook(
                NewWebhook {
                    url,
                    events: checked,
                    description,
                    secret: new_secret(),
                },
                by,
            )
            .await
    }

    /// Removes a subscription with its undelivered messages and log.
    pub async fn delete_webhook(&self, id: String, by: String) -> AppResult<()> {
        self.store.delete_webhook(id, by).await
    }

    /// Records a round of webhook tries and counts them
    /// (`mailtrail_webhook_deliveries_total{result}`).
    pub async fn record_webhook_tries(&self, tries: Vec<WebhookTry>) -> AppResult<()> {
        let outcomes: Vec<bool> = tries
            .iter()
            .filter(|t| t.result != TryResult::Released)
            .map(|t| t.result == TryResult::Delivered)
            .collect();
        self.store.record_webhook_tries(tries).await?;
        for delivered in outcomes {
            self.metrics.webhook_delivery(delivered);
        }
        Ok(())
    }

    /// Looks at the 1-hour bounce rate (only while some subscription wants
    /// `bounce_rate.crossed`) and emits the event when it crossed a line.
    pub async fn check_bounce_rate(&self) -> AppResult<()> {
        if !self.store.bounce_rate_watched().await? {
            return Ok(());
        }
        self.store
            .check_bounce_rate(|previous, counts| {
                bounce_rate_crossing(previous, counts.sent, counts.bounced)
            })
            .await?;
        Ok(())
    }
}
