//! Owns SQLite: the schema, the migrations and every SQL string of mailtrail.
//!
//! One writer thread owns the only write connection. Callers hand it jobs over a
//! channel; it runs every job that is waiting in one transaction, each job inside its
//! own savepoint, and answers the callers only after the COMMIT has reached the disk
//! (WAL, `synchronous=FULL`). That is group commit: one fsync for many requests, so
//! throughput grows with concurrency instead of being capped by the disk.
//!
//! Reads use a small pool of read-only connections on tokio's blocking threads. No
//! rusqlite call ever runs on an async executor thread, and nothing outside this
//! module sees a rusqlite type.

mod auth;
mod bench;
mod delivery;
mod ingest;
mod pages;
mod queries;
mod schema;
mod suppressions;
mod time;

pub use auth::{Principal, SessionRecord, TokenRecord, UserRecord};
pub use auth::{hash_secret, new_secret};
pub use bench::{SEED_PROJECTS, SeedReport, seed_bulk, seed_customer_address};
pub use delivery::{
    AttemptRecord, AttemptWrite, Lease, LeasedDecision, ReportAction, ReportEffect, ReportOutcome,
};
pub use ingest::{IdempotencyKey, IngestRequest, Outcome, Recipient, ResendOutcome};
pub use pages::{OutgoingMailHistory, OverviewFacts, SKIPPED_COUNT_CAP, SenderSideGroup};
pub use queries::{
    AuditEntry, CustomerView, DecisionFilter, DecisionRecord, Incident, Membership,
    MetricsSnapshot, Page, ResendSkippedOutcome, Stats, StatsPoint, SuppressionFilter,
    SuppressionRecord, WhyFacts,
};
pub use queries::{parse_cursor, parse_query_time};
pub use suppressions::{BulkRemoveFilter, NewSuppression};
pub use time::{Micros, format_time, now_micros, parse_time};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

/// What can go wrong in the store, as callers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (an unknown project, decision, member, …).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but not acceptable; `field` names the culprit.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// Why.
        message: String,
    },
    /// SQLite failed (disk full, locked too long, corrupt file, …).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone (the process is shutting down).
    #[error("the database writer has stopped")]
    WriterGone,
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// An `Invalid` error naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<crate::model::FieldError> for StoreError {
    fn from(e: crate::model::FieldError) -> Self {
        StoreError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// How the store commits.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Most jobs per transaction. 1 turns group commit off (the benchmark's baseline).
    pub max_batch: usize,
    /// Most idle read connections kept open.
    pub read_pool: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch: 512,
            read_pool: 4,
        }
    }
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

type Completion = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// A cheap, cloneable handle on the database.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending migrations
    /// and starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = open_write_connection(path)?;
        schema::migrate(&conn)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mailtrail-writer".into())
            .spawn(move || writer_loop(conn, inbox, options.max_batch.max(1)))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            jobs,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                keep: options.read_pool,
            }),
            path: Arc::new(path.to_owned()),
        })
    }

    /// Applies the migrations and reports the schema version, without starting a writer.
    pub fn migrate_only(path: &Path) -> Result<(i64, i64), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = open_write_connection(path)?;
        let before = schema::version(&conn)?;
        schema::migrate(&conn)?;
        Ok((before, schema::version(&conn)?))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `job` in the writer's next transaction and answers once it is durable.
    ///
    /// The job runs inside its own savepoint: if it returns an error, its writes are
    /// rolled back and the other jobs of the batch still commit.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, job);
            Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
                };
                // The caller may have gone away (client disconnected); the write stands.
                let _ = tx.send(answer);
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `query` on a read-only connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let conn = readers.take()?;
            let result = query(&conn);
            readers.give(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
    }
}

fn open_write_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Every statement of the store fits: the default (16) made them evict each other.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL lets readers run beside the writer; FULL makes every COMMIT durable (SPEC §8).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -8192)?;
    // Each job's savepoint keeps a statement journal; past 64 KiB SQLite spills it to
    // a temp file, which cost the writer an open, many writes and a close per batch.
    // In memory it costs a copy (measured by `mailtrail bench`, SPEC §8).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Runs `job` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint on error
/// or panic so one bad job never spoils the batch it shares a transaction with.
fn in_savepoint<T>(
    conn: &Connection,
    job: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: parsing these three on every job costs the writer thread
    // about a tenth of an agent add.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)))
        .unwrap_or_else(|_| Err(StoreError::Corrupt("a write job panicked".into())));
    match &result {
        Ok(_) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
        }
        Err(_) => {
            conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
            conn.prepare_cached("RELEASE job")?.execute([])?;
        }
    }
    result
}

fn writer_loop(conn: Connection, inbox: mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begin = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = begin {
            let error = StoreError::from(e);
            tracing::error!(%error, "cannot begin a write transaction");
            // Run nothing; tell every caller.
            for job in batch {
                drop(job);
            }
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if let Err(error) = &commit {
            tracing::error!(%error, "commit failed; the batch is rolled back");
            let _ = conn.execute_batch("ROLLBACK");
        }
        let commit_ref = commit.as_ref().map(|_| ());
        for completion in completions {
            completion(commit_ref);
        }
    }
}

/// Read-only connections, opened on demand and kept up to `keep`.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl ReadPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "cache_size", -4096)?;
        Ok(conn)
    }

    fn give(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
    }
}
