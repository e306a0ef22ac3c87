//! Owns SQLite: the schema, the migrations and every SQL string of mailtrail.
//!
//! One writer thread owns the only write connection. Callers hand it jobs over a
//! channel; it runs every job that is waiting in one transaction and answers the
//! callers only after the COMMIT has reached the disk (WAL, `synchronous=FULL`). That
//! is group commit: one fsync for many requests, so throughput grows with concurrency
//! instead of being capped by the disk.
//!
//! One job's failure must not spoil the others of its batch. Most failures happen
//! before a job writes anything (an unknown project, a bad field), and leave nothing to
//! undo, so the batch runs without per-job savepoints, which cost SQLite a copy of
//! every page a job touches. Only when a job fails *after* writing is the transaction
//! rolled back and the batch run again, this time each job in its own savepoint.
//!
//! Reads use a small pool of read-only connections on tokio's blocking threads. No
//! rusqlite call ever runs on an async executor thread, and nothing outside this
//! module sees a rusqlite type.

mod auth;
mod bench;
mod bulk_remove;
mod delivery;
mod ingest;
mod pages;
mod paging;
mod queries;
mod schema;
mod suppressions;
mod time;

pub use auth::{Principal, SessionRecord, TokenRecord, UserRecord};
pub use auth::{hash_secret, new_secret};
pub use bench::{SEED_PROJECTS, SeedReport, seed_bulk, seed_customer_address};
pub use bulk_remove::{BulkOutcome, BulkSelection, SAMPLE as BULK_SAMPLE};
pub use delivery::{
    AttemptRecord, AttemptWrite, Lease, LeasedDecision, ReportAction, ReportEffect, ReportOutcome,
};
pub use ingest::{IdempotencyKey, IngestRequest, Outcome, Recipient, ResendOutcome};
pub use pages::{OutgoingMailHistory, OverviewFacts, SKIPPED_COUNT_CAP, SenderSideGroup};
pub use paging::CappedCount;
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

/// WAL pages that trigger a checkpoint (see `open_write_connection`).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

type Job = Box<dyn WriteJob>;

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
    /// If `job` returns an error, its writes are undone and the other jobs of the
    /// batch still commit. The job may run twice (see the module's notes), so it must
    /// not consume what it captured: hence `FnMut`.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(Pending {
            work: job,
            result: None,
            reply,
        });
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
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

/// Process-wide SQLite settings, applied once before the first connection opens.
///
/// Memory statistics make every allocation inside SQLite take a global mutex and update
/// counters nobody here reads; turned off, the writer spends less on each add.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config may only run before sqlite3_initialize; rusqlite
        // initializes on the first open, which this Once precedes in every path that
        // opens a connection. Called later it returns SQLITE_MISUSE and changes nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite was initialized before its configuration");
        }
    });
}

fn open_write_connection(path: &Path) -> Result<Connection, StoreError> {
    configure_sqlite();
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
    // SQLite checkpoints inside the COMMIT that takes the WAL past this many pages, on
    // the writer thread, with two fsyncs. Every agent add dirties a few random index
    // pages, so the default (1,000) checkpointed a dozen times a second under load;
    // 10,000 (40 MiB) does it ten times less often, and a page changed many times in
    // between is copied once (measured: writer time per add down about a tenth, SPEC §8).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(conn)
}

/// How a batch isolates its jobs from each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isolation {
    /// Jobs share the transaction; a job that fails after writing spoils the batch.
    Shared,
    /// Each job in its own savepoint, rolled back alone when it fails.
    Savepoint,
}

/// A write job as the writer thread holds it: run (perhaps twice), then answered.
trait WriteJob: Send {
    /// Runs the job and keeps its result. Returns `true` when the job failed after
    /// writing under [`Isolation::Shared`], which leaves its half in the transaction.
    fn run(&mut self, conn: &Connection, isolation: Isolation) -> bool;

    /// Answers the caller with the job's result, once the batch's COMMIT returned.
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Pending<T, F> {
    work: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection, isolation: Isolation) -> bool {
        let (result, spoiled) = match isolation {
            Isolation::Savepoint => (in_savepoint(conn, &mut self.work), false),
            Isolation::Shared => {
                // Rows changed by completed statements: a failed statement undoes
                // itself, so an unchanged count means the job left nothing behind.
                let before = conn.total_changes();
                let result = unwind_guard(|| (self.work)(conn));
                let spoiled = result.is_err() && conn.total_changes() != before;
                (result, spoiled)
            }
        };
        self.result = Some(result);
        spoiled
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        let answer = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Corrupt("the write job did not run".into())),
            (Err(e), _) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
        };
        // The caller may have gone away (client disconnected); the write stands.
        let _ = self.reply.send(answer);
    }
}

/// Runs `job`, turning a panic into an error so one bad job never takes the writer
/// thread down.
fn unwind_guard<T>(job: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
        .unwrap_or_else(|_| Err(StoreError::Corrupt("a write job panicked".into())))
}

/// Runs `job` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint on error
/// or panic so the job's writes are undone and the batch's other jobs stand.
fn in_savepoint<T>(
    conn: &Connection,
    job: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: parsing these three on every job costs the writer thread
    // about a tenth of an agent add.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = unwind_guard(|| job(conn));
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
        let commit = run_batch(&conn, &mut batch);
        if let Err(error) = &commit {
            tracing::error!(%error, "the write batch is rolled back");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        for job in batch {
            job.answer(commit.as_ref().map(|_| ()));
        }
    }
}

/// Runs every job of `batch` in one transaction and commits it: first with the jobs
/// sharing the transaction, and again with a savepoint each if one of them failed
/// half-way (a lone job is simply rolled back).
fn run_batch(conn: &Connection, batch: &mut [Job]) -> Result<(), StoreError> {
    for isolation in [Isolation::Shared, Isolation::Savepoint] {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut spoiled = false;
        for job in batch.iter_mut() {
            spoiled = job.run(conn, isolation);
            if conn.is_autocommit() {
                // SQLite rolled the transaction back itself (disk full, I/O error):
                // what ran is gone, and the next job would commit on its own.
                return Err(StoreError::Corrupt(
                    "the transaction was rolled back by SQLite".into(),
                ));
            }
            if spoiled {
                break;
            }
        }
        if !spoiled {
            conn.execute_batch("COMMIT")?;
            return Ok(());
        }
        conn.execute_batch("ROLLBACK")?;
        if batch.len() == 1 {
            // Its error is its answer, and nothing else shared the transaction.
            return Ok(());
        }
        tracing::debug!(
            jobs = batch.len(),
            "a job failed after writing; the batch runs again with savepoints"
        );
    }
    Err(StoreError::Corrupt(
        "a job failed after writing inside its savepoint".into(),
    ))
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
        configure_sqlite();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A job for `run_batch`, and the receiver of its answer.
    fn job<T: Send + 'static>(
        work: impl FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> (Job, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(Pending {
            work,
            result: None,
            reply,
        });
        (job, answer)
    }

    fn insert(conn: &Connection, v: &str) -> Result<(), StoreError> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
        Ok(())
    }

    /// A job's first step succeeds and its second fails: half of it is written.
    fn write_then_fail(conn: &Connection) -> Result<(), StoreError> {
        insert(conn, "half")?;
        Err(StoreError::Conflict("second step failed".into()))
    }

    fn rows(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs `batch` as the writer does and answers every job.
    fn run(conn: &Connection, mut batch: Vec<Job>) -> Result<(), String> {
        let commit = run_batch(conn, &mut batch);
        for job in batch {
            job.answer(commit.as_ref().map(|_| ()));
        }
        commit.map_err(|e| e.to_string())
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT PRIMARY KEY)")
            .unwrap();
        conn
    }

    #[test]
    fn jobs_that_succeed_commit_together() {
        let conn = db();
        let (a, a_answer) = job(|c| insert(c, "a"));
        let (b, b_answer) = job(|c| insert(c, "b"));
        run(&conn, vec![a, b]).unwrap();
        assert!(a_answer.blocking_recv().unwrap().is_ok());
        assert!(b_answer.blocking_recv().unwrap().is_ok());
        assert_eq!(rows(&conn), ["a", "b"]);
    }

    #[test]
    fn a_job_failing_before_it_writes_leaves_the_others_alone() {
        let conn = db();
        let (a, _) = job(|c| insert(c, "a"));
        let (bad, bad_answer) = job(|_| Err::<(), _>(StoreError::NotFound("project")));
        let (b, _) = job(|c| insert(c, "b"));
        run(&conn, vec![a, bad, b]).unwrap();
        assert!(matches!(
            bad_answer.blocking_recv().unwrap(),
            Err(StoreError::NotFound("project"))
        ));
        assert_eq!(rows(&conn), ["a", "b"]);
    }

    #[test]
    fn a_job_failing_after_it_writes_is_undone_and_the_batch_runs_again() {
        let conn = db();
        let mut runs = 0;
        let (a, a_answer) = job(move |c| {
            runs += 1;
            insert(c, "a").map(|()| runs)
        });
        let (half, half_answer) = job(write_then_fail);
        let (b, _) = job(|c| insert(c, "b"));
        run(&conn, vec![a, half, b]).unwrap();
        assert_eq!(a_answer.blocking_recv().unwrap().unwrap(), 2, "ran twice");
        assert!(matches!(
            half_answer.blocking_recv().unwrap(),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(rows(&conn), ["a", "b"]);
    }

    #[test]
    fn a_lone_job_failing_after_it_writes_is_rolled_back() {
        let conn = db();
        let (half, half_answer) = job(write_then_fail);
        run(&conn, vec![half]).unwrap();
        assert!(half_answer.blocking_recv().unwrap().is_err());
        assert!(rows(&conn).is_empty());
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_failed_statement_undoes_itself_and_does_not_spoil_the_batch() {
        let conn = db();
        insert(&conn, "taken").unwrap();
        let (dup, dup_answer) = job(|c| insert(c, "taken"));
        let (b, _) = job(|c| insert(c, "b"));
        run(&conn, vec![dup, b]).unwrap();
        assert!(matches!(
            dup_answer.blocking_recv().unwrap(),
            Err(StoreError::Sqlite(_))
        ));
        assert_eq!(rows(&conn), ["b", "taken"]);
    }

    #[test]
    fn a_panicking_job_is_an_error_and_its_writes_are_undone() {
        let conn = db();
        let (a, _) = job(|c| insert(c, "a"));
        let (boom, boom_answer) = job(|c| -> Result<(), StoreError> {
            insert(c, "boom")?;
            panic!("a bug in a job")
        });
        run(&conn, vec![a, boom]).unwrap();
        assert!(matches!(
            boom_answer.blocking_recv().unwrap(),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(rows(&conn), ["a"]);
    }
}
