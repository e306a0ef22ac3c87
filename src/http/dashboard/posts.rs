//! Every form posts to the URL of the page it is on (SPEC §15): a hidden `do` field
//! names the action, so a form with errors is shown again under the page's own address
//! (not under an action URL the user never visited), and a reload of it asks to post the
//! same page again. The old action URLs (`/suppressions/add`, `/why/resend`, …) still
//! work: they are the same handlers.
//!
//! Each handler here only picks the action; the actions themselves (in the page's
//! module) check the role, the fields and the confirmation step.

use super::error::PageError;
use super::form::Posted;
use super::session::safe_path;
use super::{Dash, projects, site, suppressions, why};
use crate::http::AppState;
use axum::extract::{Extension, OriginalUri, Path, State};
use axum::response::Response;
use std::sync::Arc;

/// The page's own address (path and query), where the action comes back to unless the
/// form says otherwise.
fn this_page(posted: &mut Posted, uri: &OriginalUri, fallback: &str) {
    let here = uri
        .0
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(fallback);
    let here = safe_path(here, fallback);
    posted.form.text.entry("back".into()).or_insert(here);
}

fn unknown(action: &str) -> PageError {
    PageError::BadRequest(format!(
        "This page has no action \"{}\"; reload it and try again.",
        crate::model::truncate(action, 40)
    ))
}

/// `POST /why?…`: resend, unsuppress, a project's toggle, outgoing mail.
pub async fn why_page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    uri: OriginalUri,
    mut posted: Posted,
) -> Result<Response, PageError> {
    this_page(&mut posted, &uri, "/why");
    match posted.form.get("do").to_owned().as_str() {
        "resend" => why::resend(State(state), posted).await,
        "unsuppress" => suppressions::remove(State(state), Extension(dash), posted).await,
        "toggle" => {
            let key = posted.form.get("project").to_owned();
            projects::toggle(State(state), Path(key), posted).await
        }
        "outgoing-mail" => site::outgoing_mail(State(state), posted).await,
        other => Err(unknown(other)),
    }
}

/// `POST /suppressions?…`: suppress, unsuppress, import, remove many.
pub async fn suppressions_page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    uri: OriginalUri,
    mut posted: Posted,
) -> Result<Response, PageError> {
    this_page(&mut posted, &uri, "/suppressions");
    match posted.form.get("do").to_owned().as_str() {
        "add" => suppressions::add(State(state), Extension(dash), posted).await,
        "unsuppress" => suppressions::remove(State(state), Extension(dash), posted).await,
        "import" => suppressions::import(State(state), Extension(dash), posted).await,
        "bulk-remove" => suppressions::bulk_remove(State(state), Extension(dash), posted).await,
        other => Err(unknown(other)),
    }
}

/// `POST /?…` (the overview): undo an incident.
pub async fn overview_page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    uri: OriginalUri,
    mut posted: Posted,
) -> Result<Response, PageError> {
    this_page(&mut posted, &uri, "/");
    match posted.form.get("do").to_owned().as_str() {
        "bulk-remove" => suppressions::bulk_remove(State(state), Extension(dash), posted).await,
        other => Err(unknown(other)),
    }
}

/// `POST /projects/{key}`: a toggle, adding customers, or (no `do`, as before) the
/// other settings.
pub async fn project_page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    Path(key): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    match posted.form.get("do").to_owned().as_str() {
        "toggle" => projects::toggle(State(state), Path(key), posted).await,
        "customers" => {
            projects::add_customers(State(state), Extension(dash), Path(key), posted).await
        }
        "" | "settings" => {
            projects::settings(State(state), Extension(dash), Path(key), posted).await
        }
        other => Err(unknown(other)),
    }
}

/// `POST /site`: outgoing mail, resending what it skipped, or (no `do`, as before) the
/// sender and links.
pub async fn site_page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    match posted.form.get("do").to_owned().as_str() {
        "outgoing-mail" => site::outgoing_mail(State(state), posted).await,
        "resend-skipped" => site::resend_skipped(State(state), posted).await,
        "" | "settings" => site::settings(State(state), Extension(dash), posted).await,
        other => Err(unknown(other)),
    }
}
