//! The suppression list: search, incidents (one bad day of the relay seen as one
//! event, undone in one step), unsuppress with a required note, add, bulk removal, and
//! CSV import and export. Every change is an admin action, audited by the store.

use super::error::PageError;
use super::form::{Fields, Posted};
use super::overview::IncidentView;
use super::session::{Flash, User, safe_path};
use super::{Ctx, Dash, FormState, query, render, reshow, short_time};
use crate::app::{BulkRemove, bulk_selection, check_note, parse_import};
use crate::http::AppState;
use crate::http::csv::csv_suppressions;
use crate::model::{EmailAddress, Role, SuppressionReason};
use crate::store::{StoreError, SuppressionFilter, SuppressionRecord};
use askama::Template;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows per page.
const PAGE: usize = 50;

/// One suppression in the list.
pub struct Row {
    /// The name of its unsuppress form.
    pub form: String,
    /// A complaint or an opt-out: unsuppressing asks for renewed consent.
    pub consent: bool,
    pub email: String,
    pub reason: &'static str,
    pub reply: String,
    pub remote_host: String,
    pub at: String,
    pub note: String,
    pub decision_id: String,
    /// When it ends by itself (a full mailbox); empty: never.
    pub expires: String,
}

impl Row {
    fn of(index: usize, s: &SuppressionRecord) -> Row {
        Row {
            form: format!("unsuppress-{index}"),
            consent: crate::why::requires_consent(s.reason),
            email: s.email.clone(),
            reason: s.reason.as_str(),
            reply: crate::why::smtp_line(
                s.smtp_code,
                s.enhanced_code.as_deref(),
                s.response.as_deref(),
            ),
            remote_host: s.remote_host.clone().unwrap_or_default(),
            at: short_time(&s.suppressed_at),
            note: s.note.clone().unwrap_or_default(),
            decision_id: s.decision_id.clone().unwrap_or_default(),
            expires: s.expires_at.as_deref().map(short_time).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "suppressions.html")]
struct SuppressionsPage {
    ctx: Ctx,
    q: String,
    back: String,
    rows: Vec<Row>,
    next: Option<String>,
    /// A page of newer rows (paging back up).
    newer: Option<String>,
    first: Option<String>,
    csv: String,
    incidents: Vec<IncidentView>,
    reasons: Vec<&'static str>,
    /// How many match (capped).
    total: String,
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    c.split_once('|')
        .and_then(|(t, e)| Some((t.parse().ok()?, e.to_owned())))
}

/// Shows the page for `q` (`q`, `cursor`) with `status`.
pub async fn show(
    state: &AppState,
    ctx: Ctx,
    q: &HashMap<String, String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let search = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    let after = match cursor {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            PageError::BadRequest("That page link is broken; start from the first page.".into())
        })?),
        None => None,
    };
    let filter = SuppressionFilter {
        q: (!search.is_empty()).then(|| crate::model::truncate(&search, 320).to_owned()),
        limit: PAGE,
        after,
    };
    let total = state
        .store
        .count_suppressions(filter.q.clone(), 10_000)
        .await?;
    let after = match q.get("after").filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            PageError::BadRequest("That page link is broken; start from the first page.".into())
        })?),
        None => None,
    };
    let paged = cursor.is_some() || after.is_some();
    let position = |s: &SuppressionRecord| format!("{}|{}", s.suppressed_at_micros, s.email);
    // `cursor`: older than a row seen; `after`: newer than one (paging back up).
    let (page, newer) = match after {
        Some((at, email)) => {
            let (items, more) = state
                .store
                .suppressions_newer(filter.q.clone(), at, email, PAGE)
                .await?;
            let newer = more.then(|| items.first().map(position)).flatten();
            let older = items.last().map(position);
            (
                crate::store::Page {
                    items,
                    next_cursor: older,
                },
                newer,
            )
        }
        None => {
            let page = state.store.suppressions(filter).await?;
            let newer = cursor.and(page.items.first().map(position));
            (page, newer)
        }
    };
    let week = crate::store::now_micros() - 7 * 24 * 3_600_000_000;
    let incidents = state.store.incidents(week).await?;
    let back = format!(
        "/suppressions{}",
        query(&[
            ("q", &search),
            ("cursor", cursor.map(String::as_str).unwrap_or(""))
        ])
    );
    let page = SuppressionsPage {
        rows: page
            .items
            .iter()
            .enumerate()
            .map(|(i, s)| Row::of(i, s))
            .collect(),
        next: page
            .next_cursor
            .map(|c| format!("/suppressions{}", query(&[("q", &search), ("cursor", &c)]))),
        first: paged.then(|| format!("/suppressions{}", query(&[("q", &search)]))),
        newer: newer.map(|c| format!("/suppressions{}", query(&[("q", &search), ("after", &c)]))),
        csv: format!("/suppressions.csv{}", query(&[("q", &search)])),
        incidents: incidents
            .iter()
            .filter(|i| i.count > 1)
            .take(10)
            .enumerate()
            .map(|(i, inc)| IncidentView::new(i, inc))
            .collect(),
        reasons: SuppressionReason::ALL.iter().map(|r| r.as_str()).collect(),
        total: match (total.count, total.exact) {
            (1, true) => "1 address.".to_owned(),
            (n, true) => format!("{} addresses.", super::thousands(n)),
            (n, false) => format!("More than {} addresses.", super::thousands(n)),
        },
        q: search,
        back,
        ctx,
    };
    render(&page, &page.ctx, status)
}

/// `GET /suppressions?q=&cursor=`.
pub async fn page(
    State(state): State<AppState>,
    user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    show(
        &state,
        Ctx::new(&user, "suppressions", "Suppressions"),
        &q,
        StatusCode::OK,
    )
    .await
}

/// `GET /suppressions.csv?q=`: the whole list (or the matches), streamed.
pub async fn csv(
    State(state): State<AppState>,
    _user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let filter = SuppressionFilter {
        q: q.get("q")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| crate::model::truncate(s, 320).to_owned()),
        limit: 500,
        after: None,
    };
    Ok(csv_suppressions(state, filter))
}

/// Where to come back to after a form, and which form it was.
fn back_of(form: &Fields, default_form: &str) -> (String, String) {
    let back = safe_path(form.get("back"), "/suppressions");
    let name = form
        .opt("form")
        .map(str::to_owned)
        .unwrap_or_else(|| default_form.to_owned());
    (back, name)
}

/// `POST /suppressions/add` (admin): suppresses an address by hand.
pub async fn add(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let (back, name) = back_of(&form, "add");
    let fail =
        |field: &str, message: String| FormState::failed(name.clone(), &form, field, message);
    let email = match EmailAddress::parse(form.get("email")) {
        Ok(e) => e,
        Err(e) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                fail("email", format!("Not a valid address: {e}.")),
            )
            .await;
        }
    };
    let note = match check_note(form.opt("note"), false) {
        Ok(n) => n,
        Err(e) => return reshow(&state, &dash, &user, &back, fail("note", field_message(e))).await,
    };
    match state
        .suppress_by_hand(email.clone(), note, user.audit_name())
        .await
    {
        Ok(_) => Ok(user.redirect(
            &back,
            Flash::ok(format!(
                "{email} is now suppressed: mailtrail will send it nothing."
            )),
        )),
        Err(StoreError::Conflict(_)) => {
            reshow(
                &state,
                &dash,
                &user,
                &back,
                fail("email", format!("{email} is already suppressed.")),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

fn field_message(e: StoreError) -> String {
    match e {
        StoreError::Invalid { message, .. } => {
            let mut m = message;
            if let Some(first) = m.get(..1) {
                m = format!("{}{}", first.to_uppercase(), &m[1..]);
            }
            if m.ends_with('.') { m } else { format!("{m}.") }
        }
        other => other.to_string(),
    }
}

/// `POST /suppressions/remove` (admin): unsuppresses one address; the note is required.
pub async fn remove(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let (back, name) = back_of(&form, "unsuppress");
    let Ok(email) = EmailAddress::parse(form.get("email")) else {
        return Ok(user.redirect(
            &back,
            Flash::error("That is not a valid address, so nothing was unsuppressed."),
        ));
    };
    let mut errors: Vec<(String, String)> = Vec::new();
    // A spam complaint or an opt-out is undone only with the customer's renewed consent.
    if let Some(s) = state.store.suppression(email.clone()).await?
        && crate::why::requires_consent(s.reason)
        && !form.checked("consent")
    {
        let why = match s.reason {
            SuppressionReason::Complaint => "marked our email as spam",
            _ => "asked us to stop",
        };
        errors.push((
            "consent".into(),
            format!("The customer {why}: tick the box to confirm they asked for our email again."),
        ));
    }
    let note = match check_note(form.opt("note"), true) {
        Ok(n) => n.unwrap_or_default(),
        Err(e) => {
            errors.push(("note".into(), field_message(e)));
            String::new()
        }
    };
    if !errors.is_empty() {
        let mut failed = FormState::failed(name, &form, "", "");
        failed.errors = errors;
        return reshow(&state, &dash, &user, &back, failed).await;
    }
    match state
        .unsuppress(email.clone(), note, user.audit_name())
        .await
    {
        Ok(_) => Ok(user.redirect(
            &back,
            Flash::ok(format!(
                "{email} is no longer suppressed. Use Resend to send the invitation again."
            )),
        )),
        Err(StoreError::NotFound(_)) => Ok(user.redirect(
            &back,
            Flash::warn(format!(
                "{email} was not suppressed (perhaps someone else removed it already)."
            )),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "bulk_confirm.html")]
struct BulkConfirmPage {
    ctx: Ctx,
    back: String,
    count: usize,
    sample: Vec<String>,
    note: String,
    /// The form's fields, posted again with `confirm=yes`.
    fields: Vec<(String, String)>,
}

/// `POST /suppressions/bulk-remove` (admin): exactly an incident's suppressions (`ids`,
/// one address a line), or every match of the filters; the note is required. Without
/// `confirm=yes` nothing is removed: a page shows how many would be, and asks.
pub async fn bulk_remove(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let (back, name) = back_of(&form, "bulk");
    let mut errors: Vec<(String, String)> = Vec::new();
    let note = match check_note(form.opt("note"), true) {
        Ok(n) => n.unwrap_or_default(),
        Err(e) => {
            errors.push(("note".into(), field_message(e)));
            String::new()
        }
    };
    let reason = form
        .opt("reason")
        .map(str::parse::<SuppressionReason>)
        .transpose()
        .unwrap_or_else(|_| {
            errors.push(("reason".into(), "Choose one of the listed reasons.".into()));
            None
        });
    let smtp_code = form
        .opt("smtp_code")
        .map(|c| c.parse::<i64>().ok().filter(|c| (200..=599).contains(c)))
        .map(|c| {
            c.ok_or_else(|| {
                errors.push((
                    "smtp_code".into(),
                    "An SMTP code is three digits, like 550.".into(),
                ))
            })
        })
        .and_then(Result::ok);
    let mut time = |name: &'static str, end: bool| match super::outbox::day_or_time(
        name,
        form.get(name).trim(),
        end,
    ) {
        Ok(t) => t.map(crate::store::format_time),
        Err((field, _)) => {
            errors.push((
                field.into(),
                "Write a day like 2026-11-22, or leave it empty.".into(),
            ));
            None
        }
    };
    let (since, until) = (time("since", false), time("until", true));
    let ids: Option<Vec<String>> = form.opt("ids").map(|ids| {
        ids.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let body = BulkRemove {
        ids,
        reason,
        smtp_code,
        enhanced_code: form.opt("enhanced_code").map(str::to_owned),
        domain: form.opt("domain").map(str::to_owned),
        remote_host: form.opt("remote_host").map(str::to_owned),
        since,
        until,
        note: note.clone(),
        dry_run: false,
    };
    let selection = if errors.iter().any(|(f, _)| f != "note") {
        None
    } else {
        match bulk_selection(body) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push((
                    "reason".into(),
                    format!(
                        "{} Pick at least one filter.",
                        field_message(e).trim_end_matches('.')
                    ),
                ));
                None
            }
        }
    };
    let selection = match selection {
        Some(s) if errors.is_empty() => s,
        _ => {
            let mut failed = FormState::failed(name, &form, "", "");
            failed.errors = errors;
            return reshow(&state, &dash, &user, &back, failed).await;
        }
    };
    if form.get("confirm") != "yes" {
        let outcome = state
            .bulk_remove(selection, note.clone(), user.audit_name(), true)
            .await?;
        if outcome.addresses.is_empty() {
            return Ok(user.redirect(
                &back,
                Flash::warn("No suppression matches, so nothing was removed."),
            ));
        }
        let mut fields: Vec<(String, String)> = form
            .text
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "csrf" | "confirm" | "note"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fields.sort();
        let page = BulkConfirmPage {
            ctx: Ctx::new(&user, "suppressions", "Confirm: unsuppress"),
            back,
            count: outcome.addresses.len(),
            sample: outcome
                .addresses
                .into_iter()
                .take(crate::store::BULK_SAMPLE)
                .collect(),
            note,
            fields,
        };
        return render(&page, &page.ctx, StatusCode::OK);
    }
    let outcome = state
        .bulk_remove(selection, note, user.audit_name(), false)
        .await?;
    let removed = outcome.addresses;
    let flash = match removed.as_slice() {
        [] => Flash::warn("No suppression matched any more, so nothing was removed."),
        [one] => Flash::ok(format!("Unsuppressed 1 address: {one}.")),
        _ => Flash::ok(format!(
            "Unsuppressed {} addresses in one step (audited as one action).",
            removed.len()
        )),
    };
    Ok(user.redirect(&back, flash))
}

/// `POST /suppressions/import` (admin): a CSV file (or pasted text) of
/// `email[,reason][,note]`, all rows or none.
pub async fn import(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let (back, name) = back_of(&form, "import");
    let bytes: Vec<u8> = match form.files.get("file").filter(|f| !f.is_empty()) {
        Some(file) => file.clone(),
        None => form.get("csv").as_bytes().to_vec(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return reshow(
            &state,
            &dash,
            &user,
            &back,
            FormState::failed(
                name,
                &form,
                "file",
                "Choose a CSV file, or paste its lines below.",
            ),
        )
        .await;
    }
    let rows = match parse_import(&bytes) {
        Ok(rows) => rows,
        Err(e) => {
            let message = format!("{e}. Nothing was imported.");
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                FormState::failed(name, &form, "file", message),
            )
            .await;
        }
    };
    let (added, already) = state.import_suppressions(rows, user.audit_name()).await?;
    Ok(user.redirect(
        &back,
        Flash::ok(format!(
            "Imported: {added} added, {already} already suppressed."
        )),
    ))
}
