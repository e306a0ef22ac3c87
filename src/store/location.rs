//! Where the database is: a SQLite file, or a PostgreSQL URL (SPEC §10).

use super::db::Engine;
use std::fmt;
use std::path::PathBuf;

/// The `db` setting, parsed: which engine, and where.
#[derive(Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// A SQLite database file (created when missing).
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl DbLocation {
    /// Reads a `db` setting: a PostgreSQL URL by its scheme, else a SQLite path.
    pub fn parse(value: &str) -> Result<DbLocation, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("an empty path".into());
        }
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            value
                .parse::<postgres::Config>()
                .map_err(|e| format!("not a PostgreSQL URL ({e})"))?;
            return Ok(DbLocation::Postgres(value.to_owned()));
        }
        if lower.contains("://") {
            return Err(
                "not a SQLite path nor a postgres:// URL (other engines are not supported)".into(),
            );
        }
        Ok(DbLocation::Sqlite(PathBuf::from(value)))
    }

    /// The engine this location names.
    pub fn engine(&self) -> Engine {
        match self {
            DbLocation::Sqlite(_) => Engine::Sqlite,
            DbLocation::Postgres(_) => Engine::Postgres,
        }
    }
}

/// Shows the location with any password replaced by `***`, so it can be logged.
impl fmt::Display for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbLocation::Sqlite(path) => write!(f, "{}", path.display()),
            DbLocation::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbLocation({self})")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return redact_query(url);
    };
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    redact_query(&format!("{scheme}://{user}@{host}{tail}"))
}

/// Hides a `password=` query parameter too.
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{base}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_postgres_and_paths_pick_sqlite() {
        assert_eq!(
            DbLocation::parse("./data/x.db").unwrap(),
            DbLocation::Sqlite("./data/x.db".into())
        );
        assert!(matches!(
            DbLocation::parse("postgresql://mt@127.0.0.1:5432/t").unwrap(),
            DbLocation::Postgres(_)
        ));
        assert!(DbLocation::parse("mysql://x/y").is_err());
        assert!(DbLocation::parse("  ").is_err());
    }

    #[test]
    fn passwords_never_show() {
        let l = DbLocation::parse("postgres://mt:hunter2@db:5432/mail?sslmode=require").unwrap();
        assert_eq!(
            l.to_string(),
            "postgres://mt:***@db:5432/mail?sslmode=require"
        );
        let l = DbLocation::parse("postgres://db/mail?user=mt&password=hunter2").unwrap();
        assert_eq!(l.to_string(), "postgres://db/mail?user=mt&password=***");
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
