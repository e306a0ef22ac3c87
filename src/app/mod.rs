//! The application layer: the use cases every front door calls.
//!
//! The API, the dashboard, the command line, the delivery worker, the demo seeder and
//! `mailtrail bench` all hold an [`App`] and call its operations; none of them calls
//! another front door. An operation reads and writes through the [`Store`], takes its
//! decisions from pure code (`rules`, `why`, `delivery::classify`, …), and does the
//! bookkeeping every caller would otherwise repeat: counting into [`Metrics`] and waking
//! the delivery worker when mail became due.
//!
//! Errors are [`StoreError`]s: "bad input" (`Invalid`, `NotFound`, `Conflict`) and
//! "the database" (`Database`, `Unavailable`); each front door maps them once (the API to
//! JSON errors, the dashboard to pages, the CLI to exit codes).

mod bounces;
mod decisions;
mod delivery;
pub use delivery::FinishedTry;
mod projects;
mod site;
mod suppressions;
mod webhooks;
mod why;

pub use bounces::{IncomingBounce, ReportAnswer};
pub use decisions::{CREATE_ROLE, MAX_AGENT_ADDRESSES};
pub use suppressions::{BulkRemove, ImportError, bulk_selection, check_note, parse_import};

use crate::config::Config;
use crate::metrics::{Metrics, MetricsError};
use crate::model::Status;
use crate::store::{Outcome, Store, StoreError};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

/// The running application: the store, the checked settings and this process's
/// counters. Cheap to clone; every front door holds one.
#[derive(Clone)]
pub struct App {
    /// The database. Front doors read through it directly only for plain listings;
    /// anything that decides goes through an operation of `App`.
    pub store: Store,
    /// The checked settings.
    pub config: Arc<Config>,
    /// This process's counters, gauges and histograms (SPEC §14).
    pub metrics: Arc<Metrics>,
    /// Whether this process's transport started, for `/readyz`.
    pub readiness: Arc<Readiness>,
    wake: Arc<Notify>,
}

impl App {
    /// An application over `store` and `config`.
    pub fn new(store: Store, config: Config) -> Result<App, MetricsError> {
        Ok(App {
            wake: store.wake(),
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()?),
            readiness: Arc::new(Readiness::default()),
        })
    }

    /// Counts the decisions `outcomes` recorded and wakes the worker if any was queued.
    /// Every operation that records decisions ends here.
    pub fn after_decisions(&self, outcomes: &[Outcome]) {
        self.metrics.decisions_recorded(outcomes);
        if outcomes.iter().any(|o| o.status == Status::Queued) {
            self.wake_worker();
        }
    }

    /// Wakes this process's delivery worker (PostgreSQL also tells other processes'
    /// workers, through `NOTIFY`).
    pub fn wake_worker(&self) {
        self.wake.notify_waiters();
    }

    /// Resolves when some operation made mail due (see [`App::wake_worker`]).
    pub async fn mail_due(&self) {
        self.wake.notified().await;
    }
}

/// Whether a transport was started by this process, or why not.
#[derive(Default)]
pub struct Readiness {
    transport: OnceLock<Result<(), String>>,
}

impl Readiness {
    /// Records that the transport started (`Ok`) or could not (`Err(reason)`).
    pub fn transport(&self, result: Result<(), crate::delivery::transport::TransportError>) {
        let _ = self.transport.set(result.map_err(|e| e.to_string()));
    }

    /// `None` while the transport has not started yet.
    pub fn transport_state(&self) -> Option<&Result<(), String>> {
        self.transport.get()
    }
}

/// What an operation answers: its value, or why it could not.
pub type AppResult<T> = Result<T, StoreError>;
