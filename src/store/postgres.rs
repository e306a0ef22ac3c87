//! The PostgreSQL engine's connections: opening one (with `synchronous_commit` on),
//! and the listener that wakes this process's worker when any process leaves mail due.
//!
//! The `postgres` client is `tokio-postgres` driven on the calling thread, so it runs
//! where the SQLite calls run: on the writer thread and on blocking threads, never on an
//! async executor thread.

use super::StoreError;
use super::db::{Db, PgConn};
use postgres::fallible_iterator::FallibleIterator;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a connection attempt may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel the schema's trigger notifies when a transaction leaves mail due.
const DUE_CHANNEL: &str = "mailtrail_due";

fn config(url: &str) -> Result<postgres::Config, StoreError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::invalid("db", format!("not a PostgreSQL URL ({e})")))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("mailtrail");
    }
    Ok(config)
}

fn client(url: &str) -> Result<postgres::Client, StoreError> {
    let config = config(url)?;
    config.connect(postgres::NoTls).map_err(|e| {
        let e = super::db::DbError::from(e);
        if e.is_unavailable() {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::invalid("db", format!("cannot connect to PostgreSQL: {e}"))
        }
    })
}

/// Opens a connection: committed means flushed (`synchronous_commit = on`), whatever
/// the server's default, and times are compared as the integers they are stored as.
pub(super) fn connect(url: &str) -> Result<Db, StoreError> {
    let mut client = client(url)?;
    client
        .batch_execute("SET synchronous_commit = on; SET lock_timeout = '10s';")
        .map_err(super::db::DbError::from)?;
    Ok(Db::postgres(PgConn::new(client)))
}

/// Starts a thread that `LISTEN`s on the due channel and wakes `wake` on every
/// notification, reconnecting when the server goes away (the worker also polls, so a
/// missed notification costs at most one poll interval).
pub(super) fn listen_for_due(url: String, wake: Arc<Notify>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("mailtrail-listen".into())
        .spawn(move || {
            loop {
                if let Err(e) = listen(&url, &wake) {
                    tracing::debug!(error = %e, "the LISTEN connection ended; reopening");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the listener thread: {e}")))?;
    Ok(())
}

fn listen(url: &str, wake: &Notify) -> Result<(), StoreError> {
    let mut client = client(url)?;
    client
        .batch_execute(&format!("LISTEN {DUE_CHANNEL}"))
        .map_err(super::db::DbError::from)?;
    // Whatever was queued while we were not listening.
    wake.notify_waiters();
    let mut notifications = client.notifications();
    let mut iter = notifications.blocking_iter();
    loop {
        match iter.next() {
            Ok(Some(_)) => wake.notify_waiters(),
            Ok(None) => return Ok(()),
            Err(e) => return Err(super::db::DbError::from(e).into()),
        }
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A new, empty database on the server of `url`, named `name`; answers its URL. For
/// the benchmark, which needs a fresh store per measured configuration.
pub fn create_scratch_database(url: &str, name: &str) -> Result<String, StoreError> {
    let mut admin = client(url)?;
    // Two statements: PostgreSQL runs neither inside a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .map_err(super::db::DbError::from)?;
    }
    Ok(with_database(url, name))
}

/// Drops a database made by [`create_scratch_database`]; connected through `url`
/// (another database of the same server).
pub fn drop_scratch_database(url: &str, name: &str) -> Result<(), StoreError> {
    let mut admin = client(url)?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .map_err(super::db::DbError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/main?sslmode=require", "b1"),
            "postgres://u:p@h:5432/b1?sslmode=require"
        );
        assert_eq!(with_database("postgres://h", "b1"), "postgres://h/b1");
    }
}
