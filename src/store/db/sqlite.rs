//! SQLite's connections: the writer's and the readers' settings, and the conversion the
//! SQLite-only bulk seeder (`store::bench`, which drives rusqlite directly) relies on.

use super::{Db, DbError};
use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// WAL pages that trigger a checkpoint (see [`open_writer`]).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// Lets the bulk seeder (`store::bench`) use `?` on rusqlite's errors. Everything else
/// reaches [`StoreError`] through [`DbError`]; this impl goes the same way.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::from(e).into()
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

/// The writer's connection: WAL, durable commits, foreign keys on.
pub(crate) fn open_writer(path: &Path) -> Result<Db, DbError> {
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
    Ok(Db::sqlite(conn))
}

/// A reader's connection: read-only, no mutex of its own (one thread uses it at a time).
pub(crate) fn open_reader(path: &Path) -> Result<Db, DbError> {
    configure_sqlite();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "cache_size", -4096)?;
    Ok(Db::sqlite(conn))
}

impl Db {
    /// A private in-memory SQLite database (tests: query plans on the real schema).
    #[cfg(test)]
    pub(crate) fn sqlite_in_memory() -> Result<Db, DbError> {
        Ok(Db::sqlite(Connection::open_in_memory()?))
    }
}
