//! The delivery worker: leases due decisions, renders, sends, records (SPEC §4).
//!
//! Runs inside `serve` or alone as `mailtrail worker`; several may share a database,
//! since a lease is taken in a write transaction. At most `concurrency` tries run at
//! once. On shutdown it stops leasing and lets the tries in flight finish.

use super::classify::{AttemptOutcome, Stage, TryEnd, classify};
use super::render;
use super::schedule::RetryPolicy;
use super::transport::{Attempt, Transport};
use crate::app::{App, FinishedTry};
use crate::model::{DeliveryEnd, EmailAddress, Project, Site, Status, SuppressionReason};
use crate::store::{AttemptWrite, Lease, LeasedDecision, NewSuppression, now_micros};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Starts the worker; it stops when `stop` turns true.
pub fn spawn_worker(state: App, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    super::webhooks::spawn(state.clone(), stop.clone());
    tokio::spawn(async move {
        match Transport::from_config(&state.config) {
            Ok(transport) => {
                state.readiness.transport(Ok(()));
                run(state, Arc::new(transport), stop).await
            }
            Err(e) => {
                tracing::error!(error = %e, "delivery worker not started: the transport is not usable");
                state.readiness.transport(Err(e));
            }
        }
    })
}

/// A leased decision with the settings it is rendered with.
struct Job {
    leased: LeasedDecision,
    /// When the lease (and its guard check) was taken.
    leased_at: Instant,
    projects: Arc<HashMap<String, Project>>,
    site: Arc<Site>,
}

async fn run(state: App, transport: Arc<Transport>, mut stop: watch::Receiver<bool>) {
    let concurrency = state.config.concurrency.max(1);
    // Leases are taken in batches ahead of the sends, so one write transaction (one
    // fsync) leases many messages. The lease is the one serial step of delivery: on
    // PostgreSQL one of 512 rows takes tens of milliseconds, so the channel holds
    // sixteen rounds of sends and is leased again when half empty.
    let batch = (concurrency * 16).max(16);
    let (jobs_tx, mut jobs) = tokio::sync::mpsc::channel::<Job>(batch);
    let leaser = tokio::spawn(lease_ahead(state.clone(), jobs_tx, batch, stop.clone()));
    let sweeper = tokio::spawn(expire_suppressions(state.clone(), stop.clone()));
    let (finished, records) = tokio::sync::mpsc::channel::<FinishedTry>(batch);
    let recorder = tokio::spawn(record_finished(state.clone(), records));
    let slots = Arc::new(Semaphore::new(concurrency));
    let policy = Arc::new(RetryPolicy::from_config(&state.config));
    let mut in_flight = JoinSet::new();
    tracing::info!(transport = %state.config.transport, concurrency, "delivery worker started");
    loop {
        while in_flight.try_join_next().is_some() {}
        let job = tokio::select! {
            job = jobs.recv() => job,
            _ = stop.changed() => None,
        };
        let Some(job) = job else { break };
        if *stop.borrow() {
            jobs.close();
            release(&state, vec![job]).await;
            break;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (state, transport, policy, finished) = (
            state.clone(),
            transport.clone(),
            policy.clone(),
            finished.clone(),
        );
        in_flight.spawn(async move {
            let recheck = job.leased_at.elapsed() > GUARD_FRESHNESS;
            deliver(
                &state,
                &transport,
                &policy,
                &job.projects,
                &job.site,
                job.leased,
                recheck,
                permit,
                finished,
            )
            .await;
        });
    }
    // Leases taken but not started go back at once rather than waiting out the lease.
    jobs.close();
    let mut unstarted = Vec::new();
    while let Ok(job) = jobs.try_recv() {
        unstarted.push(job);
    }
    release(&state, unstarted).await;
    let _ = leaser.await;
    let _ = sweeper.await;
    tracing::info!(
        in_flight = in_flight.len(),
        "delivery worker stopping; finishing tries in flight"
    );
    while in_flight.join_next().await.is_some() {}
    // Every try has handed in its result: the recorder writes the last ones and ends.
    drop(finished);
    let _ = recorder.await;
}

/// Writes finished tries as they come, each write taking all that are waiting (up to
/// [`RECORD_BATCH`]): one transaction, and a few statements, for many tries.
async fn record_finished(state: App, mut finished: tokio::sync::mpsc::Receiver<FinishedTry>) {
    let mut tries = Vec::with_capacity(RECORD_BATCH);
    while finished.recv_many(&mut tries, RECORD_BATCH).await > 0 {
        if let Err(e) = state.record_attempts(std::mem::take(&mut tries)).await {
            // The leases expire and the decisions are tried again: at-least-once (SPEC §4).
            tracing::error!(error = %e, "cannot record the attempts");
        }
    }
}

/// Most finished tries recorded in one write.
const RECORD_BATCH: usize = 256;

async fn release(state: &App, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let leases = jobs
        .iter()
        .map(|j| (j.leased.decision.id.clone(), j.leased.lease_until))
        .collect();
    if let Err(e) = state.store.release(leases).await {
        tracing::warn!(error = %e, "cannot release leases; they expire on their own");
    }
}

/// Lifts expired suppressions (a full mailbox's, SPEC §11) every poll interval (at
/// least a second, at most a minute) until `stop`.
async fn expire_suppressions(state: App, mut stop: watch::Receiver<bool>) {
    let every = state
        .config
        .poll_interval
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    while !*stop.borrow() {
        if let Err(e) = state.expire_suppressions().await {
            tracing::warn!(error = %e, "cannot lift expired suppressions; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Keeps the job channel filled with leased decisions until `stop`.
async fn lease_ahead(
    state: App,
    jobs: tokio::sync::mpsc::Sender<Job>,
    batch: usize,
    mut stop: watch::Receiver<bool>,
) {
    let lease = Lease {
        micros: state.config.lease.as_micros() as i64,
    };
    while !*stop.borrow() {
        // Lease again once half the channel has drained.
        let room = jobs.capacity();
        if room < batch / 2 {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(2)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let leased = match state.store.lease_due(lease, room).await {
            Ok(leased) => leased,
            Err(e) => {
                tracing::error!(error = %e, "cannot lease due decisions");
                Vec::new()
            }
        };
        if leased.is_empty() {
            tokio::select! {
                _ = state.mail_due() => {}
                _ = tokio::time::sleep(state.config.poll_interval) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let (projects, site) = match tokio::join!(state.store.projects(), state.store.site()) {
            (Ok(p), Ok(s)) => (
                Arc::new(
                    p.into_iter()
                        .map(|p| (p.key.to_string(), p))
                        .collect::<HashMap<_, _>>(),
                ),
                Arc::new(s),
            ),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot read settings; releasing leases");
                let _ = state
                    .store
                    .release(
                        leased
                            .iter()
                            .map(|l| (l.decision.id.clone(), l.lease_until))
                            .collect(),
                    )
                    .await;
                continue;
            }
        };
        for leased in leased {
            let job = Job {
                leased,
                leased_at: Instant::now(),
                projects: projects.clone(),
                site: site.clone(),
            };
            if let Err(unsent) = jobs.send(job).await {
                // The dispatcher has stopped: give the lease back.
                let job = unsent.0;
                let _ = state
                    .store
                    .release(vec![(
                        job.leased.decision.id.clone(),
                        job.leased.lease_until,
                    )])
                    .await;
            }
        }
    }
}

/// A lease's guard check (outgoing mail, suppression) is trusted this long; a job that
/// waited longer for a free slot checks again right before its send.
const GUARD_FRESHNESS: std::time::Duration = std::time::Duration::from_millis(100);

/// One try of one decision, from render to record.
#[allow(clippy::too_many_arguments)] // The worker's shared parts, passed rather than bundled for one call site.
#[tracing::instrument(skip_all, fields(decision_id = %leased.decision.id, domain = leased.decision.recipient.as_deref().and_then(|r| r.rsplit('@').next()).unwrap_or("")))]
async fn deliver(
    state: &App,
    transport: &Transport,
    policy: &RetryPolicy,
    projects: &HashMap<String, Project>,
    site: &Site,
    leased: LeasedDecision,
    recheck: bool,
    slot: tokio::sync::OwnedSemaphorePermit,
    finished: tokio::sync::mpsc::Sender<FinishedTry>,
) {
    let decision = &leased.decision;
    // SPEC §4: the guards hold at delivery time, which may be a while after the lease.
    let guard = if recheck {
        state
            .store
            .guard(decision.recipient.clone().unwrap_or_default())
            .await
    } else {
        Ok(None)
    };
    match guard {
        Ok(Some(reason)) => {
            if let Err(e) = state
                .store
                .skip_leased(decision.id.clone(), leased.lease_until, reason)
                .await
            {
                tracing::error!(error = %e, "cannot mark the decision skipped");
            }
            return;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-check the delivery guards; the lease-time check stands")
        }
    }
    let started = Instant::now();
    let started_at = now_micros();
    let attempt = match render_for(state, projects, site, decision).await {
        Ok(message) => transport.deliver(&message).await,
        Err(e) => Attempt {
            end: TryEnd::NoReply(Stage::Data, format!("cannot render the email: {e}")),
            server: None,
            copy: None,
            tls: None,
        },
    };
    let took = started.elapsed();
    // The slot bounds tries talking to servers; the record waits for a commit (an fsync
    // shared with other writes), and holding the slot through it left the connections
    // idle for as long as the disk took. The lease stays until recorded, so a crash in
    // between means one more try, as for any crash (SPEC §4).
    drop(slot);
    let write = attempt_write(&leased, attempt, policy, started_at, now_micros());
    tracing::debug!(outcome = %write.outcome, status = %write.status, "delivery try finished");
    if finished.send((write, took)).await.is_err() {
        // Only if the recorder is gone; the lease expires and the decision is tried
        // again: at-least-once (SPEC §4).
        tracing::error!("cannot record the attempt: the recorder has stopped");
    }
}

/// Renders (and signs) the decision's email. An RSA signature is CPU work of about a
/// millisecond, so with an RSA key this runs on the blocking pool, where several sign
/// at once and the sends on the async threads go on meanwhile.
async fn render_for(
    state: &App,
    projects: &HashMap<String, Project>,
    site: &Site,
    decision: &crate::store::DecisionRecord,
) -> Result<render::Prepared, String> {
    let project = projects
        .get(&decision.project)
        .ok_or_else(|| format!("project {} not found", decision.project))?;
    let signer = match &state.config.dkim {
        // An Ed25519 signature takes tens of microseconds: less than the hop to the
        // blocking pool and back.
        Some(s) if s.algorithm() == crate::delivery::dkim::Algorithm::Rsa => s.clone(),
        other => {
            return render::prepare(decision, project, site, other.as_ref())
                .map_err(|e| e.to_string());
        }
    };
    let (decision, project, site) = (decision.clone(), project.clone(), site.clone());
    tokio::task::spawn_blocking(move || {
        render::prepare(&decision, &project, &site, Some(&signer)).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the render task failed: {e}"))?
}

/// What a try means for the decision's row (pure: SPEC §4 table and retry schedule).
pub fn attempt_write(
    leased: &LeasedDecision,
    attempt: Attempt,
    policy: &RetryPolicy,
    started_at: i64,
    now: i64,
) -> AttemptWrite {
    let decision = &leased.decision;
    let verdict = classify(&attempt.end);
    let (stage, reply) = match &attempt.end {
        TryEnd::Accepted(r) => (Some(Stage::Data), Some(r.clone())),
        TryEnd::Refused(stage, r) => (Some(*stage), Some(r.clone())),
        TryEnd::NoReply(stage, _) => (Some(*stage), None),
        TryEnd::Unroutable(_) => (Some(Stage::Dns), None),
    };
    let text = match &attempt.end {
        TryEnd::Accepted(r) | TryEnd::Refused(_, r) => r.text.clone(),
        TryEnd::NoReply(_, m) | TryEnd::Unroutable(m) => m.clone(),
    };
    let tries = decision.attempts_count as u32 + 1;
    // A full mailbox (5.2.2) bounces but suppresses only for a while (SPEC §11).
    let mailbox_full = reply
        .as_ref()
        .is_some_and(|r| r.enhanced.as_deref() == Some("5.2.2"));
    let (status, status_reason, next_attempt_at) = match verdict {
        AttemptOutcome::Sent => (Status::Sent, None, None),
        AttemptOutcome::Deferred => match policy.next_try(tries, leased.queued_at, now) {
            Some(next) => (Status::Deferred, None, Some(next)),
            None => (Status::Failed, Some(DeliveryEnd::RetriesExhausted), None),
        },
        AttemptOutcome::Bounced if mailbox_full => {
            (Status::Bounced, Some(DeliveryEnd::MailboxFull), None)
        }
        AttemptOutcome::Bounced => (Status::Bounced, Some(DeliveryEnd::HardBounce), None),
        AttemptOutcome::PolicyRejected => (Status::Failed, Some(DeliveryEnd::PolicyRejected), None),
        AttemptOutcome::RelayRejected => (Status::Failed, Some(DeliveryEnd::RelayRejected), None),
        AttemptOutcome::DomainUnroutable => {
            (Status::Failed, Some(DeliveryEnd::DomainUnroutable), None)
        }
    };
    let suppression = match (
        verdict,
        decision.recipient.as_deref().map(EmailAddress::parse),
    ) {
        (AttemptOutcome::Bounced, Some(Ok(email))) => Some(NewSuppression {
            email,
            reason: if mailbox_full {
                SuppressionReason::MailboxFull
            } else {
                SuppressionReason::HardBounce
            },
            smtp_code: reply.as_ref().map(|r| r.code as i64),
            enhanced_code: reply.as_ref().and_then(|r| r.enhanced.clone()),
            response: Some(text.clone()),
            remote_host: attempt.server.clone(),
            stage: stage.map(|s| s.as_str().to_owned()),
            decision_id: Some(decision.id.clone()),
            note: None,
            evidence: None,
            expires_at: mailbox_full.then(|| {
                now.saturating_add(
                    i64::try_from(policy.mailbox_full_for.as_micros()).unwrap_or(i64::MAX),
                )
            }),
        }),
        _ => None,
    };
    AttemptWrite {
        decision_id: decision.id.clone(),
        lease_until: leased.lease_until,
        started_at,
        server: attempt.server,
        stage,
        smtp_code: reply.as_ref().map(|r| r.code as i64),
        enhanced_code: reply.as_ref().and_then(|r| r.enhanced.clone()),
        reply: Some(text),
        outcome: verdict,
        copy_outcome: attempt.copy,
        tls: attempt.tls,
        status,
        status_reason,
        next_attempt_at,
        suppression,
    }
}
