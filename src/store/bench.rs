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

use super::StoreError;
use super::time::{Micros, now_micros};
use crate::model::{Channel, ProjectSettings};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::{Duration, Instant};

/// The projects the seeded customers belong to; `BENCH` is the one ingest uses.
pub const SEED_PROJECTS: &[&str] = &["BENCH", "HR", "IT", "FACILITIES", "LEGAL", "SALES", "FINANCE", "SUPPORT"];

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
    /// Wall time from opening the file to handing it over.
    pub elapsed: Duration,
}

/// The address of seeded customer `i`, so the benchmark can look customers up.
pub fn seed_customer_address(i: u64) -> String {
    format!("user{i}@{}", domain_of(i))
}

const DOMAINS: &[&str] = &[
    "acme.example", "globex.example", "initech.example", "umbrella.example", "hooli.example",
    "stark.example", "wayne.example", "tyrell.example",
];

fn domain_of(i: u64) -> String {
    // Every tenth customer has a domain of their own, as small companies do.
    if i % 10 == 9 { format!("corp{}.example", i % 5000) } else { DOMAINS[(i % 8) as usize].to_owned() }
}

/// Microseconds in a day.
const DAY: Micros = 86_400_000_000;

/// Seeds a new database at `path` with `customers` customers, `decisions` decisions
/// over the last 90 days and `suppressions` suppressions (SPEC §8 sizes: 1,000,000
/// and 100,000). `path` must not exist yet.
pub fn seed_bulk(path: &Path, decisions: u64, suppressions: u64, customers: u64) -> Result<SeedReport, StoreError> {
    let started = Instant::now();
    if path.exists() {
        return Err(StoreError::Conflict(format!("{} exists; seeding needs a new file", path.display())));
    }
    super::Store::migrate_only(path)?;
    let conn = Connection::open(path)?;
    // A throwaway file: no journal, no fsync, a large cache (see the module notes).
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -524288;",
    )?;
    let customers = customers.max(1);
    let now = now_micros();
    let mut seeder = Seeder { conn: &conn, rng: Rng(0x5eed_2026), now, report: SeedReport::empty() };
    seeder.projects()?;
    let people = seeder.customers(customers, suppressions)?;
    seeder.decisions(decisions, &people)?;
    seeder.suppressions(suppressions, &people)?;
    let mut report = seeder.report;
    conn.execute_batch("PRAGMA locking_mode = NORMAL; PRAGMA journal_mode = WAL;")?;
    drop(conn);
    report.elapsed = started.elapsed();
    Ok(report)
}

impl SeedReport {
    fn empty() -> Self {
        SeedReport { customers: 0, memberships: 0, decisions: 0, attempts: 0, suppressions: 0, elapsed: Duration::ZERO }
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

/// Rows per transaction: large enough that commits cost nothing, small enough that
/// the page cache holds what one transaction touched.
const CHUNK: u64 = 50_000;

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
        let stride = if suppressions < 2 { u64::MAX } else { (count / (suppressions / 2)).max(1) };
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
            people.push(Person { id, email, display_name, projects, suppressed });
        }
        self.conn.execute_batch("COMMIT")?;
        self.report.customers = count;
        Ok(people)
    }

    /// Inserts `count` decisions in time order (so `seq`, `id` and `created_at` grow
    /// together, as they do in production) for randomly chosen customers.
    fn decisions(&mut self, count: u64, people: &[Person]) -> Result<(), StoreError> {
        let start = self.now - 90 * DAY;
        let step = (90 * DAY) as u64 / count.max(1);
        let mut decision = self.conn.prepare(
            "INSERT INTO decisions (id, created_at, project, recipient, input, display_name, customer_id,
                 channel, email_kind, decision, reasons, status, status_reason, attempts_count,
                 next_attempt_at, last_reply, sent_at, message_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        )?;
        let mut attempt = self.conn.prepare(
            "INSERT INTO attempts (decision_id, started_at, finished_at, server, stage, smtp_code,
                 enhanced_code, reply, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for k in 0..count {
            if k % CHUNK == 0 {
                self.conn.execute_batch(if k == 0 { "BEGIN" } else { "COMMIT; BEGIN" })?;
            }
            let at = start + (k * step + self.rng.below(step.max(1))) as Micros;
            let id = uuid_v7(at, &mut self.rng);
            let channel = CHANNELS[self.rng.weighted(CHANNEL_WEIGHTS)];
            // About one input in three hundred was not an address at all (SPEC §3).
            if self.rng.below(300) == 0 {
                let input = format!("not an address {k}");
                decision.execute(params![
                    id, at, SEED_PROJECTS[0], None::<&str>, input, None::<&str>, None::<&str>, channel.as_str(),
                    channel.email_kind().as_str(), "skip", "invalid_address", "skipped", "invalid_address", 0,
                    None::<i64>, None::<&str>, None::<i64>, None::<&str>, at
                ])?;
                self.report.decisions += 1;
                continue;
            }
            let person = &people[self.rng.below(people.len() as u64) as usize];
            let project = person.projects[self.rng.below(person.projects.len() as u64) as usize];
            let fate = self.fate(person.suppressed);
            let input = match &person.display_name {
                Some(name) if channel == Channel::EmailRequest => format!("{name} <{}>", person.email),
                _ => person.email.clone(),
            };
            let send = fate.reasons.is_empty();
            let message_id = send.then(|| format!("<{id}@example.com>"));
            let sent_at = (fate.status == "sent").then_some(at + 2_000_000);
            let next_attempt_at = matches!(fate.status, "queued" | "deferred").then_some(at + 300_000_000);
            decision.execute(params![
                id, at, project, person.email, input, person.display_name, person.id, channel.as_str(),
                channel.email_kind().as_str(), if send { "send" } else { "skip" }, fate.reasons, fate.status,
                fate.status_reason, fate.attempts.len() as i64, next_attempt_at, fate.attempts.last().map(|a| a.reply),
                sent_at, message_id, at + 2_000_000
            ])?;
            for (n, try_) in fate.attempts.iter().enumerate() {
                let started = at + 1_000_000 + n as Micros * 300_000_000;
                let server = format!("mx1.{}", person.email.rsplit('@').next().unwrap_or("example.com"));
                attempt.execute(params![
                    id, started, started + 400_000, server, try_.stage, try_.code, try_.enhanced, try_.reply,
                    try_.outcome
                ])?;
                self.report.attempts += 1;
            }
            self.report.decisions += 1;
        }
        if count > 0 {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// What became of one decision: mostly sent, a third skipped for the usual
    /// reasons, a few bounced, deferred, failed or still queued.
    fn fate(&mut self, suppressed: bool) -> Fate {
        let roll = self.rng.below(100);
        if suppressed {
            return if roll < 70 { Fate::skipped("suppressed") } else { Fate::tried("bounced", None, &[&BOUNCE]) };
        }
        match roll {
            0..63 if roll % 10 == 0 => Fate::tried("sent", None, &[&DEFER, &SENT]),
            0..63 => Fate::tried("sent", None, &[&SENT]),
            63..93 => Fate::skipped(SKIP_REASONS[self.rng.weighted(SKIP_WEIGHTS)]),
            93..96 => Fate::tried("bounced", None, &[&BOUNCE]),
            96..98 => Fate::tried("deferred", None, &[&DEFER]),
            98 => Fate::tried("failed", Some("policy_rejected"), &[&POLICY]),
            _ => Fate { status: "queued", status_reason: None, reasons: String::new(), attempts: Vec::new() },
        }
    }

    /// Inserts the suppressions: the suppressed customers first, then addresses that
    /// never became customers, each with its `suppression_events` row.
    fn suppressions(&mut self, count: u64, people: &[Person]) -> Result<(), StoreError> {
        let mut suppression = self.conn.prepare(
            "INSERT INTO suppressions (email, domain, reason, smtp_code, enhanced_code, response, remote_host,
                 stage, suppressed_at, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut event =
            self.conn.prepare("INSERT INTO suppression_events (email, added, reason, at) VALUES (?1, 1, ?2, ?3)")?;
        let mut emails = people.iter().filter(|p| p.suppressed).map(|p| p.email.clone());
        self.conn.execute_batch("BEGIN")?;
        for j in 0..count {
            let email = emails.next().unwrap_or_else(|| format!("gone{j}@{}", domain_of(j)));
            let domain = email.rsplit('@').next().unwrap_or("example.com").to_owned();
            let at = self.now - self.rng.below(90 * DAY as u64) as Micros;
            let reason = SUPPRESSION_REASONS[self.rng.weighted(SUPPRESSION_WEIGHTS)];
            let bounce = matches!(reason, "hard_bounce" | "bounce_report");
            suppression.execute(params![
                email, domain, reason, bounce.then_some(550), bounce.then_some("5.1.1"), bounce.then_some(BOUNCE.reply),
                bounce.then(|| format!("mx1.{domain}")), bounce.then_some("rcpt"), at,
                (reason == "manual").then_some("asked to stop by phone")
            ])?;
            event.execute(params![email, reason, at])?;
        }
        self.conn.execute_batch("COMMIT")?;
        self.report.suppressions = count;
        Ok(())
    }
}

/// One seeded delivery try.
struct Try {
    stage: &'static str,
    code: i64,
    enhanced: &'static str,
    reply: &'static str,
    outcome: &'static str,
}

static SENT: Try = Try { stage: "data", code: 250, enhanced: "2.0.0", reply: "250 2.0.0 Ok: queued as 4F2C1B", outcome: "sent" };
static DEFER: Try = Try { stage: "rcpt", code: 451, enhanced: "4.7.1", reply: "451 4.7.1 Greylisted, try again later", outcome: "deferred" };
static BOUNCE: Try = Try { stage: "rcpt", code: 550, enhanced: "5.1.1", reply: "550 5.1.1 Recipient address rejected: User unknown", outcome: "bounced" };
static POLICY: Try = Try { stage: "data", code: 554, enhanced: "5.7.1", reply: "554 5.7.1 Message rejected by policy", outcome: "policy_rejected" };

struct Fate {
    status: &'static str,
    status_reason: Option<&'static str>,
    reasons: String,
    attempts: Vec<&'static Try>,
}

impl Fate {
    fn skipped(reason: &'static str) -> Fate {
        Fate { status: "skipped", status_reason: Some(reason), reasons: reason.to_owned(), attempts: Vec::new() }
    }

    fn tried(status: &'static str, status_reason: Option<&'static str>, attempts: &[&'static Try]) -> Fate {
        Fate { status, status_reason, reasons: String::new(), attempts: attempts.to_vec() }
    }
}

const CHANNELS: &[Channel] = &[
    Channel::Agent, Channel::EmailRequest, Channel::EmailCc, Channel::Signup, Channel::Automation, Channel::Api,
    Channel::Resend,
];
const CHANNEL_WEIGHTS: &[u64] = &[35, 25, 10, 10, 10, 5, 5];
const SKIP_REASONS: &[&str] = &[
    "existing_customer", "agent_opted_out", "cc_sharing_disabled", "public_signup_disabled", "automation_created",
    "api_created", "invite_notification_disabled", "verification_emails_disabled", "outgoing_mail_disabled",
    "blocked_by_rule",
];
const SKIP_WEIGHTS: &[u64] = &[40, 15, 10, 5, 8, 5, 7, 4, 3, 3];
const SUPPRESSION_REASONS: &[&str] = &["hard_bounce", "bounce_report", "complaint", "manual", "import"];
const SUPPRESSION_WEIGHTS: &[u64] = &[70, 15, 5, 5, 5];

/// A UUID v7 for time `at`, so ids sort like the rows (RFC 9562 §5.7).
fn uuid_v7(at: Micros, rng: &mut Rng) -> String {
    let ms = (at / 1000).max(0) as u128 & ((1 << 48) - 1);
    let random = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    let bits = (ms << 80) | (0x7 << 76) | (random & (0xfff << 64)) | (0b10 << 62) | (random & ((1 << 62) - 1));
    uuid::Uuid::from_u128(bits).to_string()
}

/// SplitMix64: small, fast and reproducible; the benchmark needs no better.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// An index into `weights`, chosen in proportion to them.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut roll = self.below(weights.iter().sum());
        for (i, w) in weights.iter().enumerate() {
            if roll < *w {
                return i;
            }
            roll -= w;
        }
        0
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
        assert_eq!((report.decisions, report.suppressions, report.customers), (2_000, 100, 400));
        let conn = Connection::open(&path).expect("opens");
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("counts");
        assert_eq!(count("SELECT count(*) FROM decisions"), 2_000);
        assert_eq!(count("SELECT count(*) FROM suppressions"), 100);
        assert_eq!(count("SELECT count(*) FROM suppressions s JOIN customers c ON c.email = s.email"), 50);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal");
        for i in [0, 9, 399] {
            assert!(crate::model::EmailAddress::parse(&seed_customer_address(i)).is_ok());
        }
    }
}
