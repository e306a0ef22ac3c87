//! Reads, and the admin writes that go with them: projects, site, decisions, the `why`
//! facts, audit and stats.

use super::db::{Db, DbError, OptionalExtension, Param, Row, params};
use super::time::{Micros, format_time, now_micros, parse_time};
use super::{Store, StoreError};
use crate::model::{
    Channel, Project, ProjectKey, ProjectPatch, ProjectSettings, ReasonCode, Site, SitePatch,
    Status, SuppressionReason, validate_name,
};
use serde::Serialize;

pub(crate) fn load_project(conn: &Db, key: &str) -> Result<Project, StoreError> {
    conn.prepare_cached("SELECT key, name, settings FROM projects WHERE key = ?1")?
        .query_row(params![key], project_from_row)
        .optional()?
        .ok_or(StoreError::NotFound("project"))?
}

fn project_from_row(row: &Row<'_>) -> Result<Result<Project, StoreError>, DbError> {
    let key: String = row.get(0)?;
    let name: String = row.get(1)?;
    let settings: String = row.get(2)?;
    Ok((|| {
        Ok(Project {
            key: ProjectKey::parse(&key).map_err(StoreError::Corrupt)?,
            name,
            settings: serde_json::from_str(&settings)?,
        })
    })())
}

pub(crate) fn load_site(conn: &Db) -> Result<Site, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT outgoing_mail, from_mailbox, portal_base_url, outgoing_mail_changed_at
             FROM site WHERE id = 1",
        )?
        .query_row(params![], |r| {
            Ok(Site {
                outgoing_mail: r.get(0)?,
                from: r.get(1)?,
                portal_base_url: r.get(2)?,
                outgoing_mail_changed_at: r.get::<_, Option<i64>>(3)?.map(format_time),
            })
        })?)
}

pub(crate) fn suppression_reason(
    conn: &Db,
    email: &str,
) -> Result<Option<SuppressionReason>, StoreError> {
    let reason: Option<String> = conn
        .prepare_cached("SELECT reason FROM suppressions WHERE email = ?1")?
        .query_row(params![email], |r| r.get(0))
        .optional()?;
    reason
        .map(|r| r.parse().map_err(|e| StoreError::Corrupt(format!("{e}"))))
        .transpose()
}

/// Records an admin action (SPEC §5 audit: who, what, when, note).
pub(crate) fn audit(
    conn: &Db,
    who: &str,
    what: &str,
    target: Option<&str>,
    note: Option<&str>,
    detail: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, who, what, target, note, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now_micros(),
        who,
        what,
        target,
        note,
        detail.map(|d| d.to_string())
    ])?;
    Ok(())
}

/// One row of the outbox (SPEC §5 Decision JSON).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    pub id: String,
    pub created_at: String,
    pub project: String,
    pub recipient: Option<String>,
    pub input: String,
    pub customer_id: Option<String>,
    pub channel: Channel,
    pub email_kind: crate::model::EmailKind,
    pub decision: crate::model::Verdict,
    pub reasons: Vec<ReasonCode>,
    pub status: Status,
    pub status_reason: Option<crate::model::StatusReason>,
    pub attempts_count: i64,
    pub next_attempt_at: Option<String>,
    pub last_reply: Option<String>,
    pub sent_at: Option<String>,
    pub message_id: Option<String>,
    /// Present on `GET /decisions/{id}` and in `why`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<super::AttemptRecord>>,
    /// The display name given on input (used to greet the customer).
    #[serde(skip)]
    pub display_name: Option<String>,
    /// Internal order, for paging.
    #[serde(skip)]
    pub seq: i64,
}

pub(crate) const DECISION_COLUMNS: &str =
    "seq, id, created_at, project, recipient, input, customer_id, channel,
    email_kind, decision, reasons, status, status_reason, attempts_count, next_attempt_at,
    last_reply, sent_at, message_id, display_name";

pub(crate) fn decision_from_row(row: &Row<'_>) -> Result<DecisionRecord, DbError> {
    fn parse<T: std::str::FromStr>(row: &Row<'_>, i: usize) -> Result<T, DbError> {
        let s: String = row.get(i)?;
        s.parse().map_err(|_| DbError::Conversion {
            column: i,
            message: format!("unknown value `{s}`"),
        })
    }
    let reasons: String = row.get(10)?;
    Ok(DecisionRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        created_at: format_time(row.get(2)?),
        project: row.get(3)?,
        recipient: row.get(4)?,
        input: row.get(5)?,
        customer_id: row.get(6)?,
        channel: parse(row, 7)?,
        email_kind: parse(row, 8)?,
        decision: parse(row, 9)?,
        reasons: reasons.split(',').filter_map(|r| r.parse().ok()).collect(),
        status: parse(row, 11)?,
        status_reason: match row.get::<_, Option<String>>(12)? {
            Some(_) => Some(parse(row, 12)?),
            None => None,
        },
        attempts_count: row.get(13)?,
        next_attempt_at: row.get::<_, Option<i64>>(14)?.map(format_time),
        last_reply: row.get(15)?,
        sent_at: row.get::<_, Option<i64>>(16)?.map(format_time),
        message_id: row.get(17)?,
        display_name: row.get(18)?,
        attempts: None,
    })
}

/// Filters of `GET /api/v1/decisions` (SPEC §5), already checked.
#[derive(Clone, Debug, Default)]
pub struct DecisionFilter {
    /// Normalized recipient, or a raw input to find invalid ones.
    pub email: Option<String>,
    /// The dashboard's partial address: `@domain` matches a domain, anything else the
    /// start of an address (or a whole invalid input).
    pub email_part: Option<String>,
    pub project: Option<String>,
    pub status: Option<Status>,
    pub reason: Option<ReasonCode>,
    pub channel: Option<Channel>,
    pub since: Option<Micros>,
    pub until: Option<Micros>,
    /// 1 to 500.
    pub limit: usize,
    /// Only rows older than this `seq` (the previous page's `next_cursor`).
    pub before: Option<i64>,
}

/// A page of a list: `{items, next_cursor}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A customer as `why` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub created_at: String,
    pub created_via: Channel,
    pub projects: Vec<Membership>,
}

/// A customer's membership of a project.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub key: String,
    pub added_at: String,
    pub added_via: Channel,
}

/// A suppression (SPEC §9).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SuppressionRecord {
    pub email: String,
    pub reason: SuppressionReason,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub response: Option<String>,
    pub remote_host: Option<String>,
    pub stage: Option<String>,
    pub suppressed_at: String,
    pub decision_id: Option<String>,
    pub note: Option<String>,
    pub evidence: Option<String>,
    /// When the suppression ends by itself (RFC 3339): a full mailbox's (SPEC §11);
    /// null for every other reason.
    pub expires_at: Option<String>,
    #[serde(skip)]
    pub suppressed_at_micros: Micros,
}

pub(crate) const SUPPRESSION_COLUMNS: &str = "email, reason, smtp_code, enhanced_code, response,
    remote_host, stage, suppressed_at, decision_id, note, evidence, expires_at";

pub(crate) fn suppression_from_row(row: &Row<'_>) -> Result<SuppressionRecord, DbError> {
    let reason: String = row.get(1)?;
    let at: i64 = row.get(7)?;
    Ok(SuppressionRecord {
        email: row.get(0)?,
        reason: reason.parse().unwrap_or(SuppressionReason::Manual),
        smtp_code: row.get(2)?,
        enhanced_code: row.get(3)?,
        response: row.get(4)?,
        remote_host: row.get(5)?,
        stage: row.get(6)?,
        suppressed_at: format_time(at),
        decision_id: row.get(8)?,
        note: row.get(9)?,
        evidence: row.get(10)?,
        expires_at: row.get::<_, Option<i64>>(11)?.map(format_time),
        suppressed_at_micros: at,
    })
}

/// Everything `why` needs about one address, read in one snapshot.
#[derive(Clone, Debug)]
pub struct WhyFacts {
    pub customer: Option<CustomerView>,
    pub suppression: Option<SuppressionRecord>,
    pub site: Site,
    /// Newest first, each with its attempts.
    pub decisions: Vec<DecisionRecord>,
    /// The customer's projects, plus the one named in the query.
    pub projects: Vec<Project>,
}

/// An audit row of `SELECT id, who, what, target, note, at, detail`.
pub(crate) fn audit_from_row(r: &Row<'_>) -> Result<AuditEntry, DbError> {
    let detail: Option<String> = r.get(6)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        who: r.get(1)?,
        what: r.get(2)?,
        target: r.get(3)?,
        note: r.get(4)?,
        when: format_time(r.get(5)?),
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// An audit entry (SPEC §9): `{id, who, what, target, note, when}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub who: String,
    pub what: String,
    pub target: Option<String>,
    pub note: Option<String>,
    pub when: String,
    /// Extra detail, e.g. the addresses of a bulk removal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// `GET /api/v1/stats` (SPEC §5).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub window: String,
    pub decisions: i64,
    pub sent: i64,
    pub bounced: i64,
    pub deferred: i64,
    pub failed: i64,
    pub queued: i64,
    pub skipped: std::collections::BTreeMap<String, i64>,
    pub bounce_rate: f64,
    pub complaints: i64,
    pub complaint_rate: f64,
    pub suppressions_total: i64,
    pub suppressions_added: i64,
    pub sender_side_failures: i64,
    pub series: Vec<StatsPoint>,
}

/// One bucket of the stats series.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StatsPoint {
    pub t: String,
    pub sent: i64,
    pub skipped: i64,
    pub bounced: i64,
    pub suppressions_added: i64,
}

/// Suppressions sharing a cause (SPEC §5 incidents).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Incident {
    pub cause: String,
    pub count: i64,
    pub first_at: String,
    pub last_at: String,
    pub sample: Vec<String>,
    /// Its suppressions (their addresses): what `bulk-remove` `{ids}` removes.
    pub ids: Vec<String>,
}

/// What `resend-skipped` did.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ResendSkippedOutcome {
    pub queued: i64,
    pub still_blocked: std::collections::BTreeMap<String, i64>,
    /// True when this call recorded the decisions; false in an idempotent replay.
    /// Read by the metrics (SPEC §14), never sent.
    #[serde(skip)]
    pub recorded: bool,
}

/// Filters of `GET /api/v1/suppressions`.
#[derive(Clone, Debug, Default)]
pub struct SuppressionFilter {
    pub q: Option<String>,
    pub limit: usize,
    pub after: Option<(Micros, String)>,
}

impl Store {
    /// All projects, by key.
    pub async fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key, name, settings FROM projects ORDER BY key")?;
            let rows = stmt.query_map(params![], project_from_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    /// One project.
    pub async fn project(&self, key: ProjectKey) -> Result<Project, StoreError> {
        self.read(move |conn| load_project(conn, key.as_str()))
            .await
    }

    /// Creates or updates a project. `replace` (PUT) resets missing fields to defaults;
    /// otherwise (PATCH) they keep their value. PATCH of an unknown project is 404.
    pub async fn put_project(
        &self,
        key: ProjectKey,
        patch: ProjectPatch,
        replace: bool,
        who: String,
    ) -> Result<Project, StoreError> {
        self.write(move |conn| {
            let existing = load_project(conn, key.as_str())
                .map(Some)
                .or_else(|e| match e {
                    StoreError::NotFound(_) => Ok(None),
                    e => Err(e),
                })?;
            if existing.is_none() && !replace {
                return Err(StoreError::NotFound("project"));
            }
            let (mut name, base) = match (&existing, replace) {
                (Some(p), false) => (p.name.clone(), p.settings.clone()),
                (Some(p), true) => (p.name.clone(), ProjectSettings::default()),
                (None, _) => (key.to_string(), ProjectSettings::default()),
            };
            if replace && patch.name.is_none() && existing.is_none() {
                name = validate_name(key.as_str())?;
            }
            let settings = patch.clone().apply(&mut name, base)?;
            let now = now_micros();
            conn.prepare_cached(
                "INSERT INTO projects (key, name, settings, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (key) DO UPDATE SET name = ?2, settings = ?3, updated_at = ?4",
            )?
            .execute(params![
                key.as_str(),
                name,
                serde_json::to_string(&settings)?,
                now
            ])?;
            let project = Project {
                key: key.clone(),
                name,
                settings,
            };
            let what = if existing.is_some() {
                "project.update"
            } else {
                "project.create"
            };
            audit(
                conn,
                &who,
                what,
                Some(key.as_str()),
                None,
                Some(&serde_json::to_value(&project)?),
            )?;
            Ok(project)
        })
        .await
    }

    /// The site settings.
    pub async fn site(&self) -> Result<Site, StoreError> {
        self.read(load_site).await
    }

    /// Changes site settings; audited.
    pub async fn patch_site(&self, patch: SitePatch, who: String) -> Result<Site, StoreError> {
        patch.validate()?;
        self.write(move |conn| {
            let before = load_site(conn)?;
            let now = now_micros();
            if let Some(on) = patch.outgoing_mail
                && on != before.outgoing_mail
            {
                conn.execute(
                    "UPDATE site SET outgoing_mail = ?1, outgoing_mail_changed_at = ?2 WHERE id = 1",
                    params![on, now],
                )?;
            }
            if let Some(from) = &patch.from {
                conn.execute("UPDATE site SET from_mailbox = ?1 WHERE id = 1", params![from.trim()])?;
            }
            if let Some(url) = &patch.portal_base_url {
                conn.execute("UPDATE site SET portal_base_url = ?1 WHERE id = 1", params![url.trim_end_matches('/')])?;
            }
            let after = load_site(conn)?;
            audit(conn, &who, "site.update", Some("site"), None, Some(&serde_json::json!({
                "outgoing_mail": after.outgoing_mail, "from": after.from, "portal_base_url": after.portal_base_url,
            })))?;
            Ok(after)
        })
        .await
    }

    /// A page of decisions, newest first.
    pub async fn decisions(
        &self,
        filter: DecisionFilter,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        self.read(move |conn| list_decisions(conn, &filter)).await
    }

    /// Whether a decision with this id exists (the bounce door's `RCPT TO` check).
    pub async fn decision_exists(&self, id: String) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM decisions WHERE id = ?1")?
                .query_row(params![&id], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// One decision with its attempts.
    pub async fn decision(&self, id: String) -> Result<DecisionRecord, StoreError> {
        self.read(move |conn| {
            let mut decision = conn
                .prepare_cached(&format!(
                    "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?1"
                ))?
                .query_row(params![&id], decision_from_row)
                .optional()?
                .ok_or(StoreError::NotFound("decision"))?;
            decision.attempts = Some(super::delivery::attempts_of(conn, &decision.id)?);
            Ok(decision)
        })
        .await
    }

    /// The facts behind `why`: customer, memberships, suppression, site, decisions.
    /// `key` is a normalized address, or a raw input for addresses that never parsed.
    pub async fn why_facts(
        &self,
        key: String,
        valid: bool,
        project: Option<ProjectKey>,
    ) -> Result<WhyFacts, StoreError> {
        self.read(move |conn| {
            // One snapshot: customer, suppression and decisions agree with each other.
            conn.begin_snapshot()?;
            let facts = why_tx(conn, &key, valid, project.as_ref());
            match &facts {
                Ok(_) => conn.commit()?,
                Err(_) => conn.rollback()?,
            }
            facts
        })
        .await
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, who, what, target, note, at, detail FROM audit
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let items = stmt
                .query_map(
                    params![before.unwrap_or(i64::MAX), limit as i64 + 1],
                    audit_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(page(items, limit, |e| e.id.to_string()))
        })
        .await
    }

    /// How many decisions have `status` (an index range count).
    pub async fn count_status(&self, status: Status) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT count(*) FROM decisions WHERE status = ?1")?
                .query_row(params![status.as_str()], |r| r.get(0))?)
        })
        .await
    }

    /// Whether the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1", params![], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }

    /// Counts of a few tables, for tests and the CLI (`mailtrail stats --counts`).
    pub async fn row_counts(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.read(|conn| {
            let mut counts = std::collections::BTreeMap::new();
            for table in [
                "customers",
                "memberships",
                "decisions",
                "attempts",
                "suppressions",
                "audit",
                "projects",
            ] {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| {
                        r.get(0)
                    })?;
                counts.insert(table.to_owned(), n);
            }
            Ok(counts)
        })
        .await
    }
}

/// Cuts a `limit + 1` fetch into a page and its cursor.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next_cursor }
}

/// A WHERE clause built from optional filters, with numbered parameters.
#[derive(Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    args: Vec<Box<dyn Param>>,
}

impl Filter {
    /// Adds `clause`, in which every `$` stands for `value`.
    pub(crate) fn push(&mut self, clause: &str, value: Box<dyn Param>) {
        self.args.push(value);
        self.clauses
            .push(clause.replace('$', &format!("?{}", self.args.len())));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// `WHERE a AND b`, or nothing.
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The next parameter number.
    pub(crate) fn next_index(&self) -> usize {
        self.args.len() + 1
    }

    pub(crate) fn params(&self) -> Vec<&dyn Param> {
        self.args.iter().map(|b| b.as_ref()).collect()
    }

    pub(crate) fn push_value(&mut self, value: Box<dyn Param>) {
        self.args.push(value);
    }
}

fn list_decisions(conn: &Db, f: &DecisionFilter) -> Result<Page<DecisionRecord>, StoreError> {
    let mut w = decision_where(f);
    if let Some(before) = f.before {
        w.push("seq < $", Box::new(before));
    }
    let sql = format!(
        "SELECT {DECISION_COLUMNS} FROM decisions {} ORDER BY seq DESC LIMIT ?{}",
        w.sql(),
        w.next_index()
    );
    w.push_value(Box::new(f.limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let items = stmt
        .query_map(&w.params(), decision_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page(items, f.limit, |d| d.seq.to_string()))
}

/// The WHERE clause of a decision filter, without its page position (`before`).
pub(crate) fn decision_where(f: &DecisionFilter) -> Filter {
    let mut w = Filter::default();
    if let Some(email) = &f.email {
        w.push(
            "(recipient = $ OR (recipient IS NULL AND input = $))",
            Box::new(email.clone()),
        );
    }
    if let Some(part) = &f.email_part {
        let escaped = super::suppressions::like_escape(&part.to_lowercase());
        let pattern = match escaped.strip_prefix('@') {
            Some(domain) => format!("%@{domain}"),
            None => format!("{escaped}%"),
        };
        w.push_value(Box::new(part.clone()));
        let raw = w.next_index() - 1;
        w.push(
            &format!("(recipient LIKE $ ESCAPE '\\' OR (recipient IS NULL AND input = ?{raw}))"),
            Box::new(pattern),
        );
    }
    if let Some(project) = &f.project {
        w.push("project = $", Box::new(project.clone()));
    }
    if let Some(status) = f.status {
        w.push("status = $", Box::new(status.as_str()));
    }
    if let Some(reason) = f.reason {
        w.push(
            "(',' || reasons || ',') LIKE $",
            Box::new(format!("%,{reason},%")),
        );
    }
    if let Some(channel) = f.channel {
        w.push("channel = $", Box::new(channel.as_str()));
    }
    if let Some(since) = f.since {
        w.push("created_at >= $", Box::new(since));
    }
    if let Some(until) = f.until {
        w.push("created_at < $", Box::new(until));
    }
    w
}

fn why_tx(
    conn: &Db,
    key: &str,
    valid: bool,
    project: Option<&ProjectKey>,
) -> Result<WhyFacts, StoreError> {
    let site = load_site(conn)?;
    let customer = if valid {
        customer_view(conn, key)?
    } else {
        None
    };
    let suppression = if valid {
        conn.prepare_cached(&format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE email = ?1"
        ))?
        .query_row(params![key], suppression_from_row)
        .optional()?
    } else {
        None
    };
    let sql = if valid {
        format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE recipient = ?1 ORDER BY seq DESC LIMIT 50"
        )
    } else {
        format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE recipient IS NULL AND input = ?1 ORDER BY seq DESC LIMIT 50"
        )
    };
    let mut decisions = conn
        .prepare_cached(&sql)?
        .query_map(params![key], decision_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    for decision in &mut decisions {
        decision.attempts = Some(super::delivery::attempts_of(conn, &decision.id)?);
    }
    let mut keys: Vec<String> = customer
        .as_ref()
        .map(|c| c.projects.iter().map(|m| m.key.clone()).collect())
        .unwrap_or_default();
    if let Some(p) = project
        && !keys.iter().any(|k| k == p.as_str())
    {
        keys.push(p.to_string());
    }
    let mut projects = Vec::new();
    for key in keys {
        match load_project(conn, &key) {
            Ok(p) => projects.push(p),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(WhyFacts {
        customer,
        suppression,
        site,
        decisions,
        projects,
    })
}

fn customer_view(conn: &Db, email: &str) -> Result<Option<CustomerView>, StoreError> {
    let row = conn
        .prepare_cached("SELECT id, email, display_name, created_at, created_via FROM customers WHERE email = ?1")?
        .query_row(params![email], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, i64>(3)?, r.get::<_, String>(4)?))
        })
        .optional()?;
    let Some((id, email, display_name, created_at, via)) = row else {
        return Ok(None);
    };
    let projects = conn
        .prepare_cached("SELECT project, added_at, added_via FROM memberships WHERE customer_id = ?1 ORDER BY added_at")?
        .query_map(params![&id], |r| {
            Ok(Membership {
                key: r.get(0)?,
                added_at: format_time(r.get(1)?),
                added_via: r.get::<_, String>(2)?.parse().unwrap_or(Channel::Agent),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(CustomerView {
        id,
        email,
        display_name,
        created_at: format_time(created_at),
        created_via: via.parse().unwrap_or(Channel::Agent),
        projects,
    }))
}

/// Parses a decisions cursor.
pub fn parse_cursor(cursor: &str) -> Option<i64> {
    cursor.parse().ok().filter(|n: &i64| *n > 0)
}

/// Parses RFC 3339 query times, for the HTTP layer's validation.
pub fn parse_query_time(s: &str) -> Option<Micros> {
    parse_time(s)
}

impl Store {
    /// Counts and series over the last `hours` (SPEC §5 stats).
    pub async fn stats(&self, window: String, hours: i64) -> Result<Stats, StoreError> {
        self.read(move |conn| {
            let now = now_micros();
            let hour = 3_600_000_000i64;
            let since = now - hours * hour;
            let bucket = if hours <= 24 { hour } else { 24 * hour };
            let mut stats = Stats {
                window,
                decisions: 0,
                sent: 0,
                bounced: 0,
                deferred: 0,
                failed: 0,
                queued: 0,
                skipped: Default::default(),
                bounce_rate: 0.0,
                complaints: 0,
                complaint_rate: 0.0,
                suppressions_total: 0,
                suppressions_added: 0,
                sender_side_failures: 0,
                series: Vec::new(),
            };
            let mut stmt = conn.prepare_cached(
                "SELECT status, status_reason, count(*) FROM decisions WHERE created_at >= ?1 GROUP BY status, status_reason",
            )?;
            let rows = stmt.query_map(params![since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (status, reason, n) = row?;
                stats.decisions += n;
                match status.as_str() {
                    "sent" => stats.sent += n,
                    "bounced" => stats.bounced += n,
                    "deferred" => stats.deferred += n,
                    "queued" | "sending" => stats.queued += n,
                    "failed" => {
                        stats.failed += n;
                        if matches!(reason.as_deref(), Some("policy_rejected" | "relay_rejected")) {
                            stats.sender_side_failures += n;
                        }
                    }
                    "skipped" => *stats.skipped.entry(reason.unwrap_or_else(|| "unknown".into())).or_default() += n,
                    _ => {}
                }
            }
            if stats.sent + stats.bounced > 0 {
                stats.bounce_rate = stats.bounced as f64 / (stats.sent + stats.bounced) as f64;
            }
            stats.suppressions_total = conn.query_row("SELECT count(*) FROM suppressions", params![], |r| r.get(0))?;
            let (added, complaints): (i64, i64) = conn.query_row(
                "SELECT count(*), coalesce(CAST(sum(CASE WHEN reason = 'complaint' THEN 1 ELSE 0 END) AS BIGINT), 0) FROM suppression_events WHERE added = TRUE AND at >= ?1",
                params![since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            stats.suppressions_added = added;
            stats.complaints = complaints;
            if stats.sent > 0 {
                stats.complaint_rate = complaints as f64 / stats.sent as f64;
            }
            let mut points: std::collections::BTreeMap<i64, StatsPoint> = std::collections::BTreeMap::new();
            let first = since / bucket * bucket;
            let mut t = first;
            while t <= now {
                points.insert(t, StatsPoint { t: format_time(t), sent: 0, skipped: 0, bounced: 0, suppressions_added: 0 });
                t += bucket;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT created_at / ?2 * ?2 AS b, CAST(sum(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS BIGINT), CAST(sum(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS BIGINT), CAST(sum(CASE WHEN status = 'bounced' THEN 1 ELSE 0 END) AS BIGINT)
                 FROM decisions WHERE created_at >= ?1 GROUP BY b",
            )?;
            for row in stmt.query_map(params![since, bucket], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))? {
                let (b, sent, skipped, bounced) = row?;
                if let Some(p) = points.get_mut(&b) {
                    p.sent = sent;
                    p.skipped = skipped;
                    p.bounced = bounced;
                }
            }
            let mut stmt = conn.prepare_cached(
                "SELECT at / ?2 * ?2 AS b, count(*) FROM suppression_events WHERE added = TRUE AND at >= ?1 GROUP BY b",
            )?;
            for row in stmt.query_map(params![since, bucket], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
                let (b, n) = row?;
                if let Some(p) = points.get_mut(&b) {
                    p.suppressions_added = n;
                }
            }
            stats.series = points.into_values().collect();
            Ok(stats)
        })
        .await
    }
}
