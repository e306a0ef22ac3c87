//! The HTTP edge: the JSON API under `/api/v1`, the dashboard, `/healthz`, `/metrics`.
//!
//! Handlers parse requests into proven types, call the store (or the pure `why`), and
//! turn results and errors into answers. They hold no business rules.

pub mod api;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod metrics;
mod router;

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
    /// In-process histograms.
    pub metrics: Arc<metrics::Metrics>,
    /// The transport writes .eml files outside `--demo`: every dashboard page says
    /// so (SPEC §14 "File transport").
    pub file_transport_banner: bool,
}

impl AppState {
    /// A state over `store` and `config`.
    pub fn new(store: Store, config: Config) -> Self {
        AppState {
            store,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
            metrics: Arc::new(metrics::Metrics::default()),
            file_transport_banner: false,
        }
    }

    /// Wakes the worker if any of `outcomes` was queued.
    pub fn after_decisions(&self, outcomes: &[Outcome]) {
        if outcomes
            .iter()
            .any(|o| o.status == crate::model::Status::Queued)
        {
            self.wake.notify_waiters();
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address lets the dashboard throttle failed logins per client address.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
