//! Dashboard page latency (SPEC §6: "every page answers in under 100 ms with a
//! million decisions stored"): the overview `/` and `/why?email=`, timed like the why
//! API (one client, after a warm-up), with the session of the first `admin` user.
//!
//! Pages that aggregate the whole history cost far more than a look-up, so their
//! sample is smaller and capped in time; the report says how many were timed.

use super::Plan;
use super::client::{Connection, request};
use super::lookup::{Latency, Size, random_customer, time_requests};
use super::server::Server;
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

/// Logs in and times both pages.
pub async fn measure(plan: &Plan, server: &Server, size: Size) -> anyhow::Result<PagesOutcome> {
    let mut connection = Connection::open(server.addr).await?;
    let probe = connection.send(&request("GET", "/login", &[], b"")).await?;
    if probe.status == 404 {
        return Ok(PagesOutcome::NotMeasured("dashboard not built".into()));
    }
    let cookie = login(&mut connection, server).await?;
    let headers = [("Cookie", cookie.as_str())];
    let total = plan.page_warmup + plan.page_requests;
    let overview = (0..total).map(|_| request("GET", "/", &headers, b""));
    let overview = time_requests(&mut connection, overview, plan.page_warmup, Some(plan.page_budget)).await?;
    let why = (0..total).map(|_| request("GET", &format!("/why?email={}", random_customer(size)), &headers, b""));
    let why = time_requests(&mut connection, why, plan.page_warmup, Some(plan.page_budget)).await?;
    Ok(PagesOutcome::Measured { overview, why })
}

/// Posts the login form as `admin` and returns the `Cookie` header to send.
async fn login(connection: &mut Connection, server: &Server) -> anyhow::Result<String> {
    let form = serde_urlencoded::to_string([("username", "admin"), ("password", server.password.as_str())])
        .context("cannot encode the login form")?;
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let answer = connection.send(&request("POST", "/login", &headers, form.as_bytes())).await?;
    let cookies: Vec<&str> =
        answer.set_cookies.iter().filter_map(|c| c.split(';').next()).map(str::trim).collect();
    if cookies.is_empty() || answer.status >= 400 {
        bail!("the dashboard login answered {} without a session cookie", answer.status);
    }
    Ok(cookies.join("; "))
}
