//! Delivery: turns `send` decisions into emails over SMTP and records what happened.

pub mod report;
mod transport_spec;

pub use transport_spec::{SmtpTls, TransportSpec};

use crate::http::AppState;

/// Starts the delivery worker.
pub fn spawn_worker(_state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = stop.changed().await;
    })
}
