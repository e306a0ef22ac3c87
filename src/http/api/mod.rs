//! JSON API handlers under `/api/v1` (SPEC §3, §5).

pub mod admin;
pub mod delivery;
pub mod ingest;
pub mod meta;
pub mod read;
pub mod suppressions;
pub mod webhooks;
