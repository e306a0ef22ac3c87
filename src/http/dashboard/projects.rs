//! Projects: the settings toggles with their plain-language meaning (from the knowledge
//! base the spec cites), the other settings, and adding customers by pasting a list,
//! with a "send invitation" choice and each address's result.

use super::error::PageError;
use super::form::{Fields, Posted};
use super::session::{Flash, User, safe_path};
use super::{Ctx, Dash, FormState, render, reshow};
use crate::app::{CREATE_ROLE, MAX_AGENT_ADDRESSES};
use crate::http::AppState;
use crate::model::{
    Channel, CopyAs, CopyTo, EmailFormat, ParsedMailbox, Project, ProjectKey, ProjectPatch, Role,
    TEMPLATE_SETS,
};
use crate::store::{IngestRequest, Outcome, Recipient, StoreError};
use askama::Template;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// A yes/no setting with what it means, in the knowledge base's words.
pub struct Toggle {
    pub field: &'static str,
    pub title: &'static str,
    pub on: bool,
    pub meaning: &'static str,
    pub when_off: &'static str,
}

fn toggles(p: &Project) -> Vec<Toggle> {
    let s = &p.settings;
    vec![
        Toggle {
            field: "invite_notification",
            title: "\"Customer invited\" notification",
            on: s.invite_notification,
            meaning: "The customer notification sent when an agent adds (invites) a customer to this project: the \"Welcome to …\" email with a link to the portal.",
            when_off: "Customers added by an agent get no invitation (reason invite_notification_disabled). Resend still works.",
        },
        Toggle {
            field: "verification_emails",
            title: "Account verification emails",
            on: s.verification_emails,
            meaning: "The opposite of \"Do not send account verification emails\": welcome/invitation and verify-your-address emails for customers created by an agent, by an email request, or by being CC'd on one.",
            when_off: "Those customers are created but get no invitation or verification email (reason verification_emails_disabled). Resend still works.",
        },
        Toggle {
            field: "public_signup",
            title: "Public signup (anyone can raise requests)",
            on: s.public_signup,
            meaning: "Anyone can sign up on the portal, and an email request from an unknown address creates a customer account for the sender.",
            when_off: "Email requests and signups from unregistered addresses are not processed and no account is created (reason public_signup_disabled).",
        },
        Toggle {
            field: "share_with_anyone",
            title: "Customers can share requests with anyone",
            on: s.share_with_anyone,
            meaning: "Addresses CC'd on an email request become customers too (only together with public signup) and are asked to verify their address.",
            when_off: "CC'd addresses that are not customers get no account (reason cc_sharing_disabled).",
        },
        Toggle {
            field: "notify_auto_created",
            title: "Notify auto-created customer",
            on: s.notify_auto_created,
            meaning: "Send a registration email, with a link to set a password, to customers created by an automation rule or through the REST API. The knowledge base recommends having it on.",
            when_off: "Customers created by automation or the REST API are told nothing (reasons automation_created, api_created).",
        },
    ]
}

/// One address's result after adding customers.
pub struct ResultRow {
    pub input: String,
    pub email: String,
    pub customer: &'static str,
    pub decision: &'static str,
    pub reasons: Vec<String>,
    pub message: String,
}

impl ResultRow {
    fn of(o: &Outcome) -> ResultRow {
        ResultRow {
            input: o.input.clone(),
            email: o.email.clone().unwrap_or_default(),
            customer: match o.customer {
                crate::model::CustomerOutcome::Created => "created",
                crate::model::CustomerOutcome::Existing => "existing",
                crate::model::CustomerOutcome::NotCreated => "not created",
            },
            decision: o.decision.as_str(),
            reasons: o.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            message: o.message.clone(),
        }
    }
}

/// A project in the list: key, name, and each toggle's title and state.
type ProjectRow = (String, String, Vec<(&'static str, bool)>);

#[derive(Template)]
#[template(path = "projects.html")]
struct ListPage {
    ctx: Ctx,
    projects: Vec<ProjectRow>,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    ctx: Ctx,
    key: String,
    name: String,
    toggles: Vec<Toggle>,
    allow_patterns: String,
    deny_patterns: String,
    email_format: &'static str,
    formats: Vec<&'static str>,
    template_set: String,
    template_sets: Vec<&'static str>,
    copy_to_address: String,
    copy_to_as: &'static str,
    results: Vec<ResultRow>,
    sent: usize,
    skipped: usize,
    /// A new key for the "Add customers" form: a second submit of the same form (a
    /// double click, a reload of the answer) adds nobody twice.
    idem: String,
}

/// `GET /projects`.
pub async fn list(State(state): State<AppState>, user: User) -> Result<Response, PageError> {
    show_list(
        &state,
        Ctx::new(&user, "projects", "Projects"),
        StatusCode::OK,
    )
    .await
}

async fn show_list(state: &AppState, ctx: Ctx, status: StatusCode) -> Result<Response, PageError> {
    let projects = state
        .store
        .projects()
        .await?
        .into_iter()
        .map(|p| {
            let flags = toggles(&p).into_iter().map(|t| (t.title, t.on)).collect();
            (p.key.to_string(), p.name, flags)
        })
        .collect();
    let page = ListPage { ctx, projects };
    render(&page, &page.ctx, status)
}

/// `POST /projects` (admin): creates a project with default settings.
pub async fn create(State(state): State<AppState>, posted: Posted) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let fail = |field: &str, message: String| {
        let ctx = Ctx::new(&user, "projects", "Projects")
            .with_form(FormState::failed("create", &form, field, message));
        show_list(&state, ctx, StatusCode::UNPROCESSABLE_ENTITY)
    };
    let key = match ProjectKey::parse(form.get("key").trim()) {
        Ok(k) => k,
        Err(_) => return fail(
            "key",
            "A key is an upper-case letter, then 1 to 15 of A–Z, 0–9 and _ (for example IT_HELP)."
                .into(),
        )
        .await,
    };
    let name = match crate::model::validate_name(form.get("name")) {
        Ok(n) => n,
        Err(e) => return fail("name", capital(&e.message)).await,
    };
    match state.store.project(key.clone()).await {
        Ok(_) => return fail("key", format!("A project with key {key} already exists.")).await,
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let patch = ProjectPatch {
        name: Some(name.clone()),
        ..ProjectPatch::default()
    };
    state
        .put_project(key.clone(), patch, true, user.audit_name())
        .await?;
    Ok(user.redirect(
        &format!("/projects/{key}"),
        Flash::ok(format!("Created {name} ({key}) with the default settings.")),
    ))
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = c
        .next()
        .map(|f| f.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(c.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

async fn load(state: &AppState, key: &str) -> Result<Project, PageError> {
    let key =
        ProjectKey::parse(key).map_err(|_| PageError::NotFound("project with this key".into()))?;
    match state.store.project(key).await {
        Err(StoreError::NotFound(_)) => Err(PageError::NotFound("project with this key".into())),
        other => Ok(other?),
    }
}

/// Shows project `key` with `status`, and the results of an add if there are any.
pub async fn show(
    state: &AppState,
    ctx: Ctx,
    key: &str,
    results: &[Outcome],
    status: StatusCode,
) -> Result<Response, PageError> {
    let p = load(state, key).await?;
    let s = &p.settings;
    let page = ProjectPage {
        toggles: toggles(&p),
        allow_patterns: s.allow_patterns.join("\n"),
        deny_patterns: s.deny_patterns.join("\n"),
        email_format: s.email_format.as_str(),
        formats: EmailFormat::ALL.iter().map(|f| f.as_str()).collect(),
        template_set: s.template_set.clone(),
        template_sets: TEMPLATE_SETS.to_vec(),
        copy_to_address: s
            .copy_to
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or_default(),
        copy_to_as: s.copy_to.as_ref().map(|c| c.copy_as.as_str()).unwrap_or(""),
        results: results.iter().map(ResultRow::of).collect(),
        sent: results
            .iter()
            .filter(|o| o.decision == crate::model::Verdict::Send)
            .count(),
        skipped: results
            .iter()
            .filter(|o| o.decision == crate::model::Verdict::Skip)
            .count(),
        idem: crate::store::new_secret(""),
        key: p.key.to_string(),
        name: p.name.clone(),
        ctx,
    };
    render(&page, &page.ctx, status)
}

/// Who a remembered "Add customers" answer belongs to: its user.
fn added_scope(user: &User) -> String {
    format!("dashboard:{}", user.audit_name())
}

/// A form key as the page made it: 1 to 64 letters and digits.
fn form_key(key: &str) -> Option<&str> {
    Some(key)
        .filter(|k| !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `GET /projects/{key}`; `?added=KEY` shows again what the "Add customers" form with
/// that key did (the page it redirects to).
pub async fn page(
    State(state): State<AppState>,
    user: User,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let results = match q.get("added").and_then(|k| form_key(k)) {
        Some(added) => state
            .store
            .remembered_answer::<Vec<Outcome>>(added_scope(&user), added.to_owned())
            .await?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let title = format!("Project {}", crate::model::truncate(&key, 16));
    show(
        &state,
        Ctx::new(&user, "projects", title),
        &key,
        &results,
        StatusCode::OK,
    )
    .await
}

fn patch_for(setting: &str, on: bool) -> Option<ProjectPatch> {
    setting
        .parse::<crate::model::ProjectSetting>()
        .ok()
        .map(|s| s.patch(on))
}

/// `POST /projects/{key}/toggle` (admin): turns one yes/no setting on or off.
pub async fn toggle(
    State(state): State<AppState>,
    Path(key): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let project = load(&state, &key).await?;
    let back = safe_path(form.get("back"), &format!("/projects/{}", project.key));
    let on = form.get("value") == "on";
    let setting = form.get("setting");
    let (Some(patch), Some(toggle)) = (
        patch_for(setting, on),
        toggles(&project).into_iter().find(|t| t.field == setting),
    ) else {
        return Err(PageError::BadRequest("There is no such setting.".into()));
    };
    // From the why page, a setting of the whole project changes: say so, and ask.
    if back.starts_with("/why") && !super::confirmed(&form) {
        let mut page = super::ConfirmPage::of(
            super::Ctx::new(&user, "why", "Confirm: change a project setting"),
            &form,
            &back,
        );
        page.heading = format!(
            "Turn {} {} for all of {} ({})?",
            toggle.title,
            if on { "on" } else { "off" },
            project.name,
            project.key
        );
        page.impact = vec![
            toggle.meaning.to_owned(),
            format!(
                "It changes what every new decision of {} gets, not only this customer's.",
                project.key
            ),
            "It sends nothing by itself: use Resend afterwards for the customer you are helping."
                .into(),
        ];
        page.button = format!("Yes, turn it {}", if on { "on" } else { "off" });
        return page.respond();
    }
    let updated = state
        .put_project(project.key.clone(), patch, false, user.audit_name())
        .await?;
    let state_word = if on { "on" } else { "off" };
    let mut text = format!(
        "{} is now {state_word} in {} ({}).",
        toggle.title, updated.name, updated.key
    );
    text.push_str(if on {
        " It applies to new decisions from now on; use Resend for customers skipped while it was off."
    } else {
        " It applies to new decisions from now on."
    });
    Ok(user.redirect(&back, Flash::ok(text)))
}

/// The form field a store error's field belongs to (`allow_patterns[1]` → `allow_patterns`).
fn form_field(field: &str) -> &'static str {
    match field.split(['[', '.']).next().unwrap_or("") {
        "name" => "name",
        "allow_patterns" => "allow_patterns",
        "deny_patterns" => "deny_patterns",
        "email_format" => "email_format",
        "template_set" => "template_set",
        "copy_to" => "copy_to_address",
        _ => "name",
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn settings_patch(form: &Fields) -> Result<ProjectPatch, (&'static str, String)> {
    let email_format = form
        .get("email_format")
        .parse::<EmailFormat>()
        .map_err(|_| ("email_format", "Choose multipart, html or text.".to_owned()))?;
    let copy_to = match (form.opt("copy_to_address"), form.get("copy_to_as")) {
        (None, _) | (_, "" | "none") => None,
        (Some(address), copy_as) => Some(CopyTo {
            address: address.to_owned(),
            copy_as: copy_as
                .parse::<CopyAs>()
                .map_err(|_| ("copy_to_as", "Choose To, Cc or Bcc.".to_owned()))?,
        }),
    };
    Ok(ProjectPatch {
        name: Some(form.get("name").to_owned()),
        allow_patterns: Some(lines(form.get("allow_patterns"))),
        deny_patterns: Some(lines(form.get("deny_patterns"))),
        email_format: Some(email_format),
        template_set: Some(form.get("template_set").trim().to_owned()),
        copy_to: Some(copy_to),
        ..ProjectPatch::default()
    })
}

/// Every field of the settings form checked on its own, so one submit shows every
/// error (SPEC §15); a copy address without a way to send it, or a way without an
/// address, would be ignored and is refused.
fn settings_errors(form: &Fields) -> Vec<(String, String)> {
    fn check(
        errors: &mut Vec<(String, String)>,
        field: &str,
        result: Result<(), crate::model::FieldError>,
    ) {
        if let Err(e) = result {
            let message = match e
                .field
                .split_once('[')
                .and_then(|(_, i)| i.trim_end_matches(']').parse::<usize>().ok())
            {
                Some(i) => format!(
                    "{}, line {}: {}.",
                    match field {
                        "allow_patterns" => "Allow patterns",
                        _ => "Deny patterns",
                    },
                    i + 1,
                    e.message.trim_end_matches('.')
                ),
                None => capital(&e.message),
            };
            errors.push((field.to_owned(), message));
        }
    }
    let mut errors = Vec::new();
    check(
        &mut errors,
        "name",
        crate::model::validate_name(form.get("name")).map(|_| ()),
    );
    for field in ["allow_patterns", "deny_patterns"] {
        let mut settings = crate::model::ProjectSettings::default();
        let patterns = lines(form.get(field));
        if field == "allow_patterns" {
            settings.allow_patterns = patterns;
        } else {
            settings.deny_patterns = patterns;
        }
        check(&mut errors, field, settings.validate().map(|_| ()));
    }
    if form.get("email_format").parse::<EmailFormat>().is_err() {
        errors.push((
            "email_format".into(),
            "Choose multipart, html or text.".into(),
        ));
    }
    match (form.opt("copy_to_address"), form.get("copy_to_as")) {
        (Some(address), "" | "none") => {
            let shown = crate::model::truncate(address, 80);
            errors.push((
                "copy_to_as".into(),
                format!("Choose To, Cc or Bcc for {shown}, or empty the address: with \"none\" it would not be used."),
            ));
        }
        (None, copy_as) if !matches!(copy_as, "" | "none") => errors.push((
            "copy_to_address".into(),
            "Give the address to send the copy to, or choose \"none\".".into(),
        )),
        (Some(address), _) => check(
            &mut errors,
            "copy_to_address",
            crate::model::EmailAddress::parse(address)
                .map(|_| ())
                .map_err(|e| {
                    crate::model::FieldError::new("copy_to", format!("not a valid address: {e}"))
                }),
        ),
        _ => {}
    }
    errors
}

/// `POST /projects/{key}` (admin): the name, patterns, format, template set and copy.
pub async fn settings(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    Path(key): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let project = load(&state, &key).await?;
    let back = format!("/projects/{}", project.key);
    let errors = settings_errors(&form);
    if !errors.is_empty() {
        let mut failed = FormState::failed("settings", &form, "", "");
        failed.errors = errors;
        return reshow(&state, &dash, &user, &back, failed).await;
    }
    let patch = match settings_patch(&form) {
        Ok(p) => p,
        Err((field, message)) => {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                FormState::failed("settings", &form, field, message),
            )
            .await;
        }
    };
    match state
        .put_project(project.key.clone(), patch, false, user.audit_name())
        .await
    {
        Ok(p) => Ok(user.redirect(
            &back,
            Flash::ok(format!("Saved the settings of {} ({}).", p.name, p.key)),
        )),
        Err(StoreError::Invalid { field, message }) => {
            let which = form_field(&field);
            // Name the line of a bad pattern: `allow_patterns[1]` is line 2 of the box.
            let line = field
                .split_once('[')
                .and_then(|(_, i)| i.trim_end_matches(']').parse::<usize>().ok());
            let message = match line {
                Some(i) => format!("Line {}: {}.", i + 1, message.trim_end_matches('.')),
                None => capital(&message),
            };
            reshow(
                &state,
                &dash,
                &user,
                &back,
                FormState::failed("settings", &form, which, message),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// Splits a pasted list on line breaks, commas and semicolons, except inside quotes
/// and angle brackets (`"Smith, Bob" <bob@example.com>` stays one entry).
pub fn split_addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angle) = (false, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            _ => {}
        }
        let separator = c == '\n' || c == '\r' || ((c == ',' || c == ';') && !quoted && !angle);
        if separator {
            if !current.trim().is_empty() {
                out.push(current.trim().to_owned());
            }
            current.clear();
            if c == '\n' || c == '\r' {
                quoted = false;
                angle = false;
            }
        } else {
            current.push(c);
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// `POST /projects/{key}/customers` (admin, as the API's creation endpoints): adds customers as an agent would, with
/// or without an invitation, and shows each address's result.
pub async fn add_customers(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    Path(key): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(CREATE_ROLE)?;
    let project = load(&state, &key).await?;
    let back = format!("/projects/{}", project.key);
    let inputs = split_addresses(form.get("emails"));
    if inputs.is_empty() {
        return reshow(
            &state,
            &dash,
            &user,
            &back,
            FormState::failed("customers", &form, "emails", "Paste at least one address."),
        )
        .await;
    }
    if inputs.len() > MAX_AGENT_ADDRESSES {
        return reshow(
            &state,
            &dash,
            &user,
            &back,
            FormState::failed(
                "customers",
                &form,
                "emails",
                format!(
                    "At most {MAX_AGENT_ADDRESSES} addresses at once (you pasted {}).",
                    inputs.len()
                ),
            ),
        )
        .await;
    }
    let invite = form.checked("invite");
    // Reasons that hold for every address (the switch, the project, the choice): when
    // a brand-new customer would get no email, none of the list will. Ask first.
    if !super::confirmed(&form)
        && let Some(address) = inputs
            .iter()
            .find_map(|i| crate::model::EmailAddress::parse(i).ok())
    {
        let site = state.store.site().await?;
        let settings = project.settings.rule_settings();
        let d = crate::rules::decide(&crate::rules::Facts {
            channel: Channel::Agent,
            address: &address,
            outgoing_mail: site.outgoing_mail,
            settings: &settings,
            customer_exists: false,
            invite,
            suppressed: false,
        });
        if !d.reasons.is_empty() {
            let n = inputs.len();
            let mut page = super::ConfirmPage::of(
                Ctx::new(
                    &user,
                    "projects",
                    format!("Confirm: add to {}", project.key),
                ),
                &form,
                &back,
            );
            page.heading = format!(
                "Add {n} {} to {} without any email?",
                if n == 1 { "customer" } else { "customers" },
                project.name
            );
            page.impact = d
                .reasons
                .iter()
                .map(|r| {
                    let phrase = crate::messages::reason_phrase(*r);
                    let cause = phrase.split_once("; ").map(|(c, _)| c).unwrap_or(phrase);
                    format!("No email will be sent: {cause}.")
                })
                .collect();
            page.impact.push(format!(
                "0 of the {n} will get an email; they can be sent one later with Resend."
            ));
            page.button = format!("Yes, add {n} without an email");
            return page.respond();
        }
    }
    // The form's key: the same form posted twice (a double click, a resubmit) gets the
    // first answer and adds nobody again.
    let form_key = form_key(form.get("idem"))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::store::new_secret(""));
    let idempotency = {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for part in [
            "dashboard: add customers",
            project.key.as_str(),
            if invite { "invite" } else { "no invite" },
            form.get("emails"),
        ] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        crate::store::IdempotencyKey {
            scope: added_scope(&user),
            key: form_key.clone(),
            fingerprint: hex::encode(digest.finalize()),
        }
    };
    let recipients = inputs
        .into_iter()
        .map(|input| Recipient {
            mailbox: ParsedMailbox::parse(&input),
            input,
            channel: Channel::Agent,
        })
        .collect();
    let results = match state
        .ingest(
            IngestRequest {
                project: project.key.clone(),
                recipients,
                invite,
            },
            Some(idempotency),
        )
        .await
    {
        Ok(results) => results,
        // The key came with another list: the page was changed and posted again.
        Err(StoreError::Invalid { field, message })
            if crate::store::idempotency::is_reuse(&field, &message) =>
        {
            return reshow(
                &state,
                &dash,
                &user,
                &back,
                FormState::failed(
                    "customers",
                    &form,
                    "emails",
                    "This form was already used for another list. Nothing was added: submit it again.",
                ),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user = ?user.name, project = %project.key, n = results.len(), invite, "customers added from the dashboard");
    let sent = results
        .iter()
        .filter(|o| o.decision == crate::model::Verdict::Send)
        .count();
    let text = format!(
        "Added {} to {}: {sent} will get an email, {} will not. Each address's result is below.",
        match results.len() {
            1 => "1 address".to_owned(),
            n => format!("{n} addresses"),
        },
        project.name,
        results.len() - sent,
    );
    // Post/redirect/get: the answer page shows the remembered results, so a reload
    // repeats nothing.
    Ok(user.redirect(&format!("{back}?added={form_key}"), Flash::ok(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_lists_split_like_a_mail_client() {
        assert_eq!(
            split_addresses(
                "a@x.example, b@x.example;c@x.example\n\"Smith, Bob\" <bob@x.example>\r\n\n  d@x.example  "
            ),
            vec![
                "a@x.example",
                "b@x.example",
                "c@x.example",
                "\"Smith, Bob\" <bob@x.example>",
                "d@x.example"
            ]
        );
        assert!(split_addresses(" \n ,, ").is_empty());
    }

    #[test]
    fn pattern_errors_point_at_their_box() {
        assert_eq!(form_field("allow_patterns[1]"), "allow_patterns");
        assert_eq!(form_field("copy_to.address"), "copy_to_address");
    }
}
