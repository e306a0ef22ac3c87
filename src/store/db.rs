//! The one seam between the store's SQL and the two engines' drivers.
//!
//! Every query of the store is written once, against [`Db`]: a connection that is either
//! SQLite (rusqlite) or PostgreSQL (the `postgres` client, which is `tokio-postgres`
//! driven on the calling blocking thread). The store's SQL is the dialect both engines
//! share — `?N` placeholders (rewritten to `$N` for PostgreSQL), `ON CONFLICT`,
//! `RETURNING`, `CAST(… AS BIGINT)`, times as integer microseconds — and where the
//! engines really differ (leases with `FOR UPDATE SKIP LOCKED`, `BEGIN IMMEDIATE`, the
//! schema's column types) the caller asks [`Db::engine`] and picks its text. Nothing
//! above this file names a driver type.
//!
//! The surface copies rusqlite's (`prepare_cached`, `query_row`, `query_map`,
//! `optional`, `params!`), so the store reads as it did when it only knew SQLite.
//!
//! Driver errors reach [`crate::store::StoreError`] only through [`DbError`]. Beside
//! this file, `sqlite` opens SQLite's connections (the writer's and the readers'
//! settings) and `value` holds [`Value`], the column value `db copy` carries from one
//! driver to the other.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::Type;

pub(crate) mod sqlite;
mod value;
pub(crate) use value::Value;

/// Which engine a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The embedded default: one file, one writer.
    Sqlite,
    /// A PostgreSQL server (14 or newer).
    Postgres,
}

impl Engine {
    /// The engine's name, as `mailtrail db copy` and `migrate` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// What a query can fail with, whatever the engine.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `query_row` found no row (see [`OptionalExtension::optional`]).
    #[error("the query returned no row")]
    NoRows,
    /// SQLite failed.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed, or the connection to it did.
    #[error("{}", describe_pg(.0))]
    Postgres(#[from] postgres::Error),
    /// A column held a value of another type than the code expects.
    #[error("column {column}: {message}")]
    Conversion {
        /// The column's index in the row.
        column: usize,
        /// What was wrong.
        message: String,
    },
}

/// A PostgreSQL error with the server's own message, not only "db error".
fn describe_pg(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

impl DbError {
    /// The database cannot be reached (PostgreSQL went away, or refused us); trying
    /// again later may work. SQLite is a file: it is never "unavailable".
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Postgres(e) => {
                e.is_closed()
                    || e.as_db_error().is_none_or(|db| {
                        let class = &db.code().code()[..2];
                        // 08: connection exception; 57: operator intervention
                        // (shutdown, crash recovery); 53: insufficient resources.
                        matches!(class, "08" | "57" | "53")
                    })
            }
            _ => false,
        }
    }

    /// Another transaction got there first (a unique key, a serialization failure, a
    /// deadlock): running the same work again sees its result and may succeed.
    pub fn is_contention(&self) -> bool {
        match self {
            DbError::Postgres(e) => e.code().is_some_and(|c| {
                *c == postgres::error::SqlState::UNIQUE_VIOLATION
                    || *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            }),
            _ => false,
        }
    }
}

/// A value the store binds to a placeholder: anything both drivers can send.
///
/// Integers are bound as `i64` (PostgreSQL columns are `BIGINT`), flags as `bool`.
pub trait Param: rusqlite::ToSql + postgres::types::ToSql + Sync {}
impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync + ?Sized> Param for T {}

/// `params![a, b]`: the parameters of one statement, in placeholder order.
#[macro_export]
#[doc(hidden)]
macro_rules! db_params {
    () => { &[] as &[&dyn $crate::store::db::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::db::Param),+] as &[&dyn $crate::store::db::Param] };
}
pub(crate) use crate::db_params as params;

/// A column value the store reads: converted by the same rules on both engines.
pub trait Col: Sized {
    /// From SQLite's value.
    fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Result<Self, String>;
    /// From PostgreSQL's column `i` of `row`.
    fn from_pg(row: &postgres::Row, i: usize) -> Result<Self, String>;
}

fn pg_int(row: &postgres::Row, i: usize) -> Result<Option<i64>, String> {
    let ty = row.columns()[i].type_().clone();
    let value = if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i).map(|v| v.map(i64::from))
    } else {
        return Err(format!("expected an integer, found {ty}"));
    };
    value.map_err(|e| e.to_string())
}

fn pg_float(row: &postgres::Row, i: usize) -> Result<Option<f64>, String> {
    let ty = row.columns()[i].type_().clone();
    if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i).map_err(|e| e.to_string())
    } else if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)
            .map(|v| v.map(f64::from))
            .map_err(|e| e.to_string())
    } else {
        #[allow(clippy::cast_precision_loss)]
        pg_int(row, i).map(|v| v.map(|n| n as f64))
    }
}

fn pg_bool(row: &postgres::Row, i: usize) -> Result<Option<bool>, String> {
    pg_int(row, i).map(|v| v.map(|n| n != 0))
}

fn pg_text(row: &postgres::Row, i: usize) -> Result<Option<String>, String> {
    row.try_get::<_, Option<String>>(i)
        .map_err(|e| e.to_string())
}

fn pg_bytes(row: &postgres::Row, i: usize) -> Result<Option<Vec<u8>>, String> {
    row.try_get::<_, Option<Vec<u8>>>(i)
        .map_err(|e| e.to_string())
}

fn lite<T: rusqlite::types::FromSql>(v: rusqlite::types::ValueRef<'_>) -> Result<T, String> {
    T::column_result(v).map_err(|e| e.to_string())
}

macro_rules! col {
    ($t:ty, $pg:ident) => {
        impl Col for $t {
            fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
                lite(v)
            }
            fn from_pg(row: &postgres::Row, i: usize) -> Result<Self, String> {
                $pg(row, i)?.ok_or_else(|| "unexpected NULL".to_owned())
            }
        }
        impl Col for Option<$t> {
            fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Result<Self, String> {
                lite(v)
            }
            fn from_pg(row: &postgres::Row, i: usize) -> Result<Self, String> {
                $pg(row, i)
            }
        }
    };
}
col!(i64, pg_int);
col!(f64, pg_float);
col!(bool, pg_bool);
col!(String, pg_text);
col!(Vec<u8>, pg_bytes);

/// A column of a row: by position, or by name.
pub trait RowIndex {
    /// The position, when given as one.
    fn position(&self) -> Option<usize>;
    /// The name, when given as one.
    fn name(&self) -> Option<&str>;
}

impl RowIndex for usize {
    fn position(&self) -> Option<usize> {
        Some(*self)
    }
    fn name(&self) -> Option<&str> {
        None
    }
}

impl RowIndex for &str {
    fn position(&self) -> Option<usize> {
        None
    }
    fn name(&self) -> Option<&str> {
        Some(self)
    }
}

/// One row of a result, whichever engine produced it.
pub struct Row<'r> {
    kind: RowKind<'r>,
}

enum RowKind<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

fn no_column(index: &impl RowIndex) -> DbError {
    DbError::Conversion {
        column: index.position().unwrap_or(usize::MAX),
        message: format!("no such column {}", index.name().unwrap_or("")),
    }
}

impl Row<'_> {
    /// Column `index` as a `T`.
    pub fn get<I: RowIndex, T: Col>(&self, index: I) -> Result<T, DbError> {
        match &self.kind {
            RowKind::Sqlite(row) => {
                let i = match (index.position(), index.name()) {
                    (Some(i), _) => i,
                    (None, Some(name)) => row.as_ref().column_index(name)?,
                    (None, None) => return Err(no_column(&index)),
                };
                let v = row.get_ref(i)?;
                T::from_sqlite(v).map_err(|message| DbError::Conversion { column: i, message })
            }
            RowKind::Postgres(row) => {
                let i = match (index.position(), index.name()) {
                    (Some(i), _) if i < row.len() => i,
                    (None, Some(name)) => row
                        .columns()
                        .iter()
                        .position(|c| c.name() == name)
                        .ok_or_else(|| no_column(&index))?,
                    _ => return Err(no_column(&index)),
                };
                T::from_pg(row, i).map_err(|message| DbError::Conversion { column: i, message })
            }
        }
    }
}

/// `.optional()` on a `query_row` result: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`DbError::NoRows`].
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Statements prepared on one PostgreSQL connection, by their SQL text.
const PG_STATEMENT_CACHE: usize = 256;

/// A PostgreSQL connection and what the store keeps beside it.
pub(crate) struct PgConn {
    /// Always `Some` until dropped (see `Drop`).
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
    /// Rows changed, plus statements failed, since the connection opened: a change in
    /// this number tells the writer that a job left something in the transaction.
    marks: u64,
    /// Inside BEGIN … COMMIT.
    in_transaction: bool,
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: Some(client),
            statements: HashMap::new(),
            marks: 0,
            in_transaction: false,
        }
    }

    fn client(&mut self) -> Result<&mut postgres::Client, DbError> {
        self.client.as_mut().ok_or(DbError::Conversion {
            column: usize::MAX,
            message: "the connection is closed".into(),
        })
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client()?.prepare(&to_dollar_placeholders(sql))?;
        if self.statements.len() >= PG_STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn note<T>(&mut self, result: Result<T, postgres::Error>) -> Result<T, DbError> {
        if result.is_err() {
            self.marks += 1;
        }
        Ok(result?)
    }
}

/// Closing a client waits for its connection task; inside an async runtime (a CLI
/// command's store dropped at its end) that wait must happen on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("mailtrail-pg-close".into())
                    .spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

/// Rewrites SQLite's `?N` placeholders as PostgreSQL's `$N`, outside string literals.
fn to_dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_string = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// One database connection, of either engine.
pub struct Db {
    kind: DbKind,
}

enum DbKind {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<PgConn>>),
}

impl Db {
    fn sqlite(conn: rusqlite::Connection) -> Db {
        Db {
            kind: DbKind::Sqlite(conn),
        }
    }

    pub(crate) fn postgres(conn: PgConn) -> Db {
        Db {
            kind: DbKind::Postgres(Box::new(RefCell::new(conn))),
        }
    }

    /// Which engine this connection talks to.
    pub fn engine(&self) -> Engine {
        match self.kind {
            DbKind::Sqlite(_) => Engine::Sqlite,
            DbKind::Postgres(_) => Engine::Postgres,
        }
    }

    /// A statement, prepared once per connection and kept.
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'_>, DbError> {
        match &self.kind {
            DbKind::Sqlite(c) => Ok(Stmt {
                kind: StmtKind::Sqlite(c.prepare_cached(sql)?),
            }),
            DbKind::Postgres(pg) => {
                let stmt = pg.borrow_mut().statement(sql)?;
                Ok(Stmt {
                    kind: StmtKind::Postgres { conn: pg, stmt },
                })
            }
        }
    }

    /// Runs one statement; answers the rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, DbError> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// The first row of a query, mapped by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs several statements without parameters (DDL, `BEGIN`, `COMMIT`).
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.kind {
            DbKind::Sqlite(c) => Ok(c.execute_batch(sql)?),
            DbKind::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let result = pg.client()?.batch_execute(sql);
                pg.note(result)
            }
        }
    }

    /// Starts the writer's transaction: SQLite takes the write lock at once.
    pub(crate) fn begin_write(&self) -> Result<(), DbError> {
        match &self.kind {
            DbKind::Sqlite(c) => Ok(c.execute_batch("BEGIN IMMEDIATE")?),
            DbKind::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.client()?.batch_execute("BEGIN")?;
                pg.in_transaction = true;
                Ok(())
            }
        }
    }

    /// Starts a read transaction that sees one snapshot for all its statements.
    pub(crate) fn begin_snapshot(&self) -> Result<(), DbError> {
        match self.engine() {
            Engine::Sqlite => self.execute_batch("BEGIN"),
            Engine::Postgres => {
                self.execute_batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            }
        }
    }

    /// Ends the current transaction with COMMIT.
    pub(crate) fn commit(&self) -> Result<(), DbError> {
        self.end("COMMIT")
    }

    /// Ends the current transaction with ROLLBACK.
    pub(crate) fn rollback(&self) -> Result<(), DbError> {
        self.end("ROLLBACK")
    }

    fn end(&self, how: &str) -> Result<(), DbError> {
        match &self.kind {
            DbKind::Sqlite(c) => Ok(c.execute_batch(how)?),
            DbKind::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.in_transaction = false;
                Ok(pg.client()?.batch_execute(how)?)
            }
        }
    }

    /// Whether no transaction is open (SQLite may roll one back by itself on I/O errors).
    pub(crate) fn is_autocommit(&self) -> bool {
        match &self.kind {
            DbKind::Sqlite(c) => c.is_autocommit(),
            DbKind::Postgres(pg) => !pg.borrow().in_transaction,
        }
    }

    /// A number that moves whenever a statement changes rows, or (PostgreSQL, where a
    /// failed statement spoils the whole transaction) fails.
    pub(crate) fn marks(&self) -> u64 {
        match &self.kind {
            DbKind::Sqlite(c) => c.total_changes(),
            DbKind::Postgres(pg) => pg.borrow().marks,
        }
    }

    /// The connection is known to be broken (PostgreSQL closed it).
    pub(crate) fn is_broken(&self) -> bool {
        match &self.kind {
            DbKind::Sqlite(_) => false,
            DbKind::Postgres(pg) => pg.borrow().client.as_ref().is_none_or(|c| c.is_closed()),
        }
    }
}

/// A prepared statement of either engine.
pub struct Stmt<'c> {
    kind: StmtKind<'c>,
}

enum StmtKind<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres {
        conn: &'c RefCell<PgConn>,
        stmt: postgres::Statement,
    },
}

fn pg_params<'a>(params: &'a [&'a dyn Param]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| *p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

fn lite_params<'a>(params: &'a [&'a dyn Param]) -> Vec<&'a dyn rusqlite::ToSql> {
    params.iter().map(|p| *p as &dyn rusqlite::ToSql).collect()
}

impl Stmt<'_> {
    /// Runs the statement; answers the rows it changed.
    pub fn execute(&mut self, params: &[&dyn Param]) -> Result<usize, DbError> {
        match &mut self.kind {
            StmtKind::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(lite_params(params)))?),
            StmtKind::Postgres { conn, stmt } => {
                let mut pg = conn.borrow_mut();
                let result = pg.client()?.execute(&*stmt, &pg_params(params));
                let n = pg.note(result)?;
                pg.marks += n;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// The first row, mapped by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &mut self,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        match &mut self.kind {
            StmtKind::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(lite_params(params)))?;
                match rows.next()? {
                    Some(row) => f(&Row {
                        kind: RowKind::Sqlite(row),
                    }),
                    None => Err(DbError::NoRows),
                }
            }
            StmtKind::Postgres { conn, stmt } => {
                let rows = {
                    let mut pg = conn.borrow_mut();
                    let result = pg.client()?.query(&*stmt, &pg_params(params));
                    pg.note(result)?
                };
                match rows.first() {
                    Some(row) => f(&Row {
                        kind: RowKind::Postgres(row),
                    }),
                    None => Err(DbError::NoRows),
                }
            }
        }
    }

    /// Every row, each mapped by `f`.
    pub fn query_map<T>(
        &mut self,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<std::vec::IntoIter<Result<T, DbError>>, DbError> {
        let mut out = Vec::new();
        match &mut self.kind {
            StmtKind::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(lite_params(params)))?;
                while let Some(row) = rows.next()? {
                    out.push(f(&Row {
                        kind: RowKind::Sqlite(row),
                    }));
                }
            }
            StmtKind::Postgres { conn, stmt } => {
                let rows = {
                    let mut pg = conn.borrow_mut();
                    let result = pg.client()?.query(&*stmt, &pg_params(params));
                    pg.note(result)?
                };
                for row in &rows {
                    out.push(f(&Row {
                        kind: RowKind::Postgres(row),
                    }));
                }
            }
        }
        Ok(out.into_iter())
    }

    /// Calls `f` on each row as it arrives (SQLite) or once fetched (PostgreSQL),
    /// stopping at the first error.
    pub fn for_each(
        &mut self,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row<'_>) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        match &mut self.kind {
            StmtKind::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(lite_params(params)))?;
                while let Some(row) = rows.next()? {
                    f(&Row {
                        kind: RowKind::Sqlite(row),
                    })?;
                }
                Ok(())
            }
            StmtKind::Postgres { .. } => {
                for row in self.query_map(params, |r| f(r))? {
                    row?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_strings() {
        assert_eq!(
            to_dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
    }

    #[test]
    fn sqlite_rows_read_through_the_shared_surface() {
        let db = Db::sqlite_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER)")
            .unwrap();
        db.execute(
            "INSERT INTO t (a, b, c) VALUES (?1, ?2, ?3)",
            params![7_i64, "x", true],
        )
        .unwrap();
        let (a, b, c, none): (i64, String, bool, Option<String>) = db
            .query_row("SELECT a, b, c, NULL FROM t", params![], |r| {
                Ok((r.get(0)?, r.get("b")?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((a, b.as_str(), c, none), (7, "x", true, None));
        let missing = db
            .query_row("SELECT a FROM t WHERE a = ?1", params![8_i64], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .unwrap();
        assert_eq!(missing, None);
    }
}
