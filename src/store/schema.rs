//! The schema, as an ordered list of migrations embedded in the binary.
//!
//! Each engine has its own list, step for step the same schema in its own types: SQLite
//! records how many steps have run in `PRAGMA user_version`, PostgreSQL in the one-row
//! table `mailtrail_schema`. Migrations only ever append: a released step is never
//! edited, so every database reaches the same shape.

use super::StoreError;
use super::db::{Db, Engine, params};

/// SQLite: each entry moves the schema one version up.
const MIGRATIONS: &[&str] = &[
    // 1: the decision core (issue 3) and the tables delivery and the dashboard use.
    r#"
    CREATE TABLE site (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        outgoing_mail INTEGER NOT NULL DEFAULT 1,
        from_mailbox TEXT NOT NULL,
        portal_base_url TEXT NOT NULL,
        outgoing_mail_changed_at INTEGER
    );
    INSERT INTO site (id, from_mailbox, portal_base_url)
        VALUES (1, 'Help Desk <help@example.com>', 'http://localhost:8040/portal');

    CREATE TABLE projects (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        settings TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );

    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        display_name TEXT,
        created_at INTEGER NOT NULL,
        created_via TEXT NOT NULL
    );

    CREATE TABLE memberships (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        project TEXT NOT NULL REFERENCES projects(key),
        added_at INTEGER NOT NULL,
        added_via TEXT NOT NULL,
        PRIMARY KEY (customer_id, project)
    ) WITHOUT ROWID;

    CREATE TABLE decisions (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        project TEXT NOT NULL,
        recipient TEXT,
        input TEXT NOT NULL,
        display_name TEXT,
        customer_id TEXT,
        channel TEXT NOT NULL,
        email_kind TEXT NOT NULL,
        decision TEXT NOT NULL,
        reasons TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        attempts_count INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        lease_until INTEGER,
        last_reply TEXT,
        sent_at INTEGER,
        message_id TEXT,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX decisions_by_recipient ON decisions (recipient, seq);
    CREATE INDEX decisions_by_input ON decisions (input) WHERE recipient IS NULL;
    CREATE INDEX decisions_by_time ON decisions (created_at);
    CREATE INDEX decisions_by_project ON decisions (project, seq);
    CREATE INDEX decisions_due ON decisions (next_attempt_at)
        WHERE status IN ('queued', 'deferred', 'sending');
    CREATE INDEX decisions_by_status ON decisions (status, seq);

    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        decision_id TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        server TEXT,
        stage TEXT,
        smtp_code INTEGER,
        enhanced_code TEXT,
        reply TEXT,
        outcome TEXT NOT NULL,
        copy_outcome TEXT
    );
    CREATE INDEX attempts_by_decision ON attempts (decision_id);
    CREATE INDEX attempts_by_time ON attempts (finished_at);

    CREATE TABLE suppressions (
        email TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        reason TEXT NOT NULL,
        smtp_code INTEGER,
        enhanced_code TEXT,
        response TEXT,
        remote_host TEXT,
        stage TEXT,
        suppressed_at INTEGER NOT NULL,
        decision_id TEXT,
        note TEXT,
        evidence TEXT
    ) WITHOUT ROWID;
    CREATE INDEX suppressions_by_time ON suppressions (suppressed_at);

    CREATE TABLE suppression_events (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        added INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX suppression_events_by_time ON suppression_events (at);

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );

    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );

    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
    );

    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        who TEXT NOT NULL,
        what TEXT NOT NULL,
        target TEXT,
        note TEXT,
        detail TEXT
    );

    CREATE TABLE idempotency (
        principal TEXT NOT NULL,
        key TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (principal, key)
    ) WITHOUT ROWID;
    "#,
    // 2 (issue 10/11): idempotency keys remember the request they came with, and are
    // found by key alone (a key reused by another caller is refused).
    r#"
    ALTER TABLE idempotency ADD COLUMN fingerprint TEXT;
    CREATE INDEX idempotency_by_key ON idempotency (key, created_at);
    "#,
    // 3 (issue 10): failed-login counts, shared by every process on this database.
    r#"
    CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at INTEGER NOT NULL
    );
    CREATE INDEX login_failures_by_time ON login_failures (last_at);
    "#,
    // 4 (issue 12): a full mailbox's suppression ends by itself; every received bounce
    // message that was not a report is kept (raw as bytes: PostgreSQL text holds no NUL).
    r#"
    ALTER TABLE suppressions ADD COLUMN expires_at INTEGER;
    CREATE INDEX suppressions_by_expiry ON suppressions (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE bounce_messages (
        id INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        decision_id TEXT,
        via TEXT NOT NULL,
        smtp_recipient TEXT,
        kind TEXT NOT NULL,
        result TEXT NOT NULL,
        recipient TEXT,
        enhanced_code TEXT,
        response TEXT,
        subject TEXT,
        sender TEXT,
        bytes INTEGER NOT NULL,
        raw BLOB NOT NULL
    );
    CREATE INDEX bounce_messages_by_decision ON bounce_messages (decision_id, id);
    CREATE INDEX bounce_messages_by_time ON bounce_messages (received_at);
    "#,
    // 5 (issue 13): webhooks (SPEC §13): subscriptions, the event outbox (one row
    // per event and subscription), the delivery log, and the bounce-rate level.
    r#"
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE webhook_messages (
        id INTEGER PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        address TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        lease_until INTEGER
    );
    CREATE INDEX webhook_messages_pending ON webhook_messages (id) WHERE status = 'pending';
    CREATE INDEX webhook_messages_by_address ON webhook_messages (webhook_id, address, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_messages_by_time ON webhook_messages (created_at);
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        at INTEGER NOT NULL,
        status TEXT NOT NULL,
        reply_code INTEGER,
        error TEXT,
        took_ms INTEGER NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
    CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (at);
    CREATE TABLE webhook_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 6 (issue 13): the TLS version a try ran over (SPEC §12), null for plain SMTP.
    r#"
    ALTER TABLE attempts ADD COLUMN tls TEXT;
    "#,
];

/// PostgreSQL: the same steps as [`MIGRATIONS`], in PostgreSQL's types. Integers are
/// `BIGINT` (the store binds `i64`), flags `BOOLEAN`, times microseconds since the epoch.
const POSTGRES_MIGRATIONS: &[&str] = &[
    // 1: as SQLite's 1.
    r#"
    CREATE TABLE site (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        outgoing_mail BOOLEAN NOT NULL DEFAULT TRUE,
        from_mailbox TEXT NOT NULL,
        portal_base_url TEXT NOT NULL,
        outgoing_mail_changed_at BIGINT
    );
    INSERT INTO site (id, from_mailbox, portal_base_url)
        VALUES (1, 'Help Desk <help@example.com>', 'http://localhost:8040/portal');

    CREATE TABLE projects (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        settings TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );

    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        display_name TEXT,
        created_at BIGINT NOT NULL,
        created_via TEXT NOT NULL
    );

    CREATE TABLE memberships (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        project TEXT NOT NULL REFERENCES projects(key),
        added_at BIGINT NOT NULL,
        added_via TEXT NOT NULL,
        PRIMARY KEY (customer_id, project)
    );

    CREATE TABLE decisions (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        project TEXT NOT NULL,
        recipient TEXT,
        input TEXT NOT NULL,
        display_name TEXT,
        customer_id TEXT,
        channel TEXT NOT NULL,
        email_kind TEXT NOT NULL,
        decision TEXT NOT NULL,
        reasons TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        attempts_count BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        lease_until BIGINT,
        last_reply TEXT,
        sent_at BIGINT,
        message_id TEXT,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX decisions_by_recipient ON decisions (recipient, seq);
    CREATE INDEX decisions_by_input ON decisions (input) WHERE recipient IS NULL;
    CREATE INDEX decisions_by_time ON decisions (created_at);
    CREATE INDEX decisions_by_project ON decisions (project, seq);
    CREATE INDEX decisions_due ON decisions (next_attempt_at)
        WHERE status IN ('queued', 'deferred', 'sending');
    CREATE INDEX decisions_by_status ON decisions (status, seq);

    CREATE TABLE attempts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        decision_id TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT NOT NULL,
        server TEXT,
        stage TEXT,
        smtp_code BIGINT,
        enhanced_code TEXT,
        reply TEXT,
        outcome TEXT NOT NULL,
        copy_outcome TEXT
    );
    CREATE INDEX attempts_by_decision ON attempts (decision_id);
    CREATE INDEX attempts_by_time ON attempts (finished_at);

    CREATE TABLE suppressions (
        email TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        reason TEXT NOT NULL,
        smtp_code BIGINT,
        enhanced_code TEXT,
        response TEXT,
        remote_host TEXT,
        stage TEXT,
        suppressed_at BIGINT NOT NULL,
        decision_id TEXT,
        note TEXT,
        evidence TEXT
    );
    CREATE INDEX suppressions_by_time ON suppressions (suppressed_at);

    CREATE TABLE suppression_events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        email TEXT NOT NULL,
        added BOOLEAN NOT NULL,
        reason TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX suppression_events_by_time ON suppression_events (at);

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL
    );

    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        who TEXT NOT NULL,
        what TEXT NOT NULL,
        target TEXT,
        note TEXT,
        detail TEXT
    );

    CREATE TABLE idempotency (
        principal TEXT NOT NULL,
        key TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        status BIGINT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (principal, key)
    );

    -- Wakes every process's worker when a transaction leaves mail due (SPEC §10):
    -- one notification per transaction, delivered at COMMIT.
    CREATE FUNCTION mailtrail_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM changed WHERE status IN ('queued', 'deferred')) THEN
            PERFORM pg_notify('mailtrail_due', '');
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER decisions_due_insert AFTER INSERT ON decisions
        REFERENCING NEW TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION mailtrail_notify_due();
    CREATE TRIGGER decisions_due_update AFTER UPDATE ON decisions
        REFERENCING NEW TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION mailtrail_notify_due();
    "#,
    // 2: as SQLite's 2.
    r#"
    ALTER TABLE idempotency ADD COLUMN fingerprint TEXT;
    CREATE INDEX idempotency_by_key ON idempotency (key, created_at);
    "#,
    // 3: as SQLite's 3.
    r#"
    CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        last_at BIGINT NOT NULL
    );
    CREATE INDEX login_failures_by_time ON login_failures (last_at);
    "#,
    // 4: as SQLite's 4.
    r#"
    ALTER TABLE suppressions ADD COLUMN expires_at BIGINT;
    CREATE INDEX suppressions_by_expiry ON suppressions (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE bounce_messages (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        received_at BIGINT NOT NULL,
        decision_id TEXT,
        via TEXT NOT NULL,
        smtp_recipient TEXT,
        kind TEXT NOT NULL,
        result TEXT NOT NULL,
        recipient TEXT,
        enhanced_code TEXT,
        response TEXT,
        subject TEXT,
        sender TEXT,
        bytes BIGINT NOT NULL,
        raw BYTEA NOT NULL
    );
    CREATE INDEX bounce_messages_by_decision ON bounce_messages (decision_id, id);
    CREATE INDEX bounce_messages_by_time ON bounce_messages (received_at);
    "#,
    // 5: as SQLite's 5.
    r#"
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT,
        secret TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE webhook_messages (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        address TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        lease_until BIGINT
    );
    CREATE INDEX webhook_messages_pending ON webhook_messages (id) WHERE status = 'pending';
    CREATE INDEX webhook_messages_by_address ON webhook_messages (webhook_id, address, id)
        WHERE status = 'pending';
    CREATE INDEX webhook_messages_by_time ON webhook_messages (created_at);
    CREATE TABLE webhook_deliveries (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        message_id BIGINT NOT NULL,
        event_type TEXT NOT NULL,
        at BIGINT NOT NULL,
        status TEXT NOT NULL,
        reply_code BIGINT,
        error TEXT,
        took_ms BIGINT NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
    CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (at);
    CREATE TABLE webhook_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 6: as SQLite's 6.
    r#"
    ALTER TABLE attempts ADD COLUMN tls TEXT;
    "#,
];

/// The migration steps of `engine`.
fn steps(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Sqlite => MIGRATIONS,
        Engine::Postgres => POSTGRES_MIGRATIONS,
    }
}

/// The schema version of `db`'s database (0: empty).
pub fn version(db: &Db) -> Result<i64, StoreError> {
    match db.engine() {
        Engine::Sqlite => Ok(db.query_row("PRAGMA user_version", params![], |row| row.get(0))?),
        Engine::Postgres => {
            let exists: bool = db.query_row(
                "SELECT to_regclass('mailtrail_schema') IS NOT NULL",
                params![],
                |row| row.get(0),
            )?;
            if !exists {
                db.execute_batch(
                    "CREATE TABLE mailtrail_schema (version BIGINT NOT NULL);
                     INSERT INTO mailtrail_schema (version) VALUES (0);",
                )?;
            }
            Ok(
                db.query_row("SELECT version FROM mailtrail_schema", params![], |row| {
                    row.get(0)
                })?,
            )
        }
    }
}

fn set_version(db: &Db, version: i64) -> Result<(), StoreError> {
    match db.engine() {
        Engine::Sqlite => db.execute_batch(&format!("PRAGMA user_version = {version}"))?,
        Engine::Postgres => {
            db.execute("UPDATE mailtrail_schema SET version = ?1", params![version])?;
        }
    }
    Ok(())
}

/// Runs every migration not yet applied, each in its own transaction. Idempotent, and
/// safe when several processes start at once: the version is read inside the
/// transaction that applies the next step (PostgreSQL: under an advisory lock).
pub fn migrate(db: &Db) -> Result<(), StoreError> {
    let steps = steps(db.engine());
    loop {
        db.begin_write()?;
        let step = (|| -> Result<Option<usize>, StoreError> {
            if db.engine() == Engine::Postgres {
                db.execute_batch("SELECT pg_advisory_xact_lock(7245101)")?;
            }
            let current = usize::try_from(version(db)?).unwrap_or(0);
            if current > steps.len() {
                return Err(StoreError::Corrupt(format!(
                    "the database has schema version {current}, newer than this mailtrail knows ({})",
                    steps.len()
                )));
            }
            let Some(sql) = steps.get(current) else {
                return Ok(None);
            };
            db.execute_batch(sql)?;
            set_version(db, (current + 1) as i64)?;
            Ok(Some(current + 1))
        })();
        match step {
            Ok(applied) => {
                db.commit()?;
                match applied {
                    Some(version) => tracing::info!(version, "applied migration"),
                    None => return Ok(()),
                }
            }
            Err(e) => {
                let _ = db.rollback();
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_know_the_same_steps() {
        assert_eq!(MIGRATIONS.len(), POSTGRES_MIGRATIONS.len());
    }
}
