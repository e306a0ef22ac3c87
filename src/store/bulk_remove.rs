//! Bulk removal from the suppression list (SPEC §15): by the exact suppressions of an
//! incident (`ids`, which are the suppressed addresses), or by filters that never
//! reach a `complaint` or `manual` suppression unless `reason` names it; either one
//! can be a dry run that counts and samples what it would remove and changes nothing.

use super::audit::audit;
use super::db::{Db, OptionalExtension, params};
use super::filter::Filter;
use super::suppressions::{BulkRemoveFilter, log_event};
use super::time::now_micros;
use super::{Store, StoreError};

/// How many addresses a dry run shows.
pub const SAMPLE: usize = 10;

/// Which suppressions a bulk removal takes.
#[derive(Clone, Debug)]
pub enum BulkSelection {
    /// Exactly these suppressions (an incident's `ids`).
    Ids(Vec<String>),
    /// Every match of all the filters.
    Filter(BulkRemoveFilter),
}

/// What a bulk removal did, or would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkOutcome {
    /// The addresses removed (or that a dry run would remove), by address.
    pub addresses: Vec<String>,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// The suppressions a selection takes right now: `(email, reason)`, by address.
fn matches(conn: &Db, selection: &BulkSelection) -> Result<Vec<(String, String)>, StoreError> {
    match selection {
        BulkSelection::Ids(ids) => {
            let mut stmt =
                conn.prepare_cached("SELECT email, reason FROM suppressions WHERE email = ?1")?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(row) = stmt
                    .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                {
                    found.push(row);
                }
            }
            found.sort();
            found.dedup();
            Ok(found)
        }
        BulkSelection::Filter(filter) => {
            let w = where_of(filter)?;
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT email, reason FROM suppressions {} ORDER BY email",
                    w.sql()
                ))?
                .query_map(&w.params(), |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        }
    }
}

/// The WHERE clause of a filter; complaints and opt-outs stay unless `reason` names them.
fn where_of(filter: &BulkRemoveFilter) -> Result<Filter, StoreError> {
    let mut w = Filter::default();
    if let Some(r) = filter.reason {
        w.push("reason = $", Box::new(r.as_str()));
    }
    if let Some(c) = filter.smtp_code {
        w.push("smtp_code = $", Box::new(c));
    }
    if let Some(e) = &filter.enhanced_code {
        w.push("enhanced_code = $", Box::new(e.clone()));
    }
    if let Some(d) = &filter.domain {
        w.push("domain = $", Box::new(d.clone()));
    }
    if let Some(h) = &filter.remote_host {
        w.push("remote_host = $", Box::new(h.clone()));
    }
    if let Some(s) = filter.since {
        w.push("suppressed_at >= $", Box::new(s));
    }
    if let Some(u) = filter.until {
        w.push("suppressed_at < $", Box::new(u));
    }
    if w.is_empty() {
        return Err(StoreError::invalid("filter", "name at least one filter"));
    }
    if filter.reason.is_none() {
        w.push("reason <> $", Box::new("complaint"));
        w.push("reason <> $", Box::new("manual"));
    }
    Ok(w)
}

impl Store {
    /// Unsuppresses the selection in one transaction, audited as one action listing
    /// the addresses; with `dry_run`, only counts what it would remove.
    pub async fn bulk_remove(
        &self,
        selection: BulkSelection,
        note: String,
        who: String,
        dry_run: bool,
    ) -> Result<BulkOutcome, StoreError> {
        if dry_run {
            return self
                .read(move |conn| {
                    Ok(BulkOutcome {
                        addresses: matches(conn, &selection)?
                            .into_iter()
                            .map(|(e, _)| e)
                            .collect(),
                        dry_run: true,
                    })
                })
                .await;
        }
        self.write(move |conn| {
            let found = matches(conn, &selection)?;
            let mut delete = conn.prepare_cached("DELETE FROM suppressions WHERE email = ?1")?;
            let now = now_micros();
            for (email, reason) in &found {
                delete.execute(params![email])?;
                log_event(conn, email, false, reason, now)?;
            }
            let addresses: Vec<String> = found.into_iter().map(|(e, _)| e).collect();
            audit(
                conn,
                &who,
                "suppression.bulk_remove",
                None,
                Some(&note),
                Some(&serde_json::json!({
                    "removed": addresses.len(), "addresses": addresses,
                })),
            )?;
            Ok(BulkOutcome {
                addresses,
                dry_run: false,
            })
        })
        .await
    }
}
