//! "Why did this customer get no invite?": turns the stored facts about one address into
//! a verdict, fixes and a preview (SPEC §5 `why`).
//!
//! Pure: it reads [`WhyFacts`] and calls the same [`rules::decide`] that records
//! decisions, so the preview of a fix can never disagree with what the fix will do.
//! The API, the dashboard and `mailtrail why` all print this one answer.

use crate::messages::{reason_phrase, verdict_summary};
use crate::model::{
    Channel, EmailAddress, FixAction, ProjectSetting, ReasonCode, Status, StatusReason,
    SuppressionReason, Verdict,
};
use crate::rules::{self, Facts};
use crate::store::{CustomerView, DecisionRecord, SuppressionRecord, WhyFacts};
use serde::Serialize;

/// The answer of `GET /api/v1/why/{email}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WhyAnswer {
    /// The normalized address (or the raw input, for one that never parsed).
    pub email: String,
    pub customer: Option<CustomerView>,
    pub suppression: Option<SuppressionRecord>,
    pub site: SiteState,
    pub verdict: VerdictView,
    /// Newest first, with attempts.
    pub decisions: Vec<DecisionRecord>,
    pub fixes: Vec<Fix>,
    /// Per project: what a resend and a fresh agent add would get right now.
    pub preview: Vec<Preview>,
}

/// The part of the site that matters for one address.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SiteState {
    pub outgoing_mail: bool,
}

/// `{code, summary}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VerdictView {
    /// `sent`, `queued`, `deferred`, `skipped`, `bounced`, `failed`, `suppressed` or `no_record`.
    pub code: String,
    /// One plain sentence naming the primary reason and the fix.
    pub summary: String,
}

/// One thing support can do about it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Fix {
    pub action: FixAction,
    /// What it acts on: a project key, `KEY.setting`, the address, or `site`.
    pub target: String,
    /// For `enable_project_setting`: the project and the setting `target` names.
    #[serde(skip)]
    pub setting: Option<(String, ProjectSetting)>,
    pub description: String,
    /// For `unsuppress` of a spam complaint or an opt-out (`complaint`, `manual`): undo
    /// it only with the customer's renewed consent (SPEC §15).
    pub requires_consent: bool,
    /// What a resend would get once this fix is done (for `resend`: right now), from
    /// the same rules that record decisions; null when there is no project to resend
    /// for.
    pub preview: Option<PreviewDecision>,
}

impl Fix {
    /// The fix, followed by a resend, sends the email.
    pub fn will_work(&self) -> bool {
        self.preview
            .as_ref()
            .is_some_and(|p| p.decision == Verdict::Send)
    }
}

/// What would happen right now, for one project.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub project: String,
    pub project_name: String,
    /// The customer is a member (a resend is possible).
    pub member: bool,
    /// A resend's decision now; null when not a member.
    pub resend: Option<PreviewDecision>,
    /// A fresh agent add's decision now.
    pub agent_add: PreviewDecision,
}

/// A decision that was not recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviewDecision {
    pub decision: Verdict,
    pub reasons: Vec<ReasonCode>,
}

impl WhyAnswer {
    /// `mailtrail why` exits 0 for these verdicts: sent or on its way.
    pub fn is_on_its_way(&self) -> bool {
        matches!(
            self.verdict.code.as_str(),
            "sent" | "queued" | "sending" | "deferred"
        )
    }
}

/// Builds the answer. `address` is `None` when the input never parsed (then `key` is the
/// raw input and only its invalid-address decisions are shown).
pub fn explain(key: &str, address: Option<&EmailAddress>, facts: WhyFacts) -> WhyAnswer {
    let WhyFacts {
        customer,
        suppression,
        site,
        decisions,
        projects,
    } = facts;
    let newest = decisions.first();
    let verdict = verdict(key, newest, suppression.as_ref(), &decisions);

    let preview: Vec<Preview> = match address {
        Some(address) => projects
            .iter()
            .map(|project| {
                let settings = project.settings.rule_settings();
                let member = customer
                    .as_ref()
                    .is_some_and(|c| c.projects.iter().any(|m| m.key == project.key.as_str()));
                let decide = |channel| {
                    let d = rules::decide(&Facts {
                        channel,
                        address,
                        outgoing_mail: site.outgoing_mail,
                        settings: &settings,
                        customer_exists: customer.is_some(),
                        invite: true,
                        suppressed: suppression.is_some(),
                    });
                    PreviewDecision {
                        decision: d.verdict(),
                        reasons: d.reasons,
                    }
                };
                Preview {
                    project: project.key.to_string(),
                    project_name: project.name.clone(),
                    member,
                    resend: member.then(|| decide(Channel::Resend)),
                    agent_add: decide(Channel::Agent),
                }
            })
            .collect(),
        None => Vec::new(),
    };

    let mut fixes = Vec::new();
    let mut push = |fix: Fix| {
        if !fixes.contains(&fix) {
            fixes.push(fix);
        }
    };
    if let Some(s) = &suppression {
        let consent = requires_consent(s.reason);
        push(Fix {
            action: FixAction::Unsuppress,
            target: s.email.clone(),
            description: match s.reason {
                SuppressionReason::Complaint => format!(
                    "The customer marked our email to {} as spam. Remove it from the suppression list only when the customer has asked for our email again (renewed consent).",
                    s.email
                ),
                SuppressionReason::Manual => format!(
                    "{} was suppressed by hand: an opt-out, the customer asked us to stop. Remove it from the suppression list only when the customer has asked for our email again (renewed consent).",
                    s.email
                ),
                _ => format!(
                    "Remove {} from the suppression list{} once you know the address is good.",
                    s.email,
                    s.response
                        .as_deref()
                        .map(|r| format!(" (it was suppressed after \"{r}\")"))
                        .unwrap_or_default()
                ),
            },
            requires_consent: consent,
            preview: None,
            setting: None,
        });
    }
    if !site.outgoing_mail {
        push(Fix {
            action: FixAction::EnableOutgoingMail,
            target: "site".into(),
            description: "Turn outgoing mail back on for the site; then resend what it skipped."
                .into(),
            requires_consent: false,
            preview: None,
            setting: None,
        });
    }
    if let Some(d) = newest {
        let project = projects.iter().find(|p| p.key.as_str() == d.project);
        for reason in &d.reasons {
            let lifting = ProjectSetting::lifting(*reason).zip(project);
            if let Some((setting, p)) = lifting
                && !setting.is_on(&p.settings)
            {
                push(Fix {
                    action: FixAction::EnableProjectSetting,
                    target: format!("{}.{setting}", p.key),
                    description: format!("{} in {} ({}).", turn_on(setting), p.name, p.key),
                    requires_consent: false,
                    preview: None,
                    setting: Some((p.key.to_string(), setting)),
                });
            }
            if *reason == ReasonCode::InvalidAddress {
                push(Fix {
                    action: FixAction::FixAddress,
                    target: d.input.clone(),
                    description: format!(
                        "\"{}\" is not a valid address: correct it and add the customer again.",
                        crate::model::truncate(&d.input, 80)
                    ),
                    requires_consent: false,
                    preview: None,
                    setting: None,
                });
            }
        }
    }
    if let Some(c) = &customer {
        let busy = newest.is_some_and(|d| {
            matches!(
                d.status,
                Status::Queued | Status::Sending | Status::Deferred
            )
        });
        let target = newest
            .map(|d| d.project.clone())
            .filter(|k| c.projects.iter().any(|m| &m.key == k))
            .or_else(|| c.projects.first().map(|m| m.key.clone()));
        if let (false, Some(target)) = (busy, target) {
            push(Fix {
                action: FixAction::Resend,
                target: target.clone(),
                description: format!("Resend the invitation to {} for {target}.", c.email),
                requires_consent: false,
                preview: None,
                setting: None,
            });
        }
    }

    // Each fix's preview: one rules run with that fix applied, then a resend for the
    // project a resend would go to (the newest decision's, else the first membership).
    let resend_project = customer.as_ref().and_then(|c| {
        newest
            .map(|d| d.project.clone())
            .filter(|k| c.projects.iter().any(|m| &m.key == k))
            .or_else(|| c.projects.first().map(|m| m.key.clone()))
    });
    if let (Some(address), Some(key)) = (address, resend_project.as_deref())
        && let Some(project) = projects.iter().find(|p| p.key.as_str() == key)
    {
        for fix in &mut fixes {
            let mut settings = project.settings.rule_settings();
            let mut outgoing_mail = site.outgoing_mail;
            let mut suppressed = suppression.is_some();
            match (fix.action, fix.setting.as_ref().map(|(_, s)| *s)) {
                (FixAction::Unsuppress, _) => suppressed = false,
                (FixAction::EnableOutgoingMail, _) => outgoing_mail = true,
                (FixAction::EnableProjectSetting, Some(setting)) => {
                    setting.set(&mut settings, true)
                }
                (FixAction::Resend, _) => {}
                (FixAction::EnableProjectSetting, None) | (FixAction::FixAddress, _) => continue,
            }
            let d = rules::decide(&Facts {
                channel: Channel::Resend,
                address,
                outgoing_mail,
                settings: &settings,
                customer_exists: true,
                invite: true,
                suppressed,
            });
            fix.preview = Some(PreviewDecision {
                decision: d.verdict(),
                reasons: d.reasons,
            });
        }
    }
    let verdict = agree(verdict, key, newest, suppression.as_ref(), &fixes);

    WhyAnswer {
        email: address
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| key.to_owned()),
        customer,
        suppression,
        site: SiteState {
            outgoing_mail: site.outgoing_mail,
        },
        verdict,
        decisions,
        fixes,
        preview,
    }
}

/// A complaint or an opt-out is undone only with the customer's renewed consent.
pub fn requires_consent(reason: SuppressionReason) -> bool {
    matches!(
        reason,
        SuppressionReason::Complaint | SuppressionReason::Manual
    )
}

/// What to do, in a summary's words, for one fix.
fn instruction(fix: &Fix) -> String {
    match fix.action {
        FixAction::Resend => format!("use Resend for {}", fix.target),
        FixAction::Unsuppress if fix.requires_consent => {
            "only if the customer asks for our email again (renewed consent), unsuppress the address".into()
        }
        FixAction::Unsuppress => "check the address with the customer, then unsuppress it".into(),
        FixAction::EnableOutgoingMail => "turn outgoing mail back on".into(),
        FixAction::EnableProjectSetting => {
            let text = fix.description.trim_end_matches('.');
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        }
        FixAction::FixAddress => fix.description.trim_end_matches('.').to_owned(),
    }
}

/// The fix's words for turning `setting` on.
fn turn_on(setting: ProjectSetting) -> &'static str {
    match setting {
        ProjectSetting::InviteNotification => "Turn on the \"Customer invited\" notification",
        ProjectSetting::VerificationEmails => "Turn account verification emails back on",
        ProjectSetting::PublicSignup => "Allow public signup",
        ProjectSetting::ShareWithAnyone => "Let customers share requests with anyone",
        ProjectSetting::NotifyAutoCreated => "Turn on \"Notify auto-created customer\"",
    }
}

/// The verdict's summary names the fix whose preview says it will work (SPEC §15):
/// the cause, then that fix, or every fix when none is enough alone.
fn agree(
    verdict: VerdictView,
    email: &str,
    newest: Option<&DecisionRecord>,
    suppression: Option<&SuppressionRecord>,
    fixes: &[Fix],
) -> VerdictView {
    let cause = match verdict.code.as_str() {
        "suppressed" => match suppression {
            Some(s) if s.reason == SuppressionReason::Complaint => format!(
                "{email} is suppressed because the customer marked our email as spam, so mailtrail sends it nothing."
            ),
            Some(s) if s.reason == SuppressionReason::Manual => format!(
                "{email} is suppressed by hand (an opt-out: the customer asked us to stop), so mailtrail sends it nothing."
            ),
            Some(s) => format!(
                "{email} is suppressed ({}{}), so mailtrail sends it nothing{}.",
                crate::messages::suppression_phrase(s.reason),
                s.response
                    .as_deref()
                    .map(|r| format!(": \"{r}\""))
                    .unwrap_or_default(),
                until(s)
            ),
            None => return verdict,
        },
        "skipped" => match newest.and_then(|d| d.reasons.first()) {
            Some(reason) => {
                let phrase = reason_phrase(*reason);
                let cause = phrase.split_once("; ").map(|(c, _)| c).unwrap_or(phrase);
                format!("No email was sent to {email}: {cause}.")
            }
            None => return verdict,
        },
        _ => return verdict,
    };
    let known: Vec<&Fix> = fixes.iter().filter(|f| f.preview.is_some()).collect();
    if known.is_empty() {
        return verdict;
    }
    let resend_works = known
        .iter()
        .any(|f| f.action == FixAction::Resend && f.will_work());
    let fix = if resend_works {
        "Resend it now: that will send the email.".to_owned()
    } else if let Some(f) = known.iter().find(|f| f.will_work()) {
        format!("{}, then resend.", capital(&instruction(f)))
    } else {
        let steps: Vec<String> = known
            .iter()
            .filter(|f| f.action != FixAction::Resend)
            .map(|f| instruction(f))
            .collect();
        if steps.is_empty() {
            return verdict;
        }
        format!(
            "No single fix is enough: {}, then resend.",
            steps.join("; and ")
        )
    };
    VerdictView {
        code: verdict.code,
        summary: format!("{cause} {fix}"),
    }
}

fn capital(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn verdict(
    email: &str,
    newest: Option<&DecisionRecord>,
    suppression: Option<&SuppressionRecord>,
    decisions: &[DecisionRecord],
) -> VerdictView {
    // "suppressed when the address is suppressed and nothing was sent since" (SPEC §5).
    let sent_since = |s: &SuppressionRecord| {
        decisions.iter().any(|d| {
            d.sent_at
                .as_deref()
                .is_some_and(|at| at > s.suppressed_at.as_str())
        })
    };
    if let Some(s) = suppression
        && !sent_since(s)
    {
        let summary = match newest {
            Some(d) if d.status == Status::Bounced => verdict_summary(
                email,
                Some(Status::Bounced),
                d.status_reason,
                None,
                Some(s.reason),
                s.response.as_deref(),
            ),
            _ => format!(
                "{email} is suppressed ({}{}), so mailtrail sends it nothing{}.",
                crate::messages::suppression_phrase(s.reason),
                s.response
                    .as_deref()
                    .map(|r| format!(": \"{r}\""))
                    .unwrap_or_default(),
                until(s)
            ),
        };
        return VerdictView {
            code: "suppressed".into(),
            summary,
        };
    }
    match newest {
        None => VerdictView {
            code: "no_record".into(),
            summary: verdict_summary(email, None, None, None, None, None),
        },
        Some(d) => {
            let code = match d.status {
                Status::Sending => "queued",
                other => other.as_str(),
            };
            let primary = d.reasons.first().copied();
            let mut summary = verdict_summary(
                email,
                Some(d.status),
                d.status_reason,
                primary,
                suppression.map(|s| s.reason),
                d.last_reply.as_deref(),
            );
            if d.status == Status::Skipped
                && primary.is_none()
                && let Some(StatusReason::Skipped(reason)) = d.status_reason
            {
                summary = format!("No email was sent to {email}: {}.", reason_phrase(reason));
            }
            VerdictView {
                code: code.to_owned(),
                summary,
            }
        }
    }
}

/// The answer as text for a terminal (`mailtrail why`).
pub fn render_text(a: &WhyAnswer) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", a.email, a.verdict.code.to_uppercase());
    let _ = writeln!(out, "  {}", a.verdict.summary);
    let _ = writeln!(out);
    match &a.customer {
        Some(c) => {
            let _ = writeln!(
                out,
                "customer   {}{} since {} ({})",
                c.email,
                c.display_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                c.created_at,
                c.created_via.phrase()
            );
            for m in &c.projects {
                let _ = writeln!(
                    out,
                    "  project  {} since {} ({})",
                    m.key,
                    m.added_at,
                    m.added_via.phrase()
                );
            }
        }
        None => {
            let _ = writeln!(out, "customer   none");
        }
    }
    match &a.suppression {
        Some(s) => {
            let reply = smtp_line(
                s.smtp_code,
                s.enhanced_code.as_deref(),
                s.response.as_deref(),
            );
            let _ = writeln!(
                out,
                "suppressed {} since {}{}",
                s.reason.as_str(),
                s.suppressed_at,
                if reply.is_empty() {
                    String::new()
                } else {
                    format!(": {reply}")
                }
            );
        }
        None => {
            let _ = writeln!(out, "suppressed no");
        }
    }
    let _ = writeln!(
        out,
        "outgoing   {}",
        if a.site.outgoing_mail {
            "on"
        } else {
            "OFF for the whole site"
        }
    );
    if !a.decisions.is_empty() {
        let _ = writeln!(out, "\ndecisions (newest first)");
        for d in a.decisions.iter().take(10) {
            let reasons = d
                .reasons
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "  {}  {:<8} {:<14} {:<21} {}{}",
                &d.created_at[..19.min(d.created_at.len())],
                d.project,
                d.channel.as_str(),
                d.email_kind.as_str(),
                d.status.as_str(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({reasons})")
                }
            );
            for attempt in d.attempts.iter().flatten() {
                let _ = writeln!(
                    out,
                    "      try {}  {}  {} {}",
                    &attempt.at[..19.min(attempt.at.len())],
                    attempt.outcome,
                    attempt.server.as_deref().unwrap_or("-"),
                    attempt.reply.as_deref().unwrap_or("")
                );
            }
        }
    }
    if !a.preview.is_empty() {
        let _ = writeln!(out, "\nif you act now");
        for p in &a.preview {
            let show = |d: &PreviewDecision| {
                if d.reasons.is_empty() {
                    "would send".to_owned()
                } else {
                    format!(
                        "would skip ({})",
                        d.reasons
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            };
            let resend = p
                .resend
                .as_ref()
                .map(show)
                .unwrap_or_else(|| "not a member".into());
            let _ = writeln!(
                out,
                "  {:<8} resend {resend}; agent add {}",
                p.project,
                show(&p.agent_add)
            );
        }
    }
    if !a.fixes.is_empty() {
        let _ = writeln!(out, "\nfixes");
        for f in &a.fixes {
            let _ = writeln!(out, "  {:<22} {}", f.action, f.description);
        }
    }
    out
}

/// `550 5.1.1 user unknown`, without repeating a code the text already starts with.
pub fn smtp_line(code: Option<i64>, enhanced: Option<&str>, text: Option<&str>) -> String {
    let text = text.unwrap_or("").trim();
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = code
        && !text.starts_with(&c.to_string())
    {
        parts.push(c.to_string());
    }
    if let Some(e) = enhanced
        && !text.contains(e)
    {
        parts.push(e.to_owned());
    }
    if !text.is_empty() {
        parts.push(text.to_owned());
    }
    parts.join(" ")
}

/// ` until {time}` for a suppression that ends by itself (a full mailbox), else nothing.
fn until(s: &SuppressionRecord) -> String {
    s.expires_at
        .as_deref()
        .map(|at| format!(" until {at}, when it is lifted by itself"))
        .unwrap_or_default()
}
