//! The site: the outgoing mail switch, the From mailbox and the portal address; after
//! outgoing mail was off, how many customers it left without an email, and a button
//! that resends them (SPEC §5 resend-skipped).

use super::error::PageError;
use super::form::Posted;
use super::session::{Flash, User, safe_path};
use super::{Ctx, Dash, FormState, render, reshow, short_time, thousands};
use crate::http::AppState;
use crate::model::{ReasonCode, Role, SitePatch};
use crate::store::{SKIPPED_COUNT_CAP, StoreError, format_time};
use askama::Template;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "site.html")]
struct SitePage {
    ctx: Ctx,
    outgoing_mail: bool,
    changed_at: String,
    from: String,
    portal_base_url: String,
    /// "off since …" / "was off from … to …", when there was such a period.
    off_period: String,
    skipped: String,
    skipped_n: i64,
    since: String,
    until: String,
    resent_at: String,
}

/// Shows the site page with `status`.
pub async fn show(state: &AppState, ctx: Ctx, status: StatusCode) -> Result<Response, PageError> {
    let site = state.store.site().await?;
    let history = state.store.outgoing_mail_history().await?;
    let off_period = match (history.off_since, history.back_on_at) {
        (Some(off), Some(on)) => format!(
            "Outgoing mail was off from {} to {}.",
            short_time(&format_time(off)),
            short_time(&format_time(on))
        ),
        (Some(off), None) => format!(
            "Outgoing mail has been off since {}.",
            short_time(&format_time(off))
        ),
        _ => String::new(),
    };
    let skipped = if history.skipped_invitations >= SKIPPED_COUNT_CAP {
        format!("at least {}", thousands(history.skipped_invitations))
    } else {
        thousands(history.skipped_invitations)
    };
    let page = SitePage {
        outgoing_mail: site.outgoing_mail,
        changed_at: site
            .outgoing_mail_changed_at
            .as_deref()
            .map(short_time)
            .unwrap_or_default(),
        from: site.from,
        portal_base_url: site.portal_base_url,
        off_period,
        skipped,
        skipped_n: history.skipped_invitations,
        since: history.off_since.map(format_time).unwrap_or_default(),
        // Times travel in milliseconds: one more keeps the last skipped decision inside.
        until: history
            .back_on_at
            .map(|t| format_time(t + 1000))
            .unwrap_or_default(),
        resent_at: history
            .resent_at
            .as_deref()
            .map(short_time)
            .unwrap_or_default(),
        ctx,
    };
    render(&page, &page.ctx, status)
}

/// `GET /site`.
pub async fn page(State(state): State<AppState>, user: User) -> Result<Response, PageError> {
    show(&state, Ctx::new(&user, "site", "Site"), StatusCode::OK).await
}

/// `POST /site/outgoing-mail` (admin): the switch.
pub async fn outgoing_mail(
    State(state): State<AppState>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let on = form.get("value") == "on";
    let back = safe_path(form.get("back"), "/site");
    if !on && !super::confirmed(&form) {
        let queued = state
            .store
            .count_status(crate::model::Status::Queued)
            .await?;
        let mut page = super::ConfirmPage::of(
            super::Ctx::new(&user, "site", "Confirm: outgoing mail off"),
            &form,
            &back,
        );
        page.heading = "Turn outgoing mail off for the whole site?".into();
        page.impact = vec![
            "mailtrail will send no email to anyone: every new email is skipped (reason outgoing_mail_disabled).".into(),
            match queued {
                1 => "1 queued email will wait and not be delivered until outgoing mail is on again.".into(),
                n => format!("{n} queued emails will wait and not be delivered until outgoing mail is on again."),
            },
            "Emails skipped meanwhile are not sent by themselves later: you can resend them from the Site page.".into(),
        ];
        page.button = "Yes, turn outgoing mail off".into();
        page.danger = true;
        return page.respond();
    }
    let patch = SitePatch {
        outgoing_mail: Some(on),
        ..SitePatch::default()
    };
    state.patch_site(patch, user.audit_name()).await?;
    let flash = if on {
        Flash::ok(
            "Outgoing mail is on: mailtrail sends again. What was skipped while it was off is not sent by itself; resend it from the Site page.",
        )
    } else {
        Flash::warn(
            "Outgoing mail is off: every new email is skipped (outgoing_mail_disabled) and nothing queued is delivered until it is turned back on.",
        )
    };
    Ok(user.redirect(&back, flash))
}

/// `POST /site` (admin): the From mailbox and the portal's base URL.
pub async fn settings(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let from = form.get("from").trim().to_owned();
    let portal_base_url = form.get("portal_base_url").trim().to_owned();
    // Each field checked on its own, so one submit lists every error (SPEC §15).
    let errors: Vec<(String, String)> = [
        SitePatch {
            from: Some(from.clone()),
            ..SitePatch::default()
        },
        SitePatch {
            portal_base_url: Some(portal_base_url.clone()),
            ..SitePatch::default()
        },
    ]
    .iter()
    .filter_map(|p| p.validate().err())
    .map(|e| (e.field.clone(), sentence(&e.message)))
    .collect();
    if !errors.is_empty() {
        let mut failed = FormState::failed("site", &form, "", "");
        failed.errors = errors;
        return reshow(&state, &dash, &user, "/site", failed).await;
    }
    let patch = SitePatch {
        outgoing_mail: None,
        from: Some(from),
        portal_base_url: Some(portal_base_url),
    };
    match state.patch_site(patch, user.audit_name()).await {
        Ok(_) => Ok(user.redirect("/site", Flash::ok("Saved the site settings."))),
        Err(StoreError::Invalid { field, message }) => {
            let field = if field == "from" {
                "from"
            } else {
                "portal_base_url"
            };
            reshow(
                &state,
                &dash,
                &user,
                "/site",
                FormState::failed("site", &form, field, sentence(&message)),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `message` as a sentence: a capital first letter and one full stop.
fn sentence(message: &str) -> String {
    match message.get(..1) {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            message[1..].trim_end_matches('.')
        ),
        None => String::new(),
    }
}

/// `POST /site/resend-skipped` (admin): resends, as new `resend` decisions, what was
/// skipped because outgoing mail was off in the period shown.
pub async fn resend_skipped(
    State(state): State<AppState>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let since = crate::store::parse_time(form.get("since"));
    let until = match form.opt("until") {
        Some(u) => crate::store::parse_time(u),
        None => Some(crate::store::now_micros()),
    };
    let (Some(since), Some(until)) = (since, until) else {
        return Ok(user.redirect(
            "/site",
            Flash::error("The period to resend is missing; reload the Site page and try again."),
        ));
    };
    let outcome = state
        .resend_skipped(
            ReasonCode::OutgoingMailDisabled,
            (since, until),
            None,
            user.audit_name(),
            None,
        )
        .await?;
    let blocked: Vec<String> = outcome
        .still_blocked
        .iter()
        .map(|(reason, n)| {
            format!(
                "{n} {}",
                super::overview::reason_label(reason).to_lowercase()
            )
        })
        .collect();
    let text = if blocked.is_empty() {
        format!("Queued {} emails again.", thousands(outcome.queued))
    } else {
        format!(
            "Queued {} emails again; still blocked: {}.",
            thousands(outcome.queued),
            blocked.join(", ")
        )
    };
    let flash = if outcome.queued > 0 || blocked.is_empty() {
        Flash::ok(text)
    } else {
        Flash::warn(text)
    };
    Ok(user.redirect("/site", flash))
}
