//! The HTTP edge: the JSON API under `/api/v1`, the dashboard, `/healthz`, `/metrics`.
//!
//! Handlers parse requests into proven types, call the store (or the pure `why`), and
//! turn results and errors into answers. They hold no business rules.

pub mod api;
pub mod dashboard;
pub mod error;
pub mod extract;
#[cfg(test)]
mod fuzz;
pub mod metrics;
pub mod openapi;
pub mod ops;
mod router;
pub mod serve;
pub mod throttle;

pub use router::router;

use crate::config::Config;
use crate::store::{Outcome, Store};
use std::sync::Arc;
use tokio::sync::Notify;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The checked settings.
    pub config: Arc<Config>,
    /// Wakes the in-process delivery worker when something was queued.
    pub wake: Arc<Notify>,
    /// This process's counters, gauges and histograms (SPEC §14).
    pub metrics: Arc<metrics::Metrics>,
    /// Whether the transport started, for `/readyz`.
    pub readiness: Arc<ops::Readiness>,
    /// The transport writes .eml files outside `--demo`: every dashboard page says
    /// so (SPEC §14 "File transport").
    pub file_transport_banner: bool,
}

impl AppState {
    /// A state over `store` and `config`.
    pub fn new(store: Store, config: Config) -> Result<Self, metrics::MetricsError> {
        Ok(AppState {
            wake: store.wake(),
            store,
            config: Arc::new(config),
            metrics: Arc::new(metrics::Metrics::new()?),
            readiness: Arc::new(ops::Readiness::default()),
            file_transport_banner: false,
        })
    }

    /// Counts the decisions `outcomes` recorded and wakes the worker if any was queued.
    /// Every path that records decisions for a caller ends here.
    pub fn after_decisions(&self, outcomes: &[Outcome]) {
        self.metrics.decisions_recorded(outcomes);
        if outcomes
            .iter()
            .any(|o| o.status == crate::model::Status::Queued)
        {
            self.wake.notify_waiters();
        }
    }
}

/// Serves the application on `listener` until `shutdown` resolves, with the timeouts
/// and connection cap of SPEC §14 (see [`serve::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = state.config.max_connections;
    serve::serve(listener, router(state), max_connections, shutdown).await
}
