//! The suppression list: search, incidents (one bad day of the relay seen as one
//! event, undone in one step), unsuppress with a required note, add, bulk removal, and
//! CSV import and export. Every change is an admin action, audited by the store.

use super::error::PageError;
use super::form::{Fields, Posted};
use super::overview::IncidentView;
use super::session::{Flash, User, safe_path};
use super::{Ctx, Dash, FormState, query, render, reshow, short_time};
use crate::http::AppState;
use crate::http::api::suppressions::{BulkRemove, bulk_filter, check_note, parse_import};
use crate::http::error::ApiError;
use crate::model::{EmailAddress, Role, SuppressionReason};
use crate::store::{NewSuppression, StoreError, SuppressionFilter, SuppressionRecord};
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
    pub email: String,
    pub reason: &'static str,
    pub reply: String,
    pub remote_host: String,
    pub at: String,
    pub note: String,
    pub decision_id: String,
}

impl Row {
    fn of(index: usize, s: &SuppressionRecord) -> Row {
        Row {
            form: format!("unsuppress-{index}"),
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
    first: Option<String>,
    csv: String,
    incidents: Vec<IncidentView>,
    reasons: Vec<&'static str>,
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
    let page = state.store.suppressions(filter).await?;
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
        first: cursor.map(|_| format!("/suppressions{}", query(&[("q", &search)]))),
        csv: format!("/suppressions.csv{}", query(&[("q", &search)])),
        incidents: incidents
            .iter()
            .filter(|i| i.count > 1)
            .take(10)
            .enumerate()
            .map(|(i, inc)| IncidentView::new(i, inc))
            .collect(),
        reasons: SuppressionReason::ALL.iter().map(|r| r.as_str()).collect(),
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
    Ok(crate::http::api::suppressions::csv_suppressions(
        state, filter,
    ))
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
        .store
        .suppress(
            NewSuppression::plain(email.clone(), SuppressionReason::Manual, note),
            user.audit_name(),
        )
        .await
    {
        Ok(_) => {
            state.metrics.suppressed(SuppressionReason::Manual, 1);
            Ok(user.redirect(
                &back,
                Flash::ok(format!(
                    "{email} is now suppressed: mailtrail will send it nothing."
                )),
            ))
        }
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

fn field_message(e: ApiError) -> String {
    match e {
        ApiError::Invalid { message, .. } => {
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
    let note = match check_note(form.opt("note"), true) {
        Ok(n) => n.unwrap_or_default(),
        Err(e) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                FormState::failed(name, &form, "note", field_message(e)),
            )
            .await;
        }
    };
    let Ok(email) = EmailAddress::parse(form.get("email")) else {
        return Ok(user.redirect(
            &back,
            Flash::error("That is not a valid address, so nothing was unsuppressed."),
        ));
    };
    match state
        .store
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

/// `POST /suppressions/bulk-remove` (admin): unsuppresses every match of the filters in
/// one transaction (an incident, or hand-picked filters); the note is required.
pub async fn bulk_remove(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let (back, name) = back_of(&form, "bulk");
    let fail =
        |field: &str, message: String| FormState::failed(name.clone(), &form, field, message);
    let note = match check_note(form.opt("note"), true) {
        Ok(n) => n.unwrap_or_default(),
        Err(e) => return reshow(&state, &dash, &user, &back, fail("note", field_message(e))).await,
    };
    let reason = match form
        .opt("reason")
        .map(str::parse::<SuppressionReason>)
        .transpose()
    {
        Ok(r) => r,
        Err(_) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                fail("reason", "Choose one of the listed reasons.".into()),
            )
            .await;
        }
    };
    let smtp_code = match form.opt("smtp_code").map(str::parse::<i64>).transpose() {
        Ok(c) => c,
        Err(_) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                fail(
                    "smtp_code",
                    "An SMTP code is three digits, like 550.".into(),
                ),
            )
            .await;
        }
    };
    let time = |name: &'static str, end: bool| {
        super::outbox::day_or_time(name, form.get(name).trim(), end)
            .map(|t| t.map(crate::store::format_time))
    };
    let (since, until) = match (time("since", false), time("until", true)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err((field, m)), _) | (_, Err((field, m))) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                fail(
                    field,
                    format!("Must be {}.", m.trim_start_matches("must be ")),
                ),
            )
            .await;
        }
    };
    let body = BulkRemove {
        reason,
        smtp_code,
        enhanced_code: form.opt("enhanced_code").map(str::to_owned),
        domain: form.opt("domain").map(str::to_owned),
        remote_host: form.opt("remote_host").map(str::to_owned),
        since,
        until,
        note: note.clone(),
    };
    let filter = match bulk_filter(body) {
        Ok(f) => f,
        Err(e) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                fail(
                    "reason",
                    format!(
                        "{} Pick at least one filter.",
                        field_message(e).trim_end_matches('.')
                    ),
                ),
            )
            .await;
        }
    };
    let removed = state
        .store
        .bulk_unsuppress(filter, note, user.audit_name())
        .await?;
    let flash = match removed.len() {
        0 => Flash::warn("No suppression matched, so nothing was removed."),
        1 => Flash::ok(format!("Unsuppressed 1 address: {}.", removed[0])),
        n => Flash::ok(format!(
            "Unsuppressed {n} addresses in one step (audited as one action)."
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
            let message = match &e {
                ApiError::Invalid { field, message } => {
                    format!("{field}: {message}. Nothing was imported.")
                }
                other => format!("{other}. Nothing was imported."),
            };
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
    let (added, already) = state
        .store
        .import_suppressions(rows, user.audit_name())
        .await?;
    state
        .metrics
        .suppressed(SuppressionReason::Import, u64::try_from(added).unwrap_or(0));
    Ok(user.redirect(
        &back,
        Flash::ok(format!(
            "Imported: {added} added, {already} already suppressed."
        )),
    ))
}
