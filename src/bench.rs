//! `mailtrail bench` (SPEC §8).
use crate::commands::RunError;
use crate::config::Config;
use std::process::ExitCode;

/// Runs the benchmark.
pub async fn run(_config: Config, _what: &str, _json: bool, _quick: bool) -> Result<ExitCode, RunError> {
    Err(RunError::Usage("bench is being built".into()))
}
