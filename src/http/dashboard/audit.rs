//! The audit log: every admin action (who, what, when, note), newest first, paged.

use super::error::PageError;
use super::session::User;
use super::{Ctx, render, short_time};
use crate::http::AppState;
use crate::store::parse_cursor;
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;

/// Entries per page.
const PAGE: usize = 50;

/// One audit entry as shown.
pub struct Row {
    pub when: String,
    pub who: String,
    pub what: String,
    pub target: String,
    pub note: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    ctx: Ctx,
    rows: Vec<Row>,
    next: Option<String>,
    /// A page of newer entries (paging back up).
    newer: Option<String>,
    first: bool,
    /// How many entries there are (capped).
    total: String,
}

/// `GET /audit?cursor=`.
pub async fn page(
    State(state): State<AppState>,
    user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            PageError::BadRequest("That page link is broken; start from the first page.".into())
        })?),
        None => None,
    };
    let after = match q.get("after").filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            PageError::BadRequest("That page link is broken; start from the first page.".into())
        })?),
        None => None,
    };
    let total = state.store.count_audit(10_000).await?;
    // `cursor`: older than an entry seen; `after`: newer than one (paging back up).
    let (page, newer) = match after {
        Some(after) => {
            let (items, more) = state.store.audit_newer(after, PAGE).await?;
            let newer = more.then(|| items.first().map(|e| e.id)).flatten();
            let older = items.last().map(|e| e.id.to_string());
            (
                crate::store::Page {
                    items,
                    next_cursor: older,
                },
                newer,
            )
        }
        None => {
            let page = state.store.audit_log(PAGE, before).await?;
            let newer = before.and(page.items.first().map(|e| e.id));
            (page, newer)
        }
    };
    let rows = page
        .items
        .into_iter()
        .map(|e| Row {
            when: short_time(&e.when),
            who: e.who,
            what: e.what,
            target: e.target.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
            detail: e
                .detail
                .map(|d| serde_json::to_string_pretty(&d).unwrap_or_default())
                .unwrap_or_default(),
        })
        .collect();
    let page = AuditPage {
        ctx: Ctx::new(&user, "audit", "Audit log"),
        rows,
        next: page.next_cursor.map(|c| format!("/audit?cursor={c}")),
        newer: newer.map(|id| format!("/audit?after={id}")),
        first: before.is_some() || after.is_some(),
        total: match (total.count, total.exact) {
            (1, true) => "1 entry.".to_owned(),
            (n, true) => format!("{} entries.", super::thousands(n)),
            (n, false) => format!("More than {} entries.", super::thousands(n)),
        },
    };
    render(&page, &page.ctx, StatusCode::OK)
}
