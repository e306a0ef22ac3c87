//! Owns the database: the schema, the migrations and every SQL string of mailtrail,
//! on either engine (SQLite, the embedded default, or PostgreSQL; SPEC §10).
//!
//! The queries are written once, against [`db::Db`], in the SQL both engines speak; an
//! engine only opens connections, supplies its schema and, where the engines really
//! differ, its own statement text. The decisions themselves come from pure code
//! (`rules`, `delivery::classify`, …) shared by both.
//!
//! One writer thread owns the only write connection of this process. Callers hand it
//! jobs over a channel; it runs every job that is waiting in one transaction and answers
//! the callers only after the COMMIT is durable (SQLite: WAL, `synchronous=FULL`;
//! PostgreSQL: `synchronous_commit=on`). That is group commit: one flush for many
//! requests, so throughput grows with concurrency instead of being capped by the disk.
//!
//! One job's failure must not spoil the others of its batch. Most failures happen
//! before a job writes anything (an unknown project, a bad field), and leave nothing to
//! undo, so the batch runs without per-job savepoints, which cost SQLite a copy of
//! every page a job touches. Only when a job fails *after* writing (or, on PostgreSQL,
//! after any failed statement, which spoils the transaction) is the transaction rolled
//! back and the batch run again, this time each job in its own savepoint. On
//! PostgreSQL, where other processes write too, a batch that lost a race (a unique key
//! taken meanwhile, a serialization failure) runs again and sees the winner's rows.
//!
//! Reads use a small pool of connections on tokio's blocking threads. No database call
//! ever runs on an async executor thread, and nothing outside this module sees a driver
//! type.

mod accounts;
mod audit;
mod auth;
mod bench;
mod bulk_remove;
mod copy;
pub mod db;
mod decisions;
mod delivery;
mod filter;
pub mod idempotency;
mod ingest;
mod location;
mod login_throttle;
mod metrics;
mod pages;
mod postgres;
pub use postgres::{create_scratch_database, drop_scratch_database};
mod paging;
mod projects;
mod records;
mod retention;
mod schema;
mod site;
mod stats;
mod suppressions;
mod time;
mod webhooks;
mod why;

pub use accounts::{TokenListing, UserListing};
pub use audit::AuditEntry;
pub use auth::{Principal, SessionRecord, TokenRecord, UserRecord};
pub use auth::{hash_secret, new_secret};
pub use bench::{SEED_PROJECTS, SeedReport, seed_bulk, seed_customer_address};
pub use bulk_remove::{BulkOutcome, BulkSelection, SAMPLE as BULK_SAMPLE};
pub use copy::{CopyReport, copy};
pub use db::Engine;
pub use decisions::{DecisionFilter, parse_cursor, parse_query_time};
pub use delivery::{
    AttemptRecord, AttemptWrite, BounceMessageRecord, Lease, LeasedDecision, NewBounceMessage,
    ReportAction, ReportEffect, ReportOutcome,
};
pub use ingest::{
    IdempotencyKey, IngestRequest, Outcome, Recipient, ResendOutcome, ResendSkippedOutcome,
};
pub use location::DbLocation;
pub use metrics::QueueGauges;
pub use pages::{OutgoingMailHistory, OverviewFacts, SKIPPED_COUNT_CAP, SenderSideGroup};
pub use paging::CappedCount;
pub use records::{DecisionRecord, Page, SuppressionRecord};
pub use retention::{PurgePlan, Purged};
pub use stats::{Stats, StatsPoint};
pub use suppressions::{BulkRemoveFilter, Incident, NewSuppression, SuppressionFilter};
pub use time::{Micros, format_time, now_micros, parse_time};
pub use webhooks::{
    HourCounts, LeasedWebhookMessage, NewWebhook, TryResult, WebhookDelivery, WebhookRecord,
    WebhookTry,
};
pub use why::{CustomerView, Membership, WhyFacts};

use db::{Db, DbError};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

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
    /// Well-formed but refused for a reason with its own error code (e.g. a body that is
    /// not a bounce report, SPEC §11 `not_a_report`); `field` names the culprit.
    #[error("{field}: {message}")]
    Refused {
        /// The snake_case error code.
        code: &'static str,
        /// The field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The database failed (disk full, locked too long, corrupt file, a bad query, …).
    #[error("database error: {0}")]
    Database(DbError),
    /// The database cannot be reached now (PostgreSQL is down or restarting); the same
    /// request may work later, and nothing of it was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The writer thread is gone (the process is shutting down).
    #[error("the database writer has stopped")]
    WriterGone,
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(e)
        }
    }
}

impl StoreError {
    /// An `Invalid` error naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Running the same job again may succeed: another process got there first.
    fn is_contention(&self) -> bool {
        matches!(self, StoreError::Database(e) if e.is_contention())
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
    /// Writer threads, each with its own connection (PostgreSQL only; SQLite has one
    /// writer). Group commit needs one; the benchmark's baseline on PostgreSQL commits
    /// one transaction per request through a pool as large as its client count.
    pub writers: usize,
    /// Most idle read connections kept open.
    pub read_pool: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch: 512,
            writers: POSTGRES_GROUP_WRITERS,
            read_pool: 8,
        }
    }
}

/// Group-committing writer connections per process on PostgreSQL: each statement is a
/// network round trip, so one writer would wait on the wire most of the time; several,
/// each grouping the jobs waiting when it is free, keep the server busy. SQLite has one.
pub const POSTGRES_GROUP_WRITERS: usize = 8;

/// Most reads at once on PostgreSQL, each on a connection of its own: a server's
/// connection slots are shared by every process of the deployment.
const POSTGRES_READERS: usize = 16;

/// Times a batch that lost a race to another process runs again.
const CONTENTION_RETRIES: usize = 3;

type Job = Box<dyn WriteJob>;

/// Opens a connection of the store's engine (the writer's, or a reader's).
type Opener = Arc<dyn Fn(Role) -> Result<Db, StoreError> + Send + Sync>;

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// A cheap, cloneable handle on the database.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
    location: Arc<DbLocation>,
    wake: Arc<Notify>,
    /// Bounds the reads in flight (PostgreSQL only; SQLite opens files, not slots).
    read_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl Store {
    /// Opens (creating if needed) the database at `location`, applies pending
    /// migrations and starts the writer thread (and, on PostgreSQL, the listener that
    /// wakes this process's worker when another process queues mail).
    pub fn open(location: &DbLocation, options: StoreOptions) -> Result<Store, StoreError> {
        let opener = opener(location)?;
        let conn = opener(Role::Writer)?;
        schema::migrate(&conn)?;
        let wake = Arc::new(Notify::new());
        if let DbLocation::Postgres(url) = location {
            postgres::listen_for_due(url.clone(), wake.clone())?;
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        let writers = match location {
            DbLocation::Sqlite(_) => 1,
            DbLocation::Postgres(_) => options.writers.max(1),
        };
        let mut first = Some(conn);
        for n in 0..writers {
            let conn = match first.take() {
                Some(conn) => conn,
                None => opener(Role::Writer)?,
            };
            let (opener, inbox) = (opener.clone(), inbox.clone());
            std::thread::Builder::new()
                .name(format!("mailtrail-writer-{n}"))
                .spawn(move || writer_loop(conn, opener, &inbox, options.max_batch.max(1)))
                .map_err(|e| StoreError::Corrupt(format!("cannot start a writer thread: {e}")))?;
        }
        Ok(Store {
            jobs,
            readers: Arc::new(ReadPool {
                opener,
                idle: Mutex::new(Vec::new()),
                keep: options.read_pool,
            }),
            location: Arc::new(location.clone()),
            wake,
            read_slots: match location {
                DbLocation::Sqlite(_) => None,
                DbLocation::Postgres(_) => {
                    Some(Arc::new(tokio::sync::Semaphore::new(POSTGRES_READERS)))
                }
            },
        })
    }

    /// [`Store::open`] on a blocking thread, for async callers (the drivers block).
    pub async fn connect(
        location: &DbLocation,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let location = location.clone();
        tokio::task::spawn_blocking(move || Store::open(&location, options))
            .await
            .map_err(|e| StoreError::Corrupt(format!("opening the store failed: {e}")))?
    }

    /// Applies the migrations and reports the schema version before and after, without
    /// starting a writer.
    pub fn migrate_only(location: &DbLocation) -> Result<(i64, i64), StoreError> {
        let conn = opener(location)?(Role::Writer)?;
        let before = schema::version(&conn)?;
        schema::migrate(&conn)?;
        Ok((before, schema::version(&conn)?))
    }

    /// Where the database is.
    pub fn location(&self) -> &DbLocation {
        &self.location
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        self.location.engine()
    }

    /// Notified whenever mail may have become due: by this process's writes (callers
    /// notify it) and, on PostgreSQL, by any process's (through `LISTEN`).
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs `job` in the writer's next transaction and answers once it is durable.
    ///
    /// If `job` returns an error, its writes are undone and the other jobs of the
    /// batch still commit. The job may run twice (see the module's notes), so it must
    /// not consume what it captured: hence `FnMut`.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Db) -> Result<T, StoreError> + Send + 'static,
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

    /// Runs `query` on a pooled connection on a blocking thread.
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let span = tracing::Span::current();
        let slot = match &self.read_slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::WriterGone)?,
            ),
            None => None,
        };
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let _entered = span.enter();
            let conn = readers.take()?;
            let result = query(&conn);
            if !conn.is_broken() {
                readers.give(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
    }
}

/// The function that opens connections to `location`.
fn opener(location: &DbLocation) -> Result<Opener, StoreError> {
    match location {
        DbLocation::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Corrupt(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let path = path.clone();
            Ok(Arc::new(move |role| {
                Ok(match role {
                    Role::Writer => db::sqlite::open_writer(&path)?,
                    Role::Reader => db::sqlite::open_reader(&path)?,
                })
            }))
        }
        DbLocation::Postgres(url) => {
            let url = url.clone();
            Ok(Arc::new(move |_| postgres::connect(&url)))
        }
    }
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
    fn run(&mut self, conn: &Db, isolation: Isolation) -> bool;

    /// Whether the job's last run lost a race to another process (worth a rerun).
    fn lost_race(&self) -> bool;

    /// Whether the job has run at all (a batch can fail at its BEGIN).
    fn ran(&self) -> bool;

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
    F: FnMut(&Db) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Db, isolation: Isolation) -> bool {
        let (result, spoiled) = match isolation {
            Isolation::Savepoint => (in_savepoint(conn, &mut self.work), false),
            Isolation::Shared => {
                // Rows changed by completed statements (and, on PostgreSQL, failed
                // statements): an unchanged count means the job left nothing behind.
                let before = conn.marks();
                let result = unwind_guard(|| (self.work)(conn));
                let spoiled = result.is_err() && conn.marks() != before;
                (result, spoiled)
            }
        };
        self.result = Some(result);
        spoiled
    }

    fn lost_race(&self) -> bool {
        matches!(&self.result, Some(Err(e)) if e.is_contention())
    }

    fn ran(&self) -> bool {
        self.result.is_some()
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        let answer = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Corrupt("the write job did not run".into())),
            (Err(StoreError::Unavailable(e)), _) => Err(StoreError::Unavailable(e.clone())),
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
    conn: &Db,
    job: impl FnOnce(&Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: parsing these three on every job costs the writer thread
    // about a tenth of an agent add.
    conn.prepare_cached("SAVEPOINT job")?
        .execute(db::params![])?;
    let result = unwind_guard(|| job(conn));
    match &result {
        Ok(_) => {
            conn.prepare_cached("RELEASE SAVEPOINT job")?
                .execute(db::params![])?;
        }
        Err(_) => {
            conn.prepare_cached("ROLLBACK TO SAVEPOINT job")?
                .execute(db::params![])?;
            conn.prepare_cached("RELEASE SAVEPOINT job")?
                .execute(db::params![])?;
        }
    }
    result
}

/// How long the writer waits between tries to reach a database that went away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The next batch: the first waiting job, and up to `max_batch - 1` more already
/// waiting. `None` once every `Store` handle is gone. Several writers (PostgreSQL's
/// baseline pool) take turns at the one inbox.
fn next_batch(inbox: &Mutex<mpsc::Receiver<Job>>, max_batch: usize) -> Option<Vec<Job>> {
    let inbox = inbox.lock().ok()?;
    let first = inbox.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match inbox.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn writer_loop(conn: Db, opener: Opener, inbox: &Mutex<mpsc::Receiver<Job>>, max_batch: usize) {
    let mut conn = Some(conn);
    while let Some(mut batch) = next_batch(inbox, max_batch) {
        // A connection that broke (PostgreSQL restarted) is opened again; while that
        // fails, the batch is answered "unavailable" and nothing of it is written.
        if conn.as_ref().is_none_or(Db::is_broken) {
            conn = match opener(Role::Writer) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the database is unreachable");
                    let e = StoreError::Unavailable(e.to_string());
                    for job in batch {
                        job.answer(Err(&e));
                    }
                    std::thread::sleep(RECONNECT_PAUSE);
                    continue;
                }
            };
        }
        let Some(db) = conn.take() else { continue };
        let mut db = db;
        let mut commit = run_batch_retrying(&db, &mut batch);
        // A PostgreSQL connection that died while idle (the server restarted) is found
        // out at the batch's BEGIN, before any job ran: the batch runs on a new one.
        if matches!(commit, Err(StoreError::Unavailable(_)))
            && db.is_broken()
            && !batch.iter().any(|job| job.ran())
            && let Ok(fresh) = opener(Role::Writer)
        {
            db = fresh;
            commit = run_batch_retrying(&db, &mut batch);
        }
        if let Err(error) = &commit {
            tracing::error!(%error, "the write batch is rolled back");
            if !db.is_autocommit() || db.engine() == db::Engine::Postgres {
                let _ = db.rollback();
            }
        }
        conn = Some(db);
        for job in batch {
            job.answer(commit.as_ref().map(|_| ()));
        }
    }
}

/// [`run_batch`], again while a job lost a race to another process (PostgreSQL).
fn run_batch_retrying(conn: &Db, batch: &mut [Job]) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        let result = run_batch(conn, batch);
        tries += 1;
        let lost = batch.iter().any(|job| job.lost_race());
        if !lost || tries > CONTENTION_RETRIES {
            return result;
        }
        if result.is_ok() {
            // What committed is in; rerunning would apply it twice. Only a batch whose
            // every job lost can run again as a whole, which is the lone-job case.
            if batch.len() > 1 {
                return result;
            }
        }
        tracing::debug!(
            tries,
            "a write lost a race to another process; running it again"
        );
    }
}

/// Runs every job of `batch` in one transaction and commits it: first with the jobs
/// sharing the transaction, and again with a savepoint each if one of them failed
/// half-way (a lone job is simply rolled back).
fn run_batch(conn: &Db, batch: &mut [Job]) -> Result<(), StoreError> {
    for isolation in [Isolation::Shared, Isolation::Savepoint] {
        conn.begin_write()?;
        let mut spoiled = false;
        for job in batch.iter_mut() {
            spoiled = job.run(conn, isolation);
            if conn.is_autocommit() {
                // SQLite rolled the transaction back itself (disk full, I/O error):
                // what ran is gone, and the next job would commit on its own.
                return Err(StoreError::Corrupt(
                    "the transaction was rolled back by the database".into(),
                ));
            }
            if conn.is_broken() {
                return Err(StoreError::Unavailable(
                    "the connection to the database was lost".into(),
                ));
            }
            if spoiled {
                break;
            }
        }
        if !spoiled {
            conn.commit()?;
            return Ok(());
        }
        conn.rollback()?;
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

/// Connections for reads, opened on demand and kept up to `keep`.
struct ReadPool {
    opener: Opener,
    idle: Mutex<Vec<Db>>,
    keep: usize,
}

impl ReadPool {
    fn take(&self) -> Result<Db, StoreError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        (self.opener)(Role::Reader)
    }

    fn give(&self, conn: Db) {
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
        work: impl FnMut(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> (Job, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(Pending {
            work,
            result: None,
            reply,
        });
        (job, answer)
    }

    fn insert(conn: &Db, v: &str) -> Result<(), StoreError> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", db::params![v])?;
        Ok(())
    }

    /// A job's first step succeeds and its second fails: half of it is written.
    fn write_then_fail(conn: &Db) -> Result<(), StoreError> {
        insert(conn, "half")?;
        Err(StoreError::Conflict("second step failed".into()))
    }

    fn rows(conn: &Db) -> Vec<String> {
        let mut stmt = conn.prepare_cached("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map(db::params![], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs `batch` as the writer does and answers every job.
    fn run(conn: &Db, mut batch: Vec<Job>) -> Result<(), String> {
        let commit = run_batch(conn, &mut batch);
        for job in batch {
            job.answer(commit.as_ref().map(|_| ()));
        }
        commit.map_err(|e| e.to_string())
    }

    fn db() -> Db {
        let conn = Db::sqlite_in_memory().unwrap();
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
            Err(StoreError::Database(_))
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
