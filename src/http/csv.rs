//! CSV answers, for the API (`Accept: text/csv`) and the dashboard's downloads alike:
//! a paged listing streamed page by page, the decision and suppression columns, and
//! the guard against spreadsheet formulas. Pure HTTP format; no rules.

use crate::http::AppState;
use crate::store::{
    DecisionFilter, DecisionRecord, Page, SuppressionFilter, SuppressionRecord, parse_cursor,
};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The client asked for CSV.
pub fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv"))
}

/// Streams a paged listing as RFC 4180 CSV: `header`, then `row` of every item of every
/// page, fetched page by page so a million rows never sit in memory at once.
pub fn stream_csv<T, F, Fut>(
    filename: &'static str,
    header: &'static [&'static str],
    mut page: F,
    row: fn(&T) -> Vec<String>,
) -> Response
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Page<T>, crate::store::StoreError>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(header);
        let mut cursor = None;
        loop {
            let current = match page(cursor.take()).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            for item in &current.items {
                let _ = writer.write_record(row(item));
            }
            if tx.send(Ok(take_csv(&mut writer))).await.is_err() {
                return;
            }
            match current.next_cursor {
                Some(next) => cursor = Some(next),
                None => return,
            }
        }
    });
    csv_response(Body::from_stream(tokio_stream_from(rx)), filename)
}

/// Every decision matching `filter`, as CSV.
pub fn csv_decisions(state: AppState, filter: DecisionFilter) -> Response {
    const HEADER: &[&str] = &[
        "id",
        "created_at",
        "project",
        "recipient",
        "input",
        "customer_id",
        "channel",
        "email_kind",
        "decision",
        "reasons",
        "status",
        "status_reason",
        "attempts_count",
        "next_attempt_at",
        "last_reply",
        "sent_at",
        "message_id",
    ];
    let page = move |cursor: Option<String>| {
        let mut filter = DecisionFilter {
            limit: 500,
            ..filter.clone()
        };
        filter.before = cursor.as_deref().and_then(parse_cursor).or(filter.before);
        let store = state.store.clone();
        async move { store.decisions(filter).await }
    };
    stream_csv("decisions.csv", HEADER, page, |d: &DecisionRecord| {
        let reasons = d
            .reasons
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        vec![
            d.id.clone(),
            d.created_at.clone(),
            d.project.clone(),
            csv_safe(d.recipient.as_deref().unwrap_or("")),
            csv_safe(&d.input),
            text(&d.customer_id),
            d.channel.to_string(),
            d.email_kind.to_string(),
            d.decision.to_string(),
            reasons,
            d.status.to_string(),
            d.status_reason.map(|r| r.to_string()).unwrap_or_default(),
            d.attempts_count.to_string(),
            text(&d.next_attempt_at),
            csv_safe(d.last_reply.as_deref().unwrap_or("")),
            text(&d.sent_at),
            text(&d.message_id),
        ]
    })
}

/// Every suppression matching `filter`, as CSV; the first three columns are what the
/// import reads back (SPEC §9).
pub fn csv_suppressions(state: AppState, filter: SuppressionFilter) -> Response {
    const HEADER: &[&str] = &[
        "email",
        "reason",
        "note",
        "smtp_code",
        "enhanced_code",
        "response",
        "remote_host",
        "stage",
        "suppressed_at",
        "decision_id",
    ];
    let page = move |cursor: Option<String>| {
        let mut filter = SuppressionFilter {
            limit: 500,
            ..filter.clone()
        };
        if let Some(after) = cursor
            .as_deref()
            .and_then(|c| c.split_once('|'))
            .and_then(|(t, e)| Some((t.parse().ok()?, e.to_owned())))
        {
            filter.after = Some(after);
        }
        let store = state.store.clone();
        async move { store.suppressions(filter).await }
    };
    stream_csv("suppressions.csv", HEADER, page, |s: &SuppressionRecord| {
        let text = |v: &Option<String>| csv_safe(v.as_deref().unwrap_or(""));
        vec![
            csv_safe(&s.email),
            s.reason.to_string(),
            text(&s.note),
            s.smtp_code.map(|c| c.to_string()).unwrap_or_default(),
            text(&s.enhanced_code),
            text(&s.response),
            text(&s.remote_host),
            text(&s.stage),
            s.suppressed_at.clone(),
            text(&s.decision_id),
        ]
    })
}

/// Takes what `writer` has buffered so far, leaving it empty for the next page.
pub fn take_csv(writer: &mut csv::Writer<Vec<u8>>) -> Vec<u8> {
    let _ = writer.flush();
    let next = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    std::mem::replace(writer, next)
        .into_inner()
        .unwrap_or_default()
}

/// A cell that a spreadsheet would run as a formula gets a leading quote (CSV injection).
pub fn csv_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Wraps a channel receiver as a stream for a response body.
pub fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A `text/csv` answer offered as a download.
pub fn csv_response(body: Body, filename: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
