//! Dashboard page latency (SPEC §6: "every page answers in under 100 ms with a
//! million decisions stored"): the overview `/` and `/why?email=`, timed like the why
//! API (one client, after a warm-up, alternating between the small and the large
//! history), with a session of the first `admin` user. The login posts no CSRF
//! token: the dashboard lets a client without cookie and token through (see
//! `http::dashboard::auth`).
//!
//! The overview keeps figures that took over 40 ms to compute for up to a minute, so
//! after the first view most views are served from that cache; `first_ms` in the JSON
//! is the cold first view.
//!
//! Pages that aggregate the whole history cost far more than a look-up, so their
//! sample is smaller and capped in time; the report says how many were timed.

use super::Plan;
use super::client::request;
use super::lookup::{Latency, Size, Target, random_customer, time_paired};
use anyhow::{Context, bail};

/// What the page measurement came to at one size.
#[derive(Clone, Debug)]
pub enum PagesOutcome {
    /// Not measured, and why (e.g. the dashboard is not built yet).
    NotMeasured(String),
    /// Both pages timed.
    Measured {
        /// `GET /`.
        overview: Latency,
        /// `GET /why?email=…`.
        why: Latency,
    },
}

/// Logs in to both servers and times both pages on each, alternating between them.
pub async fn measure(
    plan: &Plan,
    small: &mut Target,
    large: &mut Target,
) -> anyhow::Result<(PagesOutcome, PagesOutcome)> {
    let probe = small
        .connection
        .send(&request("GET", "/login", &[], b""))
        .await?;
    if probe.status == 404 {
        let not_built = PagesOutcome::NotMeasured("dashboard not built".into());
        return Ok((not_built.clone(), not_built));
    }
    let total = plan.page_warmup + plan.page_requests;
    let (cookie_small, cookie_large) = (login(small).await?, login(large).await?);
    let overview = |cookie: &str| {
        (0..total)
            .map(|_| request("GET", "/", &[("Cookie", cookie)], b""))
            .collect::<Vec<_>>()
    };
    let (overview_small, overview_large) = time_paired(
        small,
        overview(&cookie_small),
        large,
        overview(&cookie_large),
        plan.page_warmup,
        Some(plan.page_budget),
    )
    .await?;
    let why = |cookie: &str, size: Size| {
        (0..total)
            .map(|_| {
                request(
                    "GET",
                    &format!("/why?email={}", random_customer(size)),
                    &[("Cookie", cookie)],
                    b"",
                )
            })
            .collect::<Vec<_>>()
    };
    let (why_small, why_large) = time_paired(
        small,
        why(&cookie_small, small.size),
        large,
        why(&cookie_large, large.size),
        plan.page_warmup,
        Some(plan.page_budget),
    )
    .await?;
    Ok((
        PagesOutcome::Measured {
            overview: overview_small,
            why: why_small,
        },
        PagesOutcome::Measured {
            overview: overview_large,
            why: why_large,
        },
    ))
}

/// Posts the login form as `admin` and returns the `Cookie` header to send.
async fn login(target: &mut Target) -> anyhow::Result<String> {
    let form = serde_urlencoded::to_string([
        ("username", "admin"),
        ("password", target.server.password.as_str()),
    ])
    .context("cannot encode the login form")?;
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let answer = target
        .connection
        .send(&request("POST", "/login", &headers, form.as_bytes()))
        .await?;
    let cookies: Vec<&str> = answer
        .set_cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .map(str::trim)
        .collect();
    if cookies.is_empty() || answer.status >= 400 {
        bail!(
            "the dashboard login answered {} without a session cookie",
            answer.status
        );
    }
    Ok(cookies.join("; "))
}
