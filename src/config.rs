//! Settings resolved once into a checked [`Config`]: defaults < `mailtrail.toml` <
//! `MAILTRAIL_*` environment < flags (SPEC §7).
//!
//! Every error names the setting, where it came from and what would be valid, and
//! unknown keys and environment names are warned about, so a typo is never silent.

use crate::cli::RawSettings;
use crate::delivery::TransportSpec;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The checked settings of one process.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// SQLite database file.
    pub db: PathBuf,
    /// Where emails go.
    pub transport: TransportSpec,
    /// Delays between delivery tries.
    pub retry_schedule: Vec<Duration>,
    /// Give up retrying after this long since the first try.
    pub give_up_after: Duration,
    /// How long a delivery lease lasts.
    pub lease: Duration,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Accepted as an admin API token.
    pub admin_token: Option<String>,
    /// Password of the first `admin` user.
    pub admin_password: Option<String>,
    /// SMTP port for `direct` delivery (tests use a high port).
    pub mx_port: u16,
    /// DNS server for `direct` delivery; `None` uses the system resolver.
    pub dns: Option<SocketAddr>,
    /// How often an idle worker looks for due decisions.
    pub poll_interval: Duration,
    /// Extra CA certificate (PEM) trusted for smarthost TLS, for private relays.
    pub smtp_ca: Option<PathBuf>,
    /// Concurrent deliveries per worker.
    pub concurrency: usize,
    /// Logs as JSON lines instead of text.
    pub log_json: bool,
    /// Group concurrent writes into one transaction (off only for the benchmark's
    /// baseline: `MAILTRAIL_GROUP_COMMIT=false`).
    pub group_commit: bool,
    /// Run the delivery worker inside `serve` (`MAILTRAIL_WORKER=false` leaves delivery
    /// to separate `mailtrail worker` processes, and lets the benchmark measure ingest
    /// alone).
    pub worker: bool,
    // --- h1 (issue 10, SPEC §14 "Connections" and "Login") ---
    /// Open HTTP connections at most (`--max-connections`, default 1,024).
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` names the client (`--trusted-proxies`, CIDRs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    // --- end h1
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting} (from {source_name}): {message}")]
pub struct ConfigError {
    /// The setting's name, e.g. `listen`.
    pub setting: String,
    /// Where the bad value came from, e.g. `--listen or MAILTRAIL_LISTEN`.
    pub source_name: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

// --- h1 (issue 10) ---
/// `10.0.0.0/8, 192.168.1.10` (a TOML array arrives as `["…", "…"]`): CIDRs, or single
/// addresses meaning /32 or /128.
fn parse_cidrs(value: &str) -> Result<Vec<ipnet::IpNet>, String> {
    value
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|item| item.trim().trim_matches('"'))
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{item}` is not a CIDR like 10.0.0.0/8 or an IP address"))
        })
        .collect()
}
// --- end h1

/// Where a value was found.
struct Found<'a> {
    value: String,
    source: &'a str,
}

/// The settings file's keys (SPEC §7).
const TOML_KEYS: &[&str] = &[
    "listen",
    "db",
    "transport",
    "retry_schedule",
    "give_up_after",
    "lease",
    "metrics",
    // h1
    "max_connections",
    "trusted_proxies",
];

/// The environment names mailtrail reads.
const ENV_NAMES: &[&str] = &[
    "MAILTRAIL_LISTEN",
    "MAILTRAIL_DB",
    "MAILTRAIL_TRANSPORT",
    "MAILTRAIL_CONFIG",
    "MAILTRAIL_RETRY_SCHEDULE",
    "MAILTRAIL_GIVE_UP_AFTER",
    "MAILTRAIL_LEASE",
    "MAILTRAIL_METRICS",
    "MAILTRAIL_ADMIN_TOKEN",
    "MAILTRAIL_ADMIN_PASSWORD",
    "MAILTRAIL_MX_PORT",
    "MAILTRAIL_DNS",
    "MAILTRAIL_POLL_INTERVAL",
    "MAILTRAIL_SMTP_CA",
    "MAILTRAIL_CONCURRENCY",
    "MAILTRAIL_LOG_FORMAT",
    "MAILTRAIL_LOG",
    "MAILTRAIL_GROUP_COMMIT",
    "MAILTRAIL_WORKER",
    // h1
    "MAILTRAIL_MAX_CONNECTIONS",
    "MAILTRAIL_TRUSTED_PROXIES",
];

impl Config {
    /// Resolves `raw` (flags and env, merged by clap) over the settings file and the
    /// defaults. Returns the config and warnings to log once logging is up.
    pub fn resolve(raw: &RawSettings, demo: bool) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        for (name, _) in std::env::vars() {
            if name.starts_with("MAILTRAIL_") && !ENV_NAMES.contains(&name.as_str()) {
                warnings.push(format!("unknown environment variable {name} is ignored"));
            }
        }
        let file = load_file(raw.config.as_deref(), &mut warnings)?;
        let pick = |flag: &Option<String>, key: &str, env: &str| -> Option<Found<'static>> {
            let _ = env;
            if let Some(v) = flag {
                return Some(Found {
                    value: v.clone(),
                    source: "flag or environment",
                });
            }
            file.as_ref().and_then(|t| t.get(key)).map(|v| Found {
                value: match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                source: "mailtrail.toml",
            })
        };
        let err = |setting: &str, found: &Found<'_>, message: String| ConfigError {
            setting: setting.to_owned(),
            source_name: match found.source {
                "mailtrail.toml" => format!("mailtrail.toml key `{setting}`"),
                _ => format!(
                    "--{} or MAILTRAIL_{}",
                    setting.replace('_', "-"),
                    setting.to_uppercase()
                ),
            },
            message,
        };

        let listen = match pick(&raw.listen, "listen", "MAILTRAIL_LISTEN") {
            Some(f) => f.value.parse().map_err(|_| {
                err(
                    "listen",
                    &f,
                    format!("`{}` is not an address like 127.0.0.1:8040", f.value),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8040)),
        };
        let db_flag = raw.db.as_ref().map(|p| p.display().to_string());
        let db = match pick(&db_flag, "db", "MAILTRAIL_DB") {
            Some(f) if f.value.trim().is_empty() => {
                return Err(err("db", &f, "an empty path".into()));
            }
            Some(f) => PathBuf::from(f.value),
            None if demo => PathBuf::from("./data/demo.db"),
            None => PathBuf::from("./data/mailtrail.db"),
        };
        let transport = match pick(&raw.transport, "transport", "MAILTRAIL_TRANSPORT") {
            Some(f) => TransportSpec::parse(&f.value).map_err(|m| err("transport", &f, m))?,
            None => TransportSpec::File(PathBuf::from("./data/outgoing")),
        };
        let retry_schedule = match pick(
            &raw.retry_schedule,
            "retry_schedule",
            "MAILTRAIL_RETRY_SCHEDULE",
        ) {
            Some(f) => f
                .value
                .split(',')
                .map(|d| parse_duration(d.trim()))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|v| {
                    if v.is_empty() {
                        Err("an empty schedule".into())
                    } else {
                        Ok(v)
                    }
                })
                .map_err(|m| {
                    err(
                        "retry_schedule",
                        &f,
                        format!("{m}; write e.g. 1m,5m,15m,1h,3h,6h"),
                    )
                })?,
            None => ["1m", "5m", "15m", "1h", "3h", "6h"]
                .iter()
                .filter_map(|d| parse_duration(d).ok())
                .collect(),
        };
        let duration = |flag: &Option<String>,
                        key: &str,
                        env: &str,
                        default: Duration|
         -> Result<Duration, ConfigError> {
            match pick(flag, key, env) {
                Some(f) => parse_duration(&f.value).map_err(|m| err(key, &f, m)),
                None => Ok(default),
            }
        };
        let give_up_after = duration(
            &raw.give_up_after,
            "give_up_after",
            "MAILTRAIL_GIVE_UP_AFTER",
            Duration::from_secs(24 * 3600),
        )?;
        let lease = duration(
            &raw.lease,
            "lease",
            "MAILTRAIL_LEASE",
            Duration::from_secs(300),
        )?;
        let env_metrics = std::env::var("MAILTRAIL_METRICS").ok();
        let metrics = if raw.no_metrics {
            false
        } else if let Some(v) = env_metrics {
            parse_bool(&v).ok_or_else(|| ConfigError {
                setting: "metrics".into(),
                source_name: "MAILTRAIL_METRICS".into(),
                message: format!("`{v}` is not true or false"),
            })?
        } else {
            match file.as_ref().and_then(|t| t.get("metrics")) {
                Some(toml::Value::Boolean(b)) => *b,
                Some(other) => {
                    return Err(ConfigError {
                        setting: "metrics".into(),
                        source_name: "mailtrail.toml key `metrics`".into(),
                        message: format!("`{other}` is not true or false"),
                    });
                }
                None => true,
            }
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let env_err = |name: &str, message: String| ConfigError {
            setting: name.trim_start_matches("MAILTRAIL_").to_lowercase(),
            source_name: name.to_owned(),
            message,
        };
        let mx_port = match env("MAILTRAIL_MX_PORT") {
            Some(v) => v
                .parse()
                .map_err(|_| env_err("MAILTRAIL_MX_PORT", format!("`{v}` is not a port number")))?,
            None => 25,
        };
        let dns = match env("MAILTRAIL_DNS") {
            Some(v) => Some(v.parse().map_err(|_| {
                env_err(
                    "MAILTRAIL_DNS",
                    format!("`{v}` is not ip:port, e.g. 127.0.0.1:5353"),
                )
            })?),
            None => None,
        };
        let poll_interval = match env("MAILTRAIL_POLL_INTERVAL") {
            Some(v) => parse_duration(&v).map_err(|m| env_err("MAILTRAIL_POLL_INTERVAL", m))?,
            None => Duration::from_secs(1),
        };
        let concurrency = match env("MAILTRAIL_CONCURRENCY") {
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| {
                    env_err(
                        "MAILTRAIL_CONCURRENCY",
                        format!("`{v}` is not a number from 1 to 256"),
                    )
                })?,
            None => 8,
        };
        let group_commit = match env("MAILTRAIL_GROUP_COMMIT") {
            Some(v) => parse_bool(&v).ok_or_else(|| {
                env_err(
                    "MAILTRAIL_GROUP_COMMIT",
                    format!("`{v}` is not true or false"),
                )
            })?,
            None => true,
        };
        let worker = match env("MAILTRAIL_WORKER") {
            Some(v) => parse_bool(&v).ok_or_else(|| {
                env_err("MAILTRAIL_WORKER", format!("`{v}` is not true or false"))
            })?,
            None => true,
        };
        let log_json = match raw.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError {
                    setting: "log_format".into(),
                    source_name: "--log-format or MAILTRAIL_LOG_FORMAT".into(),
                    message: format!("`{other}` is not text or json"),
                });
            }
        };
        // --- h1 (issue 10): connection cap and trusted proxies ---
        let max_connections = match pick(
            &raw.max_connections,
            "max_connections",
            "MAILTRAIL_MAX_CONNECTIONS",
        ) {
            Some(f) => f
                .value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    err(
                        "max_connections",
                        &f,
                        format!("`{}` is not a number from 1 to 1000000", f.value),
                    )
                })?,
            None => 1024,
        };
        let trusted_proxies = match pick(
            &raw.trusted_proxies,
            "trusted_proxies",
            "MAILTRAIL_TRUSTED_PROXIES",
        ) {
            Some(f) => parse_cidrs(&f.value).map_err(|m| err("trusted_proxies", &f, m))?,
            None => Vec::new(),
        };
        // --- end h1
        Ok((
            Config {
                listen,
                db,
                transport,
                retry_schedule,
                give_up_after,
                lease,
                metrics,
                admin_token: env("MAILTRAIL_ADMIN_TOKEN"),
                admin_password: env("MAILTRAIL_ADMIN_PASSWORD"),
                mx_port,
                dns,
                poll_interval,
                smtp_ca: env("MAILTRAIL_SMTP_CA").map(PathBuf::from),
                concurrency,
                log_json,
                group_commit,
                worker,
                max_connections,
                trusted_proxies,
            },
            warnings,
        ))
    }
}

fn load_file(
    explicit: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Option<toml::Table>, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None if Path::new("mailtrail.toml").exists() => PathBuf::from("mailtrail.toml"),
        None => return Ok(None),
    };
    let file_err = |message: String| ConfigError {
        setting: "config".into(),
        source_name: "--config or MAILTRAIL_CONFIG".into(),
        message,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| file_err(format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| file_err(format!("{} is not valid TOML: {e}", path.display())))?;
    for key in table.keys() {
        if !TOML_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "unknown key `{key}` in {} is ignored (known: {})",
                path.display(),
                TOML_KEYS.join(", ")
            ));
        }
    }
    Ok(Some(table))
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 30s, 5m or 1h"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}` is not a duration like 500ms, 30s, 5m or 1h")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "5", "5x", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
