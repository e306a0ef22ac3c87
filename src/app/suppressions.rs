//! The suppression list by hand (SPEC §4, §15): adding one, removing one (with its
//! note), importing a CSV, and removing many at once (an incident, or a filter). Each
//! is audited by the store; these operations add what every front door needs after it:
//! counting new suppressions into the metrics.
//!
//! The checks of what a person gives these operations live here too, so the API and
//! the dashboard refuse the same input with the same words: a note, an import file, a
//! bulk removal's selection.

use super::{App, AppResult};
use crate::model::{EmailAddress, SuppressionReason};
use crate::store::{
    BulkOutcome, BulkRemoveFilter, BulkSelection, NewSuppression, StoreError, SuppressionRecord,
    parse_query_time,
};
use serde::Deserialize;

impl App {
    /// Suppresses `email` by hand (reason `manual`); `Conflict` if it already is.
    pub async fn suppress_by_hand(
        &self,
        email: EmailAddress,
        note: Option<String>,
        by: String,
    ) -> AppResult<SuppressionRecord> {
        let record = self
            .store
            .suppress(
                NewSuppression::plain(email, SuppressionReason::Manual, note),
                by,
            )
            .await?;
        self.metrics.suppressed(SuppressionReason::Manual, 1);
        Ok(record)
    }

    /// Removes the suppression of `email` (`NotFound` when there is none), audited with
    /// `note`.
    pub async fn unsuppress(
        &self,
        email: EmailAddress,
        note: String,
        by: String,
    ) -> AppResult<SuppressionRecord> {
        self.store.unsuppress(email, note, by).await
    }

    /// Imports `rows` all or none; answers (added, already suppressed).
    pub async fn import_suppressions(
        &self,
        rows: Vec<NewSuppression>,
        by: String,
    ) -> AppResult<(i64, i64)> {
        let (added, already) = self.store.import_suppressions(rows, by).await?;
        self.metrics
            .suppressed(SuppressionReason::Import, u64::try_from(added).unwrap_or(0));
        Ok((added, already))
    }

    /// Removes exactly `selection` (an incident's ids, or a filter that never takes
    /// complaints or opt-outs unless it names them) in one audited step; with
    /// `dry_run`, only counts what it would remove.
    pub async fn bulk_remove(
        &self,
        selection: BulkSelection,
        note: String,
        by: String,
        dry_run: bool,
    ) -> AppResult<BulkOutcome> {
        self.store.bulk_remove(selection, note, by, dry_run).await
    }
}

/// A note from a person: at most 1,000 characters, no control characters but newlines.
pub fn check_note(note: Option<&str>, required: bool) -> AppResult<Option<String>> {
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        None if required => Err(StoreError::invalid("note", "a note is required: say why")),
        None => Ok(None),
        Some(n) if n.chars().count() > 1000 => {
            Err(StoreError::invalid("note", "at most 1,000 characters"))
        }
        Some(n) if n.chars().any(|c| c.is_control() && c != '\n' && c != '\r') => Err(
            StoreError::invalid("note", "must not contain control characters"),
        ),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// Why an import file was refused, all of it (SPEC §9).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not UTF-8 text.
    #[error("the CSV is not UTF-8")]
    NotUtf8,
    /// A line is wrong; `line` counts every line of the file from 1.
    #[error("line {line}: {message}")]
    Line {
        /// The line's number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Parses an import file; the first bad line rejects the whole file (SPEC §9).
pub fn parse_import(bytes: &[u8]) -> Result<Vec<NewSuppression>, ImportError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ImportError::NotUtf8)?;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Line numbers count every line of the file from 1, blank ones and the header too
    // (SPEC §9), so each line is read on its own: no field of this format spans lines.
    for (i, raw_line) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw_line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if raw_line.trim().is_empty() {
            continue;
        }
        let at = |message: String| ImportError::Line { line, message };
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(raw_line.as_bytes())
            .records()
            .next()
            .transpose()
            .map_err(|e| at(format!("not valid CSV: {e}")))?
            .unwrap_or_default();
        let cells: Vec<&str> = record.iter().map(str::trim).collect();
        if line == 1
            && cells
                .first()
                .is_some_and(|c| c.eq_ignore_ascii_case("email"))
        {
            continue;
        }
        if cells.len() > 3 {
            return Err(at("at most three columns: email,reason,note".into()));
        }
        let first = cells.first().copied().unwrap_or("");
        let email = EmailAddress::parse(first).map_err(|e| {
            at(format!(
                "`{}` is not a valid address: {e}",
                crate::model::truncate(first, 80)
            ))
        })?;
        let reason = match cells.get(1).copied().unwrap_or("") {
            "" => SuppressionReason::Import,
            // A full mailbox's suppression ends by itself; only a bounce sets it.
            r => r
                .parse()
                .ok()
                .filter(|r| *r != SuppressionReason::MailboxFull)
                .ok_or_else(|| at(format!("unknown reason `{}`; use hard_bounce, bounce_report, complaint, manual or import", crate::model::truncate(r, 40))))?,
        };
        let note = check_note(cells.get(2).copied(), false).map_err(|e| at(e.to_string()))?;
        if seen.insert(email.clone()) {
            rows.push(NewSuppression::plain(email, reason, note));
        }
    }
    Ok(rows)
}

/// Body of bulk-remove: an incident's `ids`, or filters; a note; maybe a dry run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRemove {
    /// Exactly these suppressions (their addresses, as an incident lists them).
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    pub reason: Option<SuppressionReason>,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub domain: Option<String>,
    pub remote_host: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub note: String,
    /// Count and sample what would be removed; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Most `ids` one call takes.
pub const MAX_IDS: usize = 10_000;

/// Checks a bulk-remove body: `ids` alone, or at least one filter.
pub fn bulk_selection(mut body: BulkRemove) -> AppResult<BulkSelection> {
    let Some(ids) = body.ids.take() else {
        return Ok(BulkSelection::Filter(bulk_filter(body)?));
    };
    let has_filter = body.reason.is_some()
        || body.smtp_code.is_some()
        || [
            &body.enhanced_code,
            &body.domain,
            &body.remote_host,
            &body.since,
            &body.until,
        ]
        .iter()
        .any(|f| f.as_deref().is_some_and(|s| !s.is_empty()));
    if has_filter {
        return Err(StoreError::invalid(
            "ids",
            "give either ids or filters, not both",
        ));
    }
    if ids.is_empty() {
        return Err(StoreError::invalid("ids", "name at least one suppression"));
    }
    if ids.len() > MAX_IDS {
        return Err(StoreError::invalid("ids", "at most 10,000 in one call"));
    }
    let ids = ids
        .iter()
        .map(|id| {
            EmailAddress::parse(id)
                .map(|a| a.as_str().to_owned())
                .map_err(|e| {
                    StoreError::invalid(
                        "ids",
                        format!(
                            "`{}` is not a suppressed address: {e}",
                            crate::model::truncate(id, 80)
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BulkSelection::Ids(ids))
}

/// Checks bulk-remove filters; at least one is needed.
fn bulk_filter(body: BulkRemove) -> AppResult<BulkRemoveFilter> {
    let time = |name: &str, v: Option<String>| {
        v.filter(|s| !s.is_empty())
            .map(|s| {
                parse_query_time(&s)
                    .ok_or_else(|| StoreError::invalid(name, "must be an RFC 3339 time"))
            })
            .transpose()
    };
    let filter = BulkRemoveFilter {
        reason: body.reason,
        smtp_code: body.smtp_code,
        enhanced_code: body.enhanced_code.filter(|s| !s.is_empty()),
        domain: body
            .domain
            .filter(|s| !s.is_empty())
            .map(|d| d.to_ascii_lowercase()),
        remote_host: body.remote_host.filter(|s| !s.is_empty()),
        since: time("since", body.since)?,
        until: time("until", body.until)?,
    };
    let any = filter.reason.is_some()
        || filter.smtp_code.is_some()
        || filter.enhanced_code.is_some()
        || filter.domain.is_some()
        || filter.remote_host.is_some()
        || filter.since.is_some()
        || filter.until.is_some();
    if !any {
        return Err(StoreError::invalid(
            "filter",
            "name at least one filter (reason, smtp_code, enhanced_code, domain, remote_host, since, until)",
        ));
    }
    Ok(filter)
}
