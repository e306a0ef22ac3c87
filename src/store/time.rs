//! Timestamps as stored: microseconds since the Unix epoch in UTC, an `i64`.
//!
//! Integers sort and compare cheaply in indexes; RFC 3339 text is made only at the edge.

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// Now, in stored form.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// RFC 3339 in UTC with microseconds, as stored, e.g. `2026-11-22T05:30:00.000000Z`.
pub fn format_time(t: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(t)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses RFC 3339 (any offset) into stored form.
pub fn parse_time(s: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
}
