//! Bulk seeding for `mailtrail bench` (SPEC §8): fills a fresh database with a
//! realistic history, fast, so the why look-up and the pages can be timed with a
//! million decisions stored.
//!
//! The rows are what the ingest and delivery paths would have written: customers with
//! one or two memberships, about five decisions per customer spread over the last 90
//! days in mixed channels, statuses and reasons, delivery attempts for what was tried,
//! and suppressions (half of them customers). Generation is deterministic (a fixed
//! seed), so two runs time the same data.
//!
//! Speed comes from how the file is written, never from a different shape: the
//! migrations create the real schema with every index, then the rows go in through
//! prepared statements in large transactions with the journal and `fsync` off. That
//! is only sound because the file is a throwaway; nothing else may ever open a
//! database this way. The journal is set back to WAL before the file is handed over.

mod history;

use super::StoreError;
use super::time::{Micros, now_micros};
use crate::model::{Channel, ProjectSettings};
use history::{
    BOUNCE, CHANNEL_WEIGHTS, CHANNELS, Rng, SUPPRESSION_REASONS, SUPPRESSION_WEIGHTS, uuid_v7,
};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::{Duration, Instant};

/// The projects the seeded customers belong to; `BENCH` is the one ingest uses.
pub const SEED_PROJECTS: &[&str] = &[
    "BENCH",
    "HR",
    "IT",
    "FACILITIES",
    "LEGAL",
    "SALES",
    "FINANCE",
    "SUPPORT",
];

/// What [`seed_bulk`] wrote and how long it took.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// Customers inserted; [`seed_customer_address`] names each of them.
    pub customers: u64,
    /// Memberships inserted.
    pub memberships: u64,
    /// Decisions inserted.
    pub decisions: u64,
    /// Delivery attempts inserted.
    pub attempts: u64,
    /// Suppressions inserted.
    pub suppressions: u64,
    /// Wall time from opening the file to handing it over, synced to the disk.
    pub elapsed: Duration,
}

/// The address of seeded customer `i`, so the benchmark can look customers up.
pub fn seed_customer_address(i: u64) -> String {
    format!("user{i}@{}", domain_of(i))
}

const DOMAINS: &[&str] = &[
    "acme.example",
    "globex.example",
    "initech.example",
    "umbrella.example",
    "hooli.example",
    "stark.example",
    "wayne.example",
    "tyrell.example",
];

fn domain_of(i: u64) -> String {
    // Every tenth customer has a domain of their own, as small companies do.
    if i % 10 == 9 {
        format!("corp{}.example", i % 5000)
    } else {
        DOMAINS[(i % 8) as usize].to_owned()
    }
}

/// Microseconds in a day.
const DAY: Micros = 86_400_000_000;

/// Seeds a new database at `path` with `customers` customers, `decisions` decisions
/// over the last 90 days and `suppressions` suppressions (SPEC §8 sizes: 1,000,000
/// and 100,000). `path` must not exist yet.
pub fn seed_bulk(
    path: &Path,
    decisions: u64,
    suppressions: u64,
    customers: u64,
) -> Result<SeedReport, StoreError> {
    let started = Instant::now();
    if path.exists() {
        return Err(StoreError::Conflict(format!(
            "{} exists; seeding needs a new file",
            path.display()
        )));
    }
    super::Store::migrate_only(&super::DbLocation::Sqlite(path.to_owned()))?;
    let conn = Connection::open(path)?;
    // A throwaway file: no journal, no fsync, a large cache (see the module notes).
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -524288;",
    )?;
    let customers = customers.max(1);
    let now = now_micros();
    let mut seeder = Seeder {
        conn: &conn,
        rng: Rng(0x5eed_2026),
        now,
        report: SeedReport::empty(),
    };
    seeder.projects()?;
    let people = seeder.customers(customers, suppressions)?;
    seeder.decisions(decisions, &people)?;
    seeder.suppressions(suppressions, &people)?;
    let mut report = seeder.report;
    conn.execute_batch("PRAGMA locking_mode = NORMAL; PRAGMA journal_mode = WAL;")?;
    drop(conn);
    // Flush it to the disk now: the timings that follow must not share the machine
    // with the kernel writing half a gigabyte back.
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| StoreError::Corrupt(format!("cannot sync {}: {e}", path.display())))?;
    report.elapsed = started.elapsed();
    Ok(report)
}

impl SeedReport {
    fn empty() -> Self {
        SeedReport {
            customers: 0,
            memberships: 0,
            decisions: 0,
            attempts: 0,
            suppressions: 0,
            elapsed: Duration::ZERO,
        }
    }
}

/// A seeded customer, kept in memory while their decisions are written.
struct Person {
    id: String,
    email: String,
    display_name: Option<String>,
    projects: Vec<&'static str>,
    suppressed: bool,
}

struct Seeder<'c> {
    conn: &'c Connection,
    rng: Rng,
    now: Micros,
    report: SeedReport,
}

impl Seeder<'_> {
    fn projects(&mut self) -> Result<(), StoreError> {
        let settings = serde_json::to_string(&ProjectSettings::default())?;
        for key in SEED_PROJECTS {
            let name = format!("{}{}", &key[..1], key[1..].to_lowercase());
            self.conn.execute(
                "INSERT INTO projects (key, name, settings, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![key, name, settings, self.now - 400 * DAY],
            )?;
        }
        Ok(())
    }

    /// Inserts the customers and their memberships. Every `stride`-th customer is
    /// suppressed, so that half of the suppressions are customers.
    fn customers(&mut self, count: u64, suppressions: u64) -> Result<Vec<Person>, StoreError> {
        let stride = if suppressions < 2 {
            u64::MAX
        } else {
            (count / (suppressions / 2)).max(1)
        };
        let mut people = Vec::with_capacity(count as usize);
        self.conn.execute_batch("BEGIN")?;
        let mut customer = self.conn.prepare(
            "INSERT INTO customers (id, email, display_name, created_at, created_via) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut membership = self.conn.prepare(
            "INSERT INTO memberships (customer_id, project, added_at, added_via) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for i in 0..count {
            let created_at = self.now - 90 * DAY - self.rng.below(365 * DAY as u64) as Micros;
            // A resend never creates a customer; count those as agent adds.
            let via = match CHANNELS[self.rng.weighted(CHANNEL_WEIGHTS)] {
                Channel::Resend => Channel::Agent,
                channel => channel,
            };
            let id = uuid_v7(created_at, &mut self.rng);
            let email = seed_customer_address(i);
            let display_name = (i % 2 == 0).then(|| format!("User {i}"));
            customer.execute(params![id, email, display_name, created_at, via.as_str()])?;
            let mut projects = vec![SEED_PROJECTS[(i % 8) as usize]];
            if i % 3 == 0 {
                projects.push(SEED_PROJECTS[((i + 3) % 8) as usize]);
            }
            for project in &projects {
                membership.execute(params![id, project, created_at, via.as_str()])?;
                self.report.memberships += 1;
            }
            let suppressed = stride != u64::MAX && i % stride == stride - 1;
            people.push(Person {
                id,
                email,
                display_name,
                projects,
                suppressed,
            });
        }
        self.conn.execute_batch("COMMIT")?;
        self.report.customers = count;
        Ok(people)
    }

    /// Inserts the suppressions: the suppressed customers first, then addresses that
    /// never became customers, each with its `suppression_events` row.
    fn suppressions(&mut self, count: u64, people: &[Person]) -> Result<(), StoreError> {
        let mut suppression = self.conn.prepare(
            "INSERT INTO suppressions (email, domain, reason, smtp_code, enhanced_code, response, remote_host,
                 stage, suppressed_at, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut event = self.conn.prepare(
            "INSERT INTO suppression_events (email, added, reason, at) VALUES (?1, 1, ?2, ?3)",
        )?;
        let mut emails = people
            .iter()
            .filter(|p| p.suppressed)
            .map(|p| p.email.clone());
        self.conn.execute_batch("BEGIN")?;
        for j in 0..count {
            let email = emails
                .next()
                .unwrap_or_else(|| format!("gone{j}@{}", domain_of(j)));
            let domain = email.rsplit('@').next().unwrap_or("example.com").to_owned();
            let at = self.now - self.rng.below(90 * DAY as u64) as Micros;
            let reason = SUPPRESSION_REASONS[self.rng.weighted(SUPPRESSION_WEIGHTS)];
            let bounce = matches!(reason, "hard_bounce" | "bounce_report");
            suppression.execute(params![
                email,
                domain,
                reason,
                bounce.then_some(550),
                bounce.then_some("5.1.1"),
                bounce.then_some(BOUNCE.reply),
                bounce.then(|| format!("mx1.{domain}")),
                bounce.then_some("rcpt"),
                at,
                (reason == "manual").then_some("asked to stop by phone")
            ])?;
            event.execute(params![email, reason, at])?;
        }
        self.conn.execute_batch("COMMIT")?;
        self.report.suppressions = count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_database_has_the_asked_sizes_and_valid_addresses() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("seed.db");
        let report = seed_bulk(&path, 2_000, 100, 400).expect("seeds");
        assert_eq!(
            (report.decisions, report.suppressions, report.customers),
            (2_000, 100, 400)
        );
        let conn = Connection::open(&path).expect("opens");
        let count = |sql: &str| {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .expect("counts")
        };
        assert_eq!(count("SELECT count(*) FROM decisions"), 2_000);
        assert_eq!(count("SELECT count(*) FROM suppressions"), 100);
        assert_eq!(
            count("SELECT count(*) FROM suppressions s JOIN customers c ON c.email = s.email"),
            50
        );
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        for i in [0, 9, 399] {
            assert!(crate::model::EmailAddress::parse(&seed_customer_address(i)).is_ok());
        }
    }
}
