//! The overview: sent, skipped by reason and bounced over time, the bounce rate against
//! its 5 % warning and 10 % critical lines, complaints, suppression growth, the queue,
//! and incidents (sender-side failures; suppressions sharing one cause, undone in one
//! step).
//!
//! The figures come from one grouped scan of the window (`Store::overview_facts`).
//! When that scan is slow (a large database), its result is kept for a minute and
//! refreshed in the background, so the page stays fast and says how old it is.

use super::error::PageError;
use super::session::User;
use super::svg::{self, Layer, Threshold};
use super::{Ctx, Dash, percent, render, short_time, thousands};
use crate::http::AppState;
use crate::store::{Incident, OverviewFacts};
use askama::Template;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A computation slower than this is served from the cache while it is refreshed.
const SLOW: Duration = Duration::from_millis(40);
/// A cached result older than this is refreshed in the background.
const REFRESH_AFTER: Duration = Duration::from_secs(10);
/// A cached result older than this is not shown.
const MAX_AGE: Duration = Duration::from_secs(60);

/// The overview's figures and incidents for one window.
#[derive(Clone)]
pub struct Figures {
    pub facts: Arc<OverviewFacts>,
    pub incidents: Arc<Vec<Incident>>,
}

struct Entry {
    at: Instant,
    took: Duration,
    figures: Figures,
    refreshing: bool,
}

/// Recent overview computations by window (hours).
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<i64, Entry>>,
}

async fn compute(state: &AppState, hours: i64) -> Result<(Figures, Duration), PageError> {
    let started = Instant::now();
    let facts = state.store.overview_facts(hours).await?;
    let incidents = state.store.incidents(facts.since).await?;
    Ok((
        Figures {
            facts: Arc::new(facts),
            incidents: Arc::new(incidents),
        },
        started.elapsed(),
    ))
}

impl Cache {
    /// The figures for `hours`: fresh when they are cheap, else possibly up to a minute
    /// old (then with their age).
    pub async fn get(
        &self,
        state: &AppState,
        hours: i64,
        dash: &Arc<Dash>,
    ) -> Result<(Figures, Option<Duration>), PageError> {
        let cached = self.entries.lock().ok().and_then(|mut entries| {
            let entry = entries.get_mut(&hours)?;
            let age = entry.at.elapsed();
            if entry.took < SLOW || age > MAX_AGE {
                return None;
            }
            let refresh = age > REFRESH_AFTER && !entry.refreshing;
            if refresh {
                entry.refreshing = true;
            }
            Some((entry.figures.clone(), age, refresh))
        });
        if let Some((figures, age, refresh)) = cached {
            if refresh {
                let (state, dash) = (state.clone(), dash.clone());
                tokio::spawn(async move {
                    let result = compute(&state, hours).await.ok();
                    dash.overview.store(hours, result);
                });
            }
            return Ok((figures, Some(age)));
        }
        let (figures, took) = compute(state, hours).await?;
        self.store(hours, Some((figures.clone(), took)));
        Ok((figures, None))
    }

    fn store(&self, hours: i64, result: Option<(Figures, Duration)>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        match result {
            Some((figures, took)) => {
                entries.insert(
                    hours,
                    Entry {
                        at: Instant::now(),
                        took,
                        figures,
                        refreshing: false,
                    },
                );
            }
            None => {
                if let Some(entry) = entries.get_mut(&hours) {
                    entry.refreshing = false;
                }
            }
        }
    }
}

/// A figure at the top of the page.
pub struct Figure {
    pub label: &'static str,
    pub value: String,
    /// "", "warn" or "bad".
    pub level: &'static str,
    pub note: String,
}

/// A sender-side failure group, for the page.
pub struct SenderSideView {
    pub what: &'static str,
    pub reply: String,
    pub count: String,
    pub first: String,
    pub last: String,
}

/// A bounce incident with its suppressions, which its undo form removes exactly.
pub struct IncidentView {
    pub form: String,
    pub cause: String,
    pub count: i64,
    pub first: String,
    pub last: String,
    pub sample: String,
    /// Its suppressions (addresses), one a line: the `ids` of bulk-remove.
    pub ids: String,
}

impl IncidentView {
    /// The incident as shown, with the `ids` that select exactly it in bulk-remove.
    pub fn new(index: usize, incident: &Incident) -> IncidentView {
        IncidentView {
            form: format!("incident-{index}"),
            cause: incident.cause.clone(),
            count: incident.count,
            first: short_time(&incident.first_at),
            last: short_time(&incident.last_at),
            sample: incident.sample.join(", "),
            ids: incident.ids.join("\n"),
        }
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    ctx: Ctx,
    window: String,
    windows: Vec<(&'static str, &'static str, bool)>,
    figures: Vec<Figure>,
    volume_chart: String,
    reasons_chart: String,
    reason_totals: Vec<(String, String, i64, u32)>,
    rate_chart: String,
    suppression_chart: String,
    sender_side: Vec<SenderSideView>,
    incidents: Vec<IncidentView>,
    stale: Option<String>,
}

/// A short name for a reason code or status reason.
pub fn reason_label(code: &str) -> String {
    match code {
        "outgoing_mail_disabled" => "Outgoing mail off",
        "public_signup_disabled" => "Public signup off",
        "cc_sharing_disabled" => "CC sharing off",
        "blocked_by_rule" => "Blocked by pattern",
        "existing_customer" => "Existing customer",
        "agent_opted_out" => "Agent chose no invitation",
        "automation_created" => "Created by automation",
        "api_created" => "Created by REST API",
        "invite_notification_disabled" => "\"Customer invited\" off",
        "verification_emails_disabled" => "Verification emails off",
        "suppressed" => "Suppressed",
        "invalid_address" => "Invalid address",
        other => return other.replace('_', " "),
    }
    .to_owned()
}

/// `GET /`.
pub async fn page(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    show(
        &state,
        &dash,
        Ctx::new(&user, "overview", "Overview"),
        &q,
        StatusCode::OK,
    )
    .await
}

/// Shows the overview for `q` (`window`) with `status`.
pub async fn show(
    state: &AppState,
    dash: &Arc<Dash>,
    ctx: Ctx,
    q: &HashMap<String, String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let (window, hours) = match q.get("window").map(String::as_str) {
        Some("7d") => ("7d", 24 * 7),
        Some("30d") => ("30d", 24 * 30),
        _ => ("24h", 24),
    };
    let (figures, age) = dash.overview.get(state, hours, dash).await?;
    let facts = &figures.facts;

    // Buckets from the start of the window to now.
    let first = facts.since / facts.bucket * facts.bucket;
    let now = crate::store::now_micros();
    let mut buckets = Vec::new();
    let mut t = first;
    while t <= now {
        buckets.push(t);
        t += facts.bucket;
    }
    let index: HashMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let labels: Vec<String> = buckets
        .iter()
        .map(|b| {
            let s = crate::store::format_time(*b);
            if hours <= 24 {
                s[11..16].to_owned()
            } else {
                s[5..10].to_owned()
            }
        })
        .collect();
    let n = buckets.len();
    let (mut sent, mut skipped, mut bounced, mut failed, mut waiting) =
        (vec![0; n], vec![0; n], vec![0; n], vec![0; n], vec![0; n]);
    let mut by_reason: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for (bucket, status, reason, count) in &facts.counts {
        let Some(&i) = index.get(bucket) else {
            continue;
        };
        *totals.entry(status.as_str()).or_default() += count;
        match status.as_str() {
            "sent" => sent[i] += count,
            "bounced" => bounced[i] += count,
            "failed" => failed[i] += count,
            "skipped" => {
                skipped[i] += count;
                let key = reason.clone().unwrap_or_else(|| "unknown".into());
                by_reason.entry(key).or_insert_with(|| vec![0; n])[i] += count;
            }
            _ => waiting[i] += count,
        }
    }
    let total = |s: &str| totals.get(s).copied().unwrap_or(0);
    let (sent_n, bounced_n, skipped_n, failed_n) = (
        total("sent"),
        total("bounced"),
        total("skipped"),
        total("failed"),
    );
    let decisions_n: i64 = totals.values().sum();
    let bounce_rate = if sent_n + bounced_n > 0 {
        bounced_n as f64 / (sent_n + bounced_n) as f64
    } else {
        0.0
    };
    let complaint_rate = if sent_n > 0 {
        facts.complaints as f64 / sent_n as f64
    } else {
        0.0
    };
    let sender_side_n: i64 = facts.sender_side.iter().map(|g| g.count).sum();
    let added_n: i64 = facts.suppressions_added.iter().map(|(_, n)| n).sum();
    let level = |rate: f64, warn: f64, bad: f64| {
        if rate >= bad {
            "bad"
        } else if rate >= warn {
            "warn"
        } else {
            ""
        }
    };
    // Bounces kept without being understood (SPEC §11): never silently dropped.
    let (unclassified_attributed, unclassified_alone) =
        state.store.unclassified_bounces(facts.since).await?;
    let unclassified_n = unclassified_attributed + unclassified_alone;
    let mut figures_view = vec![
        Figure {
            label: "Decisions",
            value: thousands(decisions_n),
            level: "",
            note: format!("in the last {window}"),
        },
        Figure {
            label: "Sent",
            value: thousands(sent_n),
            level: "",
            note: String::new(),
        },
        Figure {
            label: "Skipped",
            value: thousands(skipped_n),
            level: "",
            note: "see reasons below".into(),
        },
        Figure {
            label: "Bounced",
            value: thousands(bounced_n),
            level: "",
            note: String::new(),
        },
        Figure {
            label: "Bounce rate",
            value: percent(bounce_rate),
            level: level(bounce_rate, 0.05, 0.10),
            note: match level(bounce_rate, 0.05, 0.10) {
                "bad" => "above 10 %: critical".into(),
                "warn" => "above 5 %: warning".into(),
                _ => "warning 5 %, critical 10 %".into(),
            },
        },
        Figure {
            label: "Complaint rate",
            value: percent(complaint_rate),
            level: level(complaint_rate, 0.001, 0.003),
            note: format!(
                "{} {}",
                thousands(facts.complaints),
                if facts.complaints == 1 {
                    "complaint"
                } else {
                    "complaints"
                }
            ),
        },
        Figure {
            label: "Suppressed",
            value: thousands(facts.suppressions_total),
            level: "",
            note: format!("+{} in the window", thousands(added_n)),
        },
        Figure {
            label: "Queue",
            value: thousands(facts.queue_depth),
            level: "",
            note: "waiting for delivery now".into(),
        },
        Figure {
            label: "Failed",
            value: thousands(failed_n),
            level: if sender_side_n > 0 { "bad" } else { "" },
            note: if sender_side_n > 0 {
                format!("{} sender-side", thousands(sender_side_n))
            } else {
                String::new()
            },
        },
    ];
    figures_view.push(Figure {
        label: "Bounces not understood",
        value: thousands(unclassified_n),
        level: if unclassified_n > 0 { "warn" } else { "" },
        note: if unclassified_n > 0 {
            format!(
                "kept, nothing changed: {} on their decision's page, {} with no decision",
                thousands(unclassified_attributed),
                thousands(unclassified_alone)
            )
        } else {
            "every bounce in the window was understood".into()
        },
    });

    let rates: Vec<Option<f64>> = (0..n)
        .map(|i| {
            let (s, b) = (sent[i], bounced[i]);
            (s + b > 0).then(|| b as f64 / (s + b) as f64)
        })
        .collect();
    let volume_chart = svg::stacked_bars(
        "volume",
        "Decisions over time by status",
        &format!(
            "{sent_n} sent, {skipped_n} skipped, {bounced_n} bounced, {failed_n} failed in the last {window}."
        ),
        &labels,
        &[
            Layer {
                label: "sent".into(),
                class: "c-sent".into(),
                values: sent,
            },
            Layer {
                label: "queued or deferred".into(),
                class: "c-queued".into(),
                values: waiting,
            },
            Layer {
                label: "skipped".into(),
                class: "c-skipped".into(),
                values: skipped,
            },
            Layer {
                label: "bounced".into(),
                class: "c-bounced".into(),
                values: bounced.clone(),
            },
            Layer {
                label: "failed".into(),
                class: "c-failed".into(),
                values: failed,
            },
        ],
    );
    let mut reasons: Vec<(String, Vec<i64>)> = by_reason.into_iter().collect();
    reasons.sort_by_key(|(_, v)| -v.iter().sum::<i64>());
    let reason_layers: Vec<Layer> = reasons
        .iter()
        .enumerate()
        .map(|(i, (code, values))| Layer {
            label: reason_label(code),
            class: format!("r{}", i.min(11)),
            values: values.clone(),
        })
        .collect();
    let reasons_chart = svg::stacked_bars(
        "reasons",
        "Skipped decisions over time by primary reason",
        &format!("{skipped_n} decisions skipped in the last {window}, by their primary reason."),
        &labels,
        &reason_layers,
    );
    let largest = reasons
        .iter()
        .map(|(_, v)| v.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let reason_totals = reasons
        .iter()
        .enumerate()
        .map(|(i, (code, v))| {
            let sum: i64 = v.iter().sum();
            (
                reason_label(code),
                format!("r{}", i.min(11)),
                sum,
                (sum * 100 / largest) as u32,
            )
        })
        .collect();
    let rate_chart = svg::rate_line(
        "bounce",
        "Bounce rate",
        &format!(
            "Bounced divided by sent plus bounced, per bucket; {} over the window.",
            percent(bounce_rate)
        ),
        &labels,
        &rates,
        &[
            Threshold {
                value: 0.05,
                label: "5 % warning".into(),
                class: "c-warn-line".into(),
            },
            Threshold {
                value: 0.10,
                label: "10 % critical".into(),
                class: "c-crit-line".into(),
            },
        ],
    );
    let mut added = vec![0; n];
    for (b, count) in &facts.suppressions_added {
        if let Some(&i) = index.get(b) {
            added[i] += count;
        }
    }
    let suppression_chart = svg::stacked_bars(
        "suppressions",
        "Suppressions added over time",
        &format!(
            "{added_n} addresses added to the suppression list in the last {window}; {} suppressed in all.",
            facts.suppressions_total
        ),
        &labels,
        &[Layer {
            label: "added to the suppression list".into(),
            class: "c-supp".into(),
            values: added,
        }],
    );
    let sender_side = facts
        .sender_side
        .iter()
        .map(|g| SenderSideView {
            what: if g.status_reason == "relay_rejected" {
                "Our relay refused the mail before any recipient (relay_rejected)"
            } else {
                "Receiving servers refused our mail for policy reasons (policy_rejected)"
            },
            reply: g.reply.clone().unwrap_or_default(),
            count: thousands(g.count),
            first: short_time(&g.first_at),
            last: short_time(&g.last_at),
        })
        .collect();
    let incidents = figures
        .incidents
        .iter()
        .filter(|i| i.count > 1)
        .take(5)
        .enumerate()
        .map(|(i, inc)| IncidentView::new(i, inc))
        .collect();
    let page = OverviewPage {
        ctx,
        window: window.to_owned(),
        windows: [
            ("24h", "Last 24 hours"),
            ("7d", "Last 7 days"),
            ("30d", "Last 30 days"),
        ]
        .into_iter()
        .map(|(v, t)| (v, t, v == window))
        .collect(),
        figures: figures_view,
        volume_chart,
        reasons_chart,
        reason_totals,
        rate_chart,
        suppression_chart,
        sender_side,
        incidents,
        stale: age.map(|a| {
            format!(
                "Figures computed {} s ago (large database; they refresh in the background).",
                a.as_secs()
            )
        }),
    };
    render(&page, &page.ctx, status)
}
