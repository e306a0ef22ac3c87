//! The HTTP edge: the JSON API under `/api/v1`, the dashboard, `/healthz`, `/metrics`.
//!
//! Handlers parse requests into proven types, call the store (or the pure `why`), and
//! turn results and errors into answers. They hold no business rules.

pub mod api;
pub mod csv;
pub mod dashboard;
pub mod error;
pub mod extract;
#[cfg(test)]
mod fuzz;
pub mod openapi;
pub mod ops;
mod router;
pub mod serve;
pub mod throttle;

pub use router::router;

use crate::app::App;
use std::ops::Deref;

/// What every handler shares: the application, and what only the HTTP edge needs.
/// Cheap to clone. Handlers reach the application's operations through `Deref`.
#[derive(Clone)]
pub struct AppState {
    /// The application every front door calls.
    pub app: App,
    /// The transport writes .eml files outside `--demo`: every dashboard page says
    /// so (SPEC §14 "File transport").
    pub file_transport_banner: bool,
}

impl AppState {
    /// The HTTP edge over `app`.
    pub fn new(app: App) -> Self {
        AppState {
            app,
            file_transport_banner: false,
        }
    }
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
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
