//! `mailtrail bench`: the performance benchmark of SPEC §8, run on the machine at hand.
//!
//! Method. The server under test is this binary run as `mailtrail serve` in a scratch
//! directory (the real HTTP stack, writer thread and database file, with the delivery
//! worker off so ingest is measured alone); the load comes from a small HTTP/1.1
//! client inside this process. Every figure is reported with a baseline measured in
//! the same run, and judged on the ratio between them where SPEC asks for one,
//! because absolute numbers drift on shared machines while ratios mostly do not:
//! - ingest: group commit against one transaction per request
//!   (`MAILTRAIL_GROUP_COMMIT=false`), same load, same binary ([`ingest`]);
//! - why look-up and pages: 1,000,000 decisions and 100,000 suppressions against
//!   1,000 decisions, seeded in bulk ([`lookup`], [`pages`], `store::seed_bulk`);
//! - memory: the server's RSS under the ingest load against its RSS idle;
//! - retention: ingest while a purge removes most of a seeded history, against the
//!   same with nothing to purge ([`retention`], SPEC §14).
//!
//! A missed target is reported, not an error: the command exits 0 whenever it could
//! measure, and 1 only when it could not run.
//!
//! - bounces: reports through the SMTP bounce door against the same reports posted to
//!   the API, on one server ([`bounces`], issue 12).
//!
//! Code map: [`client`] (HTTP client), [`server`] (the subprocess and scratch dir),
//! [`ingest`], [`lookup`], [`pages`], [`bounces`] (measurements), [`report`] (table
//! and JSON).

mod bounces;
mod client;
mod ingest;
mod lookup;
mod pages;
mod report;
mod retention;
pub(crate) mod scratch;
mod server;
pub(crate) mod webhooks;

use crate::commands::RunError;
use crate::config::Config;
use lookup::Size;
use report::Report;
use std::process::ExitCode;
use std::time::Duration;

/// Sizes and durations of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `--quick`: shorter windows, a 100,000-decision large history.
    pub quick: bool,
    /// `--db postgres://…`: the server on which each measured configuration gets a
    /// scratch database of its own; `None` measures SQLite files.
    pub postgres: Option<String>,
    /// Runs of each ingest configuration (the median is reported).
    pub ingest_runs: usize,
    /// Ingest load before the measured window.
    pub warmup: Duration,
    /// The measured ingest window.
    pub ingest_window: Duration,
    /// The baseline history of look-ups.
    pub small: Size,
    /// The large history of look-ups.
    pub large: Size,
    /// Why look-ups timed per size.
    pub lookups: usize,
    /// Why look-ups sent first, untimed.
    pub lookup_warmup: usize,
    /// Page views timed per page and size (at most).
    pub page_requests: usize,
    /// Page views sent first, untimed.
    pub page_warmup: usize,
    /// Time after which a page's timing stops early.
    pub page_budget: Duration,
}

impl Plan {
    /// The sizes of SPEC §8, or smaller ones for `--quick`.
    pub fn new(quick: bool) -> Plan {
        let small = Size {
            decisions: 1_000,
            suppressions: 100,
            customers: 200,
        };
        if quick {
            Plan {
                quick,
                postgres: None,
                ingest_runs: 1,
                warmup: Duration::from_millis(500),
                ingest_window: Duration::from_secs(2),
                small,
                large: Size {
                    decisions: 100_000,
                    suppressions: 10_000,
                    customers: 20_000,
                },
                lookups: 500,
                lookup_warmup: 100,
                page_requests: 50,
                page_warmup: 5,
                page_budget: Duration::from_secs(5),
            }
        } else {
            Plan {
                quick,
                postgres: None,
                ingest_runs: 3,
                warmup: Duration::from_secs(1),
                ingest_window: Duration::from_secs(4),
                small,
                large: Size {
                    decisions: 1_000_000,
                    suppressions: 100_000,
                    customers: 200_000,
                },
                lookups: 2_000,
                lookup_warmup: 200,
                page_requests: 300,
                page_warmup: 20,
                page_budget: Duration::from_secs(20),
            }
        }
    }
}

/// What `mailtrail bench WHAT` accepts.
const PARTS: &str = "all, ingest, why, memory, pages, delivery, retention, bounces, webhooks";

/// Runs the parts named by `what` and prints the figures (a table, or one JSON object
/// with `json`).
pub async fn run(
    config: Config,
    what: &str,
    json: bool,
    quick: bool,
    workers: usize,
) -> Result<ExitCode, RunError> {
    let (ingest, why, pages) = match what {
        "all" => (true, true, true),
        "ingest" | "memory" => (true, false, false),
        "why" => (false, true, false),
        "pages" => (false, false, true),
        "delivery" | "retention" | "bounces" | "webhooks" => (false, false, false),
        other => {
            return Err(RunError::Usage(format!(
                "unknown bench part `{other}`: use one of {PARTS}"
            )));
        }
    };
    let mut plan = Plan::new(quick);
    if let crate::store::DbLocation::Postgres(url) = &config.db {
        plan.postgres = Some(url.clone());
    }
    let mut report = Report::new(what, quick);
    if cfg!(debug_assertions) {
        eprintln!(
            "mailtrail bench: this is a debug build; build with --release for meaningful figures"
        );
    }
    if ingest {
        progress(&format!(
            "ingest: 64 clients, one transaction per request (baseline) and group commit, {} run(s) each",
            plan.ingest_runs
        ));
        let result = ingest::measure(&plan).await.map_err(runtime("ingest"))?;
        report.ingest(&result, &plan);
        report.memory(&result);
    }
    if why || pages {
        progress(&format!(
            "look-ups: seeding {} and {} decisions",
            report::count(plan.small.decisions),
            report::count(plan.large.decisions)
        ));
        let result = lookup::measure(&plan, why, pages)
            .await
            .map_err(runtime("look-ups"))?;
        report.seed(&result);
        if why {
            report.why(&result);
        }
        if pages {
            report.pages(&result);
        }
    }
    if what == "retention" || what == "all" {
        progress("retention: ingest while a purge runs, and with nothing to purge");
        let result = retention::measure(&plan)
            .await
            .map_err(runtime("retention"))?;
        report.retention(&result);
    }
    if what == "bounces" || what == "all" {
        progress("bounces: reports through the SMTP bounce door and through the API");
        let figures = bounces::measure(&plan).await.map_err(runtime("bounces"))?;
        report.bounces(&figures);
    }
    if what == "delivery" {
        progress("delivery: through the smarthost transport into a local SMTP sink");
        let figures = crate::delivery::bench::run(&config, quick, workers)
            .await
            .map_err(runtime("delivery"))?;
        report.delivery(&figures);
    } else if what == "all" {
        // Delivery needs Postfix's smtp-sink and has its own run (issue 4).
        report.not_measured(
            "delivery",
            "delivery",
            "measured by `mailtrail bench delivery`",
        );
    }
    if what == "webhooks" {
        progress("webhooks: the outbox delivered to a local receiver, and the receiver's raw rate");
        let figures = webhooks::measure(&config, quick)
            .await
            .map_err(runtime("webhooks"))?;
        report.webhooks(&figures);
    } else if what == "all" {
        report.not_measured(
            "webhooks",
            "webhooks",
            "measured by `mailtrail bench webhooks`",
        );
    }
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// Says what is running, on stderr so `--json` output stays one object.
fn progress(message: &str) {
    eprintln!("mailtrail bench: {message} …");
}

fn runtime(part: &'static str) -> impl Fn(anyhow::Error) -> RunError {
    move |e| RunError::Runtime(anyhow::anyhow!("bench {part} could not run: {e:#}"))
}
