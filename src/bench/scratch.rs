//! A fresh store for one measured configuration: a SQLite file in the run's directory,
//! or, with `--db postgres://…`, a scratch database on that server, dropped afterwards.

use crate::store::DbLocation;
use std::path::Path;

/// One measured configuration's database.
pub struct ScratchDb {
    location: DbLocation,
    /// `(server URL, database name)` of a scratch PostgreSQL database to drop.
    postgres: Option<(String, String)>,
}

impl ScratchDb {
    /// `{label}.db` in `dir`, or a database `mtbench_{pid}_{label}` on `postgres`.
    pub async fn new(postgres: Option<&str>, dir: &Path, label: &str) -> anyhow::Result<Self> {
        let Some(server) = postgres else {
            return Ok(ScratchDb {
                location: DbLocation::Sqlite(dir.join(format!("{label}.db"))),
                postgres: None,
            });
        };
        let name = format!("mtbench_{}_{label}", std::process::id());
        let (url, db) = (server.to_owned(), name.clone());
        let created =
            tokio::task::spawn_blocking(move || crate::store::create_scratch_database(&url, &db))
                .await??;
        Ok(ScratchDb {
            location: DbLocation::Postgres(created),
            postgres: Some((server.to_owned(), name)),
        })
    }

    /// Where the store is.
    pub fn location(&self) -> &DbLocation {
        &self.location
    }

    /// The value for `MAILTRAIL_DB` of a server or worker process (password kept).
    pub fn setting(&self) -> String {
        match &self.location {
            DbLocation::Sqlite(path) => path.display().to_string(),
            DbLocation::Postgres(url) => url.clone(),
        }
    }

    /// Drops a scratch PostgreSQL database now, waiting for it.
    pub async fn close(mut self) {
        if let Some((url, name)) = self.postgres.take() {
            let _ = tokio::task::spawn_blocking(move || {
                crate::store::drop_scratch_database(&url, &name)
            })
            .await;
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // Not closed (an error cut the run short): drop it on a thread of its own, since
        // the blocking client must not run on an async executor thread.
        if let Some((url, name)) = self.postgres.take() {
            std::thread::spawn(move || crate::store::drop_scratch_database(&url, &name));
        }
    }
}
