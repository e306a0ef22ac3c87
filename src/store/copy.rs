//! `mailtrail db copy SRC DST` (SPEC §10): a whole store from one engine to the other.
//!
//! Both sides are migrated to this binary's schema first, so they have the same tables
//! and columns; then every table is read from the source and written to the
//! destination in one transaction, in an order that satisfies the foreign keys. Values
//! travel as [`Value`]s, which each driver converts to the column's own type (SQLite's
//! integer flags become PostgreSQL booleans and back). Identity counters on PostgreSQL
//! are moved past the copied ids, so new rows do not collide with them.

use super::db::{Db, DbError, Engine, Param, Value, params};
use super::{DbLocation, Role, StoreError, opener, schema};
use std::collections::BTreeMap;

/// Every table of the store, parents before children. A test checks that it names
/// every table the migrations create, so a new table cannot be left behind.
pub const TABLES: &[&str] = &[
    "site",
    "projects",
    "customers",
    "memberships",
    "decisions",
    "attempts",
    "suppressions",
    "suppression_events",
    "tokens",
    "users",
    "sessions",
    "audit",
    "idempotency",
    "login_failures",
    "bounce_messages",
    "webhooks",
    "webhook_messages",
    "webhook_deliveries",
    "webhook_state",
];

/// Placeholders per INSERT inside the copy's transaction (both engines allow more).
const PLACEHOLDERS: usize = 20_000;

/// The row count of every table on both sides.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// `table → (source rows, destination rows)`.
    pub tables: BTreeMap<&'static str, (i64, i64)>,
}

impl CopyReport {
    /// Whether every table has as many rows on both sides.
    pub fn matches(&self) -> bool {
        self.tables.values().all(|(a, b)| a == b)
    }
}

/// Reads every row of `table` as values, in column order.
fn read_table(db: &Db, table: &str) -> Result<(Vec<String>, Vec<Vec<Value>>), StoreError> {
    let columns = columns(db, table)?;
    let list = columns.join(", ");
    let mut rows = Vec::new();
    db.prepare_cached(&format!("SELECT {list} FROM {table}"))?
        .for_each(params![], |row| {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(read_value(db.engine(), row, i)?);
            }
            rows.push(values);
            Ok(())
        })?;
    Ok((columns, rows))
}

/// One column as a [`Value`]: the integer, real, text or blob reading that works.
fn read_value(engine: Engine, row: &super::db::Row<'_>, i: usize) -> Result<Value, DbError> {
    // Each engine's own types, tried in turn; flags read as integers on both.
    if let Ok(v) = row.get::<_, Option<i64>>(i) {
        return Ok(v.map_or(Value::Null, Value::Int));
    }
    if let Ok(v) = row.get::<_, Option<f64>>(i) {
        return Ok(v.map_or(Value::Null, Value::Real));
    }
    if let Ok(v) = row.get::<_, Option<String>>(i) {
        return Ok(v.map_or(Value::Null, Value::Text));
    }
    row.get::<_, Option<Vec<u8>>>(i)
        .map(|v| v.map_or(Value::Null, Value::Blob))
        .map_err(|e| DbError::Conversion {
            column: i,
            message: format!("no {} reading fits: {e}", engine.as_str()),
        })
}

/// The columns of `table`, in their declared order.
fn columns(db: &Db, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = match db.engine() {
        Engine::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        Engine::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1
             ORDER BY ordinal_position"
        }
    };
    let names = db
        .prepare_cached(sql)?
        .query_map(params![table], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(StoreError::Corrupt(format!("table {table} is missing")));
    }
    Ok(names)
}

/// Every table the database has (besides the engines' own bookkeeping).
fn tables(db: &Db) -> Result<Vec<String>, StoreError> {
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name"
        }
        Engine::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> 'mailtrail_schema'
             ORDER BY table_name"
        }
    };
    Ok(db
        .prepare_cached(sql)?
        .query_map(params![], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

fn count(db: &Db, table: &str) -> Result<i64, StoreError> {
    Ok(
        db.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| {
            r.get(0)
        })?,
    )
}

/// Tables whose rows a fresh, migrated database already has (the one `site` row).
fn seeded(table: &str) -> bool {
    table == "site"
}

/// Copies the store at `src` into the empty store at `dst`.
pub fn copy(src: &DbLocation, dst: &DbLocation) -> Result<CopyReport, StoreError> {
    if src == dst {
        return Err(StoreError::invalid("DST", "is the same database as SRC"));
    }
    let from = opener(src)?(Role::Writer)?;
    let to = opener(dst)?(Role::Writer)?;
    schema::migrate(&from)?;
    schema::migrate(&to)?;
    check_tables(&from)?;
    for table in TABLES {
        if !seeded(table) && count(&to, table)? > 0 {
            return Err(StoreError::Conflict(format!(
                "the destination is not empty: table {table} has rows; \
                 db copy only fills an empty store"
            )));
        }
    }
    from.begin_snapshot()?;
    to.begin_write()?;
    let copied = (|| {
        for table in TABLES {
            copy_table(&from, &to, table)?;
        }
        if to.engine() == Engine::Postgres {
            advance_identities(&to)?;
        }
        Ok::<_, StoreError>(())
    })();
    let _ = from.rollback();
    match copied {
        Ok(()) => to.commit()?,
        Err(e) => {
            let _ = to.rollback();
            return Err(e);
        }
    }
    let mut report = CopyReport::default();
    for table in TABLES {
        report
            .tables
            .insert(table, (count(&from, table)?, count(&to, table)?));
    }
    Ok(report)
}

/// Refuses a store with a table this copy does not know (a newer binary's schema).
fn check_tables(db: &Db) -> Result<(), StoreError> {
    for table in tables(db)? {
        if !TABLES.contains(&table.as_str()) {
            return Err(StoreError::Corrupt(format!(
                "table {table} is not known to db copy"
            )));
        }
    }
    Ok(())
}

fn copy_table(from: &Db, to: &Db, table: &str) -> Result<(), StoreError> {
    let (columns, rows) = read_table(from, table)?;
    if seeded(table) {
        to.execute(&format!("DELETE FROM {table}"), params![])?;
    }
    let list = columns.join(", ");
    for chunk in rows.chunks((PLACEHOLDERS / columns.len()).max(1)) {
        let mut placeholders = Vec::with_capacity(chunk.len());
        let mut n = 0;
        for _ in chunk {
            let row: Vec<String> = columns
                .iter()
                .map(|_| {
                    n += 1;
                    format!("?{n}")
                })
                .collect();
            placeholders.push(format!("({})", row.join(", ")));
        }
        let values: Vec<&dyn Param> = chunk
            .iter()
            .flat_map(|row| row.iter().map(|v| v as &dyn Param))
            .collect();
        to.execute(
            &format!(
                "INSERT INTO {table} ({list}) VALUES {}",
                placeholders.join(", ")
            ),
            &values,
        )?;
    }
    Ok(())
}

/// Moves every identity column's counter past the largest copied id.
fn advance_identities(db: &Db) -> Result<(), StoreError> {
    let identities = db
        .prepare_cached(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )?
        .query_map(params![], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (table, column) in identities {
        db.execute_batch(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                           COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_knows_every_table_the_migrations_create() {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation::Sqlite(dir.path().join("t.db"));
        let db = opener(&location).unwrap()(Role::Writer).unwrap();
        schema::migrate(&db).unwrap();
        let mut known: Vec<&str> = TABLES.to_vec();
        known.sort_unstable();
        assert_eq!(tables(&db).unwrap(), known);
    }
}
