//! **Why no invite?** — the support agent's landing page: type an address, read the
//! verdict in one sentence, see the customer and their projects, the suppression with
//! the exact SMTP reply, the timeline of decisions and attempts, and fix it with one
//! click after the page said whether the fix will work (the `preview` of the why API).

use super::error::PageError;
use super::form::Posted;
use super::overview::reason_label;
use super::session::{Flash, User};
use super::{Ctx, render, short_time, why_link};
use crate::http::AppState;
use crate::model::{EmailAddress, FixAction, ProjectKey, ReasonCode, Role, Verdict};
use crate::store::ResendOutcome;
use crate::why::WhyAnswer;
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;

/// "would send" or "would still be skipped: …", for one previewed decision.
#[derive(Clone, Debug)]
pub struct PreviewText {
    pub send: bool,
    pub text: String,
}

fn preview_text(lead: &str, reasons: &[ReasonCode]) -> PreviewText {
    if reasons.is_empty() {
        PreviewText {
            send: true,
            text: format!("{lead}: send the email."),
        }
    } else {
        let names: Vec<String> = reasons
            .iter()
            .map(|r| reason_label(r.as_str()).to_lowercase())
            .collect();
        PreviewText {
            send: false,
            text: format!("{lead} still be skipped: {}.", names.join(", ")),
        }
    }
}

/// A project the customer belongs to, with what a resend would do now.
pub struct MemberView {
    pub key: String,
    pub name: String,
    pub added: String,
    pub via: &'static str,
    pub resend: Option<PreviewText>,
}

/// The customer card.
pub struct CustomerCard {
    pub email: String,
    pub display_name: String,
    pub since: String,
    pub via: &'static str,
    pub projects: Vec<MemberView>,
}

/// The suppression card: the exact SMTP reply.
pub struct SuppressionCard {
    pub reason: &'static str,
    pub phrase: &'static str,
    pub smtp_code: String,
    pub enhanced_code: String,
    pub response: String,
    pub remote_host: String,
    pub stage: String,
    pub at: String,
    pub decision_id: String,
    pub note: String,
    /// When it ends by itself (a full mailbox); empty: never.
    pub expires: String,
}

/// One fix with its button.
pub struct FixView {
    /// Its preview says it will work: the page's primary button.
    pub primary: bool,
    /// Unsuppressing a complaint or an opt-out: ask for the customer's renewed consent.
    pub requires_consent: bool,
    pub action: String,
    pub description: String,
    pub preview: Option<PreviewText>,
    /// Project key (resend), `KEY` of the setting, or "".
    pub project: String,
    /// The setting to turn on.
    pub setting: String,
    /// Who may press it.
    pub allowed: bool,
    pub needs: &'static str,
}

/// One attempt in the timeline.
pub struct AttemptView {
    pub at: String,
    pub stage: String,
    pub outcome: String,
    pub server: String,
    pub reply: String,
    /// The TLS version (`TLSv1.3`), or `none` for plain SMTP; empty for file delivery.
    pub tls: String,
}

impl AttemptView {
    /// An attempt as the pages show it.
    pub fn of(a: &crate::store::AttemptRecord) -> AttemptView {
        AttemptView {
            at: short_time(&a.at),
            stage: a.stage.map(|s| s.to_string()).unwrap_or_default(),
            outcome: a.outcome.to_string(),
            server: a.server.clone().unwrap_or_default(),
            tls: match (&a.tls, &a.server) {
                (Some(v), _) => v.clone(),
                (None, Some(s)) if !s.starts_with("file:") => "none".to_owned(),
                (None, _) => String::new(),
            },
            reply: crate::why::smtp_line(
                a.smtp_code,
                a.enhanced_code.as_deref(),
                a.reply.as_deref(),
            ),
        }
    }
}

/// One decision in the timeline.
pub struct DecisionView {
    pub id: String,
    pub at: String,
    pub project: String,
    pub channel: &'static str,
    pub kind: &'static str,
    pub status: &'static str,
    pub status_reason: String,
    pub reasons: Vec<String>,
    pub last_reply: String,
    pub attempts: Vec<AttemptView>,
}

#[derive(Template)]
#[template(path = "why.html")]
struct WhyPage {
    ctx: Ctx,
    query: String,
    project: String,
    projects: Vec<(String, String)>,
    answer: Option<Answer>,
}

/// The answer, as the page shows it.
pub struct Answer {
    pub email: String,
    pub verdict_code: String,
    pub summary: String,
    pub back: String,
    pub customer: Option<CustomerCard>,
    pub suppression: Option<SuppressionCard>,
    pub outgoing_mail: bool,
    pub fixes: Vec<FixView>,
    pub agent_previews: Vec<(String, String, PreviewText)>,
    pub timeline: Vec<DecisionView>,
}

fn build(answer: WhyAnswer, ctx: &Ctx) -> Answer {
    let email = answer.email.clone();
    let previews: HashMap<&str, &crate::why::Preview> = answer
        .preview
        .iter()
        .map(|p| (p.project.as_str(), p))
        .collect();
    let member_resend = |key: &str| previews.get(key).and_then(|p| p.resend.as_ref());
    // The project a fix acts on when it names none: the resend target, else the first membership.
    let main_project = answer
        .fixes
        .iter()
        .find(|f| f.action == FixAction::Resend)
        .map(|f| f.target.clone())
        .or_else(|| {
            answer
                .customer
                .as_ref()
                .and_then(|c| c.projects.first().map(|m| m.key.clone()))
        });
    let customer = answer.customer.as_ref().map(|c| CustomerCard {
        email: c.email.clone(),
        display_name: c.display_name.clone().unwrap_or_default(),
        since: short_time(&c.created_at),
        via: c.created_via.phrase(),
        projects: c
            .projects
            .iter()
            .map(|m| MemberView {
                key: m.key.clone(),
                name: previews
                    .get(m.key.as_str())
                    .map(|p| p.project_name.clone())
                    .unwrap_or_default(),
                added: short_time(&m.added_at),
                via: m.added_via.phrase(),
                resend: member_resend(&m.key)
                    .map(|d| preview_text("A resend now would", &d.reasons)),
            })
            .collect(),
    });
    let suppression = answer.suppression.as_ref().map(|s| SuppressionCard {
        reason: s.reason.as_str(),
        phrase: crate::messages::suppression_phrase(s.reason),
        smtp_code: s.smtp_code.map(|c| c.to_string()).unwrap_or_default(),
        enhanced_code: s.enhanced_code.clone().unwrap_or_default(),
        response: s.response.clone().unwrap_or_default(),
        remote_host: s.remote_host.clone().unwrap_or_default(),
        stage: s.stage.clone().unwrap_or_default(),
        at: short_time(&s.suppressed_at),
        decision_id: s.decision_id.clone().unwrap_or_default(),
        note: s.note.clone().unwrap_or_default(),
        expires: s.expires_at.as_deref().map(short_time).unwrap_or_default(),
    });
    let resend_works = answer
        .fixes
        .iter()
        .any(|f| f.action == FixAction::Resend && f.will_work());
    let fixes = answer
        .fixes
        .iter()
        .map(|f| {
            let (project, setting) = match (f.action, &f.setting) {
                (FixAction::EnableProjectSetting, Some((key, setting))) => {
                    (key.clone(), setting.to_string())
                }
                (FixAction::Resend, _) => (f.target.clone(), String::new()),
                _ => (main_project.clone().unwrap_or_default(), String::new()),
            };
            let needs = match f.action {
                FixAction::Resend => "support",
                FixAction::Unsuppress
                | FixAction::EnableProjectSetting
                | FixAction::EnableOutgoingMail
                | FixAction::FixAddress => "admin",
            };
            // The preview is the why answer's own rules run with this fix applied.
            let preview = f.preview.as_ref().map(|d| {
                if f.action == FixAction::Resend {
                    preview_text("A resend now would", &d.reasons)
                } else if resend_works {
                    PreviewText {
                        send: false,
                        text: "Not needed for this customer: a resend works without it. It changes only what later decisions get.".into(),
                    }
                } else {
                    preview_text("After this, a resend would", &d.reasons)
                }
            });
            let allowed = match needs {
                "admin" => ctx.can_admin(),
                _ => ctx.can_support(),
            };
            FixView {
                primary: f.will_work() && (f.action == FixAction::Resend || !resend_works),
                requires_consent: f.requires_consent,
                action: f.action.to_string(),
                description: f.description.clone(),
                preview,
                project,
                setting,
                allowed,
                needs,
            }
        })
        .collect();
    let agent_previews = answer
        .preview
        .iter()
        .filter(|p| !p.member)
        .map(|p| {
            (
                p.project.clone(),
                format!("{} ({})", p.project_name, p.project),
                preview_text(
                    "Adding this address as a customer now would",
                    &p.agent_add.reasons,
                ),
            )
        })
        .collect();
    let timeline = answer
        .decisions
        .iter()
        .map(|d| DecisionView {
            id: d.id.clone(),
            at: short_time(&d.created_at),
            project: d.project.clone(),
            channel: d.channel.phrase(),
            kind: d.email_kind.as_str(),
            status: d.status.as_str(),
            status_reason: d.status_reason.map(|r| r.to_string()).unwrap_or_default(),
            reasons: d.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            last_reply: d.last_reply.clone().unwrap_or_default(),
            attempts: d.attempts.iter().flatten().map(AttemptView::of).collect(),
        })
        .collect();
    Answer {
        back: why_link(&email),
        email,
        verdict_code: answer.verdict.code.clone(),
        summary: answer.verdict.summary.clone(),
        customer,
        suppression,
        outgoing_mail: answer.site.outgoing_mail,
        fixes,
        agent_previews,
        timeline,
    }
}

/// Shows the page for `q` (`email`, `project`) with `status`.
pub async fn show(
    state: &AppState,
    ctx: Ctx,
    q: &HashMap<String, String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let input = q
        .get("email")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let project_input = q
        .get("project")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let projects: Vec<(String, String)> = state
        .store
        .projects()
        .await?
        .into_iter()
        .map(|p| (p.key.to_string(), p.name))
        .collect();
    let project = ProjectKey::parse(&project_input)
        .ok()
        .filter(|k| projects.iter().any(|(p, _)| p == k.as_str()));
    let answer = if input.is_empty() {
        None
    } else {
        let answer = state
            .why(crate::model::truncate(&input, 1000), project.clone())
            .await?;
        Some(build(answer, &ctx))
    };
    let page = WhyPage {
        query: input,
        project: project.map(|p| p.to_string()).unwrap_or_default(),
        projects,
        answer,
        ctx,
    };
    render(&page, &page.ctx, status)
}

/// `GET /why?email=&project=`.
pub async fn page(
    State(state): State<AppState>,
    user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let title = match q.get("email").map(|e| e.trim()).filter(|e| !e.is_empty()) {
        Some(e) => format!("Why no invite? {}", crate::model::truncate(e, 80)),
        None => "Why no invite?".to_owned(),
    };
    show(&state, Ctx::new(&user, "why", title), &q, StatusCode::OK).await
}

/// `POST /why/resend` (support): records a resend and says what it came to.
pub async fn resend(State(state): State<AppState>, posted: Posted) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Support)?;
    let input = form.get("email").trim();
    let back = why_link(input);
    let Ok(address) = EmailAddress::parse(input) else {
        return Ok(user.redirect(
            &back,
            Flash::error(format!(
                "\"{}\" is not a valid address, so there is nothing to resend.",
                crate::model::truncate(input, 80)
            )),
        ));
    };
    let Ok(project) = ProjectKey::parse(form.get("project").trim()) else {
        return Ok(user.redirect(
            &back,
            Flash::error("Choose the project to resend the invitation for."),
        ));
    };
    match state.resend(project.clone(), address.clone(), None).await {
        Ok(ResendOutcome::NotMember) | Err(crate::store::StoreError::NotFound(_)) => Ok(user.redirect(
            &back,
            Flash::error(format!("{address} is not a customer of {project}, so there is nothing to resend; add them on the project's page first.")),
        )),
        Ok(ResendOutcome::Recorded(outcome)) => {
            tracing::info!(user = ?user.name, project = %project, decision = %outcome.decision_id, "resend from the dashboard");
            let flash = if outcome.decision == Verdict::Send { Flash::ok(outcome.message) } else { Flash::warn(format!("Resend blocked: {}", outcome.message)) };
            Ok(user.redirect(&back, flash))
        }
        Err(e) => Err(e.into()),
    }
}
