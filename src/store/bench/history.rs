//! The decisions of a seeded history and what became of them: channels, statuses,
//! reasons and delivery attempts in realistic proportions, and the small tools
//! (ids, a reproducible random source) that make them.

use super::{DAY, Person, SEED_PROJECTS, Seeder};
use crate::model::Channel;
use crate::store::StoreError;
use crate::store::time::Micros;
use rusqlite::params;

/// Rows per transaction: large enough that commits cost nothing, small enough that
/// the page cache holds what one transaction touched.
const CHUNK: u64 = 50_000;

impl Seeder<'_> {
    /// Inserts `count` decisions in time order (so `seq`, `id` and `created_at` grow
    /// together, as they do in production) for randomly chosen customers.
    pub(super) fn decisions(&mut self, count: u64, people: &[Person]) -> Result<(), StoreError> {
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
                self.conn
                    .execute_batch(if k == 0 { "BEGIN" } else { "COMMIT; BEGIN" })?;
            }
            let at = start + (k * step + self.rng.below(step.max(1))) as Micros;
            let id = uuid_v7(at, &mut self.rng);
            let channel = CHANNELS[self.rng.weighted(CHANNEL_WEIGHTS)];
            // About one input in three hundred was not an address at all (SPEC §3).
            if self.rng.below(300) == 0 {
                let input = format!("not an address {k}");
                decision.execute(params![
                    id,
                    at,
                    SEED_PROJECTS[0],
                    None::<&str>,
                    input,
                    None::<&str>,
                    None::<&str>,
                    channel.as_str(),
                    channel.email_kind().as_str(),
                    "skip",
                    "invalid_address",
                    "skipped",
                    "invalid_address",
                    0,
                    None::<i64>,
                    None::<&str>,
                    None::<i64>,
                    None::<&str>,
                    at
                ])?;
                self.report.decisions += 1;
                continue;
            }
            let person = &people[self.rng.below(people.len() as u64) as usize];
            let project = person.projects[self.rng.below(person.projects.len() as u64) as usize];
            let fate = self.fate(person.suppressed);
            let input = match &person.display_name {
                Some(name) if channel == Channel::EmailRequest => {
                    format!("{name} <{}>", person.email)
                }
                _ => person.email.clone(),
            };
            let send = fate.reasons.is_empty();
            let message_id = send.then(|| format!("<{id}@example.com>"));
            let sent_at = (fate.status == "sent").then_some(at + 2_000_000);
            let next_attempt_at =
                matches!(fate.status, "queued" | "deferred").then_some(at + 300_000_000);
            decision.execute(params![
                id,
                at,
                project,
                person.email,
                input,
                person.display_name,
                person.id,
                channel.as_str(),
                channel.email_kind().as_str(),
                if send { "send" } else { "skip" },
                fate.reasons,
                fate.status,
                fate.status_reason,
                fate.attempts.len() as i64,
                next_attempt_at,
                fate.attempts.last().map(|a| a.reply),
                sent_at,
                message_id,
                at + 2_000_000
            ])?;
            for (n, try_) in fate.attempts.iter().enumerate() {
                let started = at + 1_000_000 + n as Micros * 300_000_000;
                let server = format!(
                    "mx1.{}",
                    person.email.rsplit('@').next().unwrap_or("example.com")
                );
                attempt.execute(params![
                    id,
                    started,
                    started + 400_000,
                    server,
                    try_.stage,
                    try_.code,
                    try_.enhanced,
                    try_.reply,
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
            return if roll < 70 {
                Fate::skipped("suppressed")
            } else {
                Fate::tried("bounced", None, &[&BOUNCE])
            };
        }
        match roll {
            0..63 if roll.is_multiple_of(10) => Fate::tried("sent", None, &[&DEFER, &SENT]),
            0..63 => Fate::tried("sent", None, &[&SENT]),
            63..93 => Fate::skipped(SKIP_REASONS[self.rng.weighted(SKIP_WEIGHTS)]),
            93..96 => Fate::tried("bounced", None, &[&BOUNCE]),
            96..98 => Fate::tried("deferred", None, &[&DEFER]),
            98 => Fate::tried("failed", Some("policy_rejected"), &[&POLICY]),
            _ => Fate {
                status: "queued",
                status_reason: None,
                reasons: String::new(),
                attempts: Vec::new(),
            },
        }
    }
}

/// One seeded delivery try.
pub(super) struct Try {
    stage: &'static str,
    code: i64,
    enhanced: &'static str,
    pub(super) reply: &'static str,
    outcome: &'static str,
}

static SENT: Try = Try {
    stage: "data",
    code: 250,
    enhanced: "2.0.0",
    reply: "250 2.0.0 Ok: queued as 4F2C1B",
    outcome: "sent",
};
static DEFER: Try = Try {
    stage: "rcpt",
    code: 451,
    enhanced: "4.7.1",
    reply: "451 4.7.1 Greylisted, try again later",
    outcome: "deferred",
};
pub(super) static BOUNCE: Try = Try {
    stage: "rcpt",
    code: 550,
    enhanced: "5.1.1",
    reply: "550 5.1.1 Recipient address rejected: User unknown",
    outcome: "bounced",
};
static POLICY: Try = Try {
    stage: "data",
    code: 554,
    enhanced: "5.7.1",
    reply: "554 5.7.1 Message rejected by policy",
    outcome: "policy_rejected",
};

struct Fate {
    status: &'static str,
    status_reason: Option<&'static str>,
    reasons: String,
    attempts: Vec<&'static Try>,
}

impl Fate {
    fn skipped(reason: &'static str) -> Fate {
        Fate {
            status: "skipped",
            status_reason: Some(reason),
            reasons: reason.to_owned(),
            attempts: Vec::new(),
        }
    }

    fn tried(
        status: &'static str,
        status_reason: Option<&'static str>,
        attempts: &[&'static Try],
    ) -> Fate {
        Fate {
            status,
            status_reason,
            reasons: String::new(),
            attempts: attempts.to_vec(),
        }
    }
}

pub(super) const CHANNELS: &[Channel] = &[
    Channel::Agent,
    Channel::EmailRequest,
    Channel::EmailCc,
    Channel::Signup,
    Channel::Automation,
    Channel::Api,
    Channel::Resend,
];
pub(super) const CHANNEL_WEIGHTS: &[u64] = &[35, 25, 10, 10, 10, 5, 5];
const SKIP_REASONS: &[&str] = &[
    "existing_customer",
    "agent_opted_out",
    "cc_sharing_disabled",
    "public_signup_disabled",
    "automation_created",
    "api_created",
    "invite_notification_disabled",
    "verification_emails_disabled",
    "outgoing_mail_disabled",
    "blocked_by_rule",
];
const SKIP_WEIGHTS: &[u64] = &[40, 15, 10, 5, 8, 5, 7, 4, 3, 3];
pub(super) const SUPPRESSION_REASONS: &[&str] = &[
    "hard_bounce",
    "bounce_report",
    "complaint",
    "manual",
    "import",
];
pub(super) const SUPPRESSION_WEIGHTS: &[u64] = &[70, 15, 5, 5, 5];

/// A UUID v7 for time `at`, so ids sort like the rows (RFC 9562 §5.7).
pub(super) fn uuid_v7(at: Micros, rng: &mut Rng) -> String {
    let ms = (at / 1000).max(0) as u128 & ((1 << 48) - 1);
    let random = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    let bits = (ms << 80)
        | (0x7 << 76)
        | (random & (0xfff << 64))
        | (0b10 << 62)
        | (random & ((1 << 62) - 1));
    uuid::Uuid::from_u128(bits).to_string()
}

/// SplitMix64: small, fast and reproducible; the benchmark needs no better.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// An index into `weights`, chosen in proportion to them.
    pub(super) fn weighted(&mut self, weights: &[u64]) -> usize {
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
