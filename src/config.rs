//! Settings resolved once into a checked [`Config`]: defaults < `mailtrail.toml` <
//! `MAILTRAIL_*` environment < flags (SPEC §7, §14). `layers` merges the three with
//! figment and keeps where each value came from.
//!
//! Every error names the layer and setting it came from (`MAILTRAIL_LEASE
//! (environment): ...`) and what would be valid, and unknown keys and environment
//! names are warned about, so a typo is never silent.

pub mod layers;

use crate::cli::RawSettings;
use crate::delivery::TransportSpec;
use crate::store::DbLocation;
use layers::{Found, Layers};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The checked settings of one process.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The database: a SQLite file or a PostgreSQL URL (SPEC §10).
    pub db: DbLocation,
    /// Where emails go.
    pub transport: TransportSpec,
    /// Delays between delivery tries.
    pub retry_schedule: Vec<Duration>,
    /// Give up retrying after this long since the first try.
    pub give_up_after: Duration,
    /// How long a full mailbox (5.2.2) stays suppressed (SPEC §11).
    pub mailbox_full_for: Duration,
    /// How long a delivery lease lasts.
    pub lease: Duration,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Accepted as an admin API token.
    pub admin_token: Option<Secret>,
    /// Password of the first `admin` user.
    pub admin_password: Option<Secret>,
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
    /// Decisions and attempts older than this are purged (SPEC §14).
    pub retention: Duration,
    /// Open HTTP connections at most (`--max-connections`, default 1,024).
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` names the client (`--trusted-proxies`, CIDRs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The SMTP bounce door's address (`--bounce-listen`, SPEC §11); `None` is off.
    pub bounce_listen: Option<SocketAddr>,
    /// Certificate chain and key (PEM) for the bounce door's `STARTTLS`; both or neither.
    pub bounce_tls: Option<(PathBuf, PathBuf)>,
    /// The complaint (feedback loop) address the bounce door accepts besides VERP
    /// addresses, lowercased.
    pub feedback_address: Option<String>,
    /// Signs every outgoing message (`--dkim-key` + `--dkim-selector`, SPEC §12).
    pub dkim: Option<crate::delivery::dkim::Signer>,
    /// The name we give in EHLO (`--ehlo-name`, SPEC §12); default: the host name.
    pub ehlo_name: String,
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The setting's name, e.g. `listen`.
    pub setting: String,
    /// Where the bad value came from, e.g. `MAILTRAIL_LISTEN (environment)`.
    pub source_name: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

/// A secret setting: reads as `&str`, never printed by `Debug` (SPEC §14: secrets
/// never appear in logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Secrets shorter than this are refused (SPEC §14).
pub const MIN_SECRET_LEN: usize = 16;

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

impl Config {
    /// Resolves the flags `raw` over the process environment, the settings file and the
    /// defaults. Returns the config and warnings to log once logging is up.
    pub fn resolve(raw: &RawSettings, demo: bool) -> Result<(Config, Vec<String>), ConfigError> {
        Config::resolve_from(raw, std::env::vars(), demo)
    }

    /// [`Config::resolve`] with the environment given (for tests).
    pub fn resolve_from(
        raw: &RawSettings,
        env: impl IntoIterator<Item = (String, String)>,
        demo: bool,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let layers = Layers::new(raw, env)?;
        let Http {
            listen,
            metrics,
            admin_token,
            admin_password,
            log_json,
            max_connections,
            trusted_proxies,
        } = http(&layers)?;
        let Storage {
            db,
            group_commit,
            retention,
        } = storage(&layers, demo)?;
        let Sending {
            transport,
            mx_port,
            dns,
            smtp_ca,
            concurrency,
            worker,
            ehlo_name,
        } = sending(&layers)?;
        let Retries {
            retry_schedule,
            give_up_after,
            mailbox_full_for,
            lease,
            poll_interval,
        } = retries(&layers)?;
        let BounceDoor {
            bounce_listen,
            bounce_tls,
            feedback_address,
        } = bounce_door(&layers)?;
        let config = Config {
            listen,
            db,
            transport,
            retry_schedule,
            give_up_after,
            mailbox_full_for,
            lease,
            metrics,
            admin_token,
            admin_password,
            mx_port,
            dns,
            poll_interval,
            smtp_ca,
            concurrency,
            log_json,
            group_commit,
            worker,
            retention,
            max_connections,
            trusted_proxies,
            bounce_listen,
            bounce_tls,
            feedback_address,
            dkim: dkim(&layers)?,
            ehlo_name,
        };
        Ok((config, layers.warnings))
    }
}

/// The HTTP side: where it listens, its limits, the admin's credentials, the logs.
struct Http {
    listen: SocketAddr,
    metrics: bool,
    admin_token: Option<Secret>,
    admin_password: Option<Secret>,
    log_json: bool,
    max_connections: usize,
    trusted_proxies: Vec<ipnet::IpNet>,
}

fn http(layers: &Layers) -> Result<Http, ConfigError> {
    Ok(Http {
        listen: setting(layers, "listen", parse_listen)?
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8040))),
        metrics: setting(layers, "metrics", parse_bool)?.unwrap_or(true),
        admin_token: secret(layers, "admin_token", MIN_SECRET_LEN)?.map(Secret),
        admin_password: secret(layers, "admin_password", MIN_SECRET_LEN)?.map(Secret),
        log_json: setting(layers, "log_format", |s| match s {
            "text" => Ok(false),
            "json" => Ok(true),
            other => Err(format!("`{other}` is not text or json")),
        })?
        .unwrap_or(false),
        max_connections: setting(layers, "max_connections", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| format!("`{s}` is not a number from 1 to 1000000"))
        })?
        .unwrap_or(1024),
        trusted_proxies: setting(layers, "trusted_proxies", parse_cidrs)?.unwrap_or_default(),
    })
}

/// The database, how it commits and how long it keeps history.
struct Storage {
    db: DbLocation,
    group_commit: bool,
    retention: Duration,
}

fn storage(layers: &Layers, demo: bool) -> Result<Storage, ConfigError> {
    Ok(Storage {
        db: setting(layers, "db", DbLocation::parse)?.unwrap_or_else(|| {
            DbLocation::Sqlite(PathBuf::from(if demo {
                "./data/demo.db"
            } else {
                "./data/mailtrail.db"
            }))
        }),
        group_commit: setting(layers, "group_commit", parse_bool)?.unwrap_or(true),
        retention: duration(layers, "retention", 400 * 86_400)?,
    })
}

/// How mail goes out: the transport, direct delivery's port and resolver, the worker.
struct Sending {
    transport: TransportSpec,
    mx_port: u16,
    dns: Option<SocketAddr>,
    smtp_ca: Option<PathBuf>,
    concurrency: usize,
    worker: bool,
    ehlo_name: String,
}

fn sending(layers: &Layers) -> Result<Sending, ConfigError> {
    Ok(Sending {
        transport: transport(layers)?,
        mx_port: setting(layers, "mx_port", |s| {
            s.parse().map_err(|_| format!("`{s}` is not a port number"))
        })?
        .unwrap_or(25),
        dns: setting(layers, "dns", |s| {
            s.parse()
                .map_err(|_| format!("`{s}` is not ip:port, e.g. 127.0.0.1:5353"))
        })?,
        smtp_ca: setting(layers, "smtp_ca", parse_path)?,
        concurrency: setting(layers, "concurrency", |s| {
            s.parse()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| format!("`{s}` is not a number from 1 to 256"))
        })?
        .unwrap_or(8),
        worker: setting(layers, "worker", parse_bool)?.unwrap_or(true),
        ehlo_name: setting(layers, "ehlo_name", parse_ehlo_name)?.unwrap_or_else(default_ehlo_name),
    })
}

/// When tries happen and how long their effects last.
struct Retries {
    retry_schedule: Vec<Duration>,
    give_up_after: Duration,
    mailbox_full_for: Duration,
    lease: Duration,
    poll_interval: Duration,
}

fn retries(layers: &Layers) -> Result<Retries, ConfigError> {
    Ok(Retries {
        retry_schedule: setting(layers, "retry_schedule", parse_schedule)?
            .unwrap_or_else(default_schedule),
        give_up_after: duration(layers, "give_up_after", 24 * 3600)?,
        mailbox_full_for: duration(layers, "mailbox_full_for", 7 * 86_400)?,
        lease: duration(layers, "lease", 300)?,
        poll_interval: duration(layers, "poll_interval", 1)?,
    })
}

/// The SMTP bounce door (SPEC §11).
struct BounceDoor {
    bounce_listen: Option<SocketAddr>,
    bounce_tls: Option<(PathBuf, PathBuf)>,
    feedback_address: Option<String>,
}

fn bounce_door(layers: &Layers) -> Result<BounceDoor, ConfigError> {
    Ok(BounceDoor {
        bounce_listen: setting(layers, "bounce_listen", parse_listen)?,
        bounce_tls: bounce_tls(layers)?,
        feedback_address: setting(layers, "feedback_address", parse_feedback_address)?,
    })
}

/// `--bounce-tls-cert` and `--bounce-tls-key`: both, or neither. The files are read
/// (and a bad one reported, exit 2) when the door starts.
fn bounce_tls(layers: &Layers) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    let cert = setting(layers, "bounce_tls_cert", parse_path)?;
    let key = setting(layers, "bounce_tls_key", parse_path)?;
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (cert, _) => {
            let (missing, given) = if cert.is_some() {
                ("bounce_tls_key", "bounce_tls_cert")
            } else {
                ("bounce_tls_cert", "bounce_tls_key")
            };
            Err(ConfigError {
                setting: missing.to_owned(),
                source_name: missing.to_owned(),
                message: format!("{given} is set but {missing} is not: give both, or neither"),
            })
        }
    }
}

/// `fbl@bounces.example.com`: one plain address, kept lowercased.
fn parse_feedback_address(value: &str) -> Result<String, String> {
    let (local, domain) = value
        .split_once('@')
        .filter(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
        .ok_or_else(|| format!("`{value}` is not an address like fbl@bounces.example.com"))?;
    if value.len() > 254
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(format!(
            "`{value}` is not an address like fbl@bounces.example.com"
        ));
    }
    Ok(format!("{local}@{domain}").to_lowercase())
}

/// The value of `key` checked by `parse`, or `None` when no layer sets it. A bad value
/// is an error naming its layer.
fn setting<T>(
    layers: &Layers,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    let Some(Found { value, origin }) = layers.get(key)? else {
        return Ok(None);
    };
    parse(value.trim())
        .map(Some)
        .map_err(|message| ConfigError {
            setting: key.to_owned(),
            source_name: origin,
            message,
        })
}

/// A duration setting with its default in seconds.
fn duration(layers: &Layers, key: &str, default_secs: u64) -> Result<Duration, ConfigError> {
    Ok(setting(layers, key, parse_duration)?.unwrap_or(Duration::from_secs(default_secs)))
}

/// A secret given as `key` or read from the file named by `key_file` (its trailing
/// newline dropped); both at once is an error, and so is one shorter than `min_len`.
fn secret(layers: &Layers, key: &str, min_len: usize) -> Result<Option<String>, ConfigError> {
    let file_key = format!("{key}_file");
    let direct = layers.get(key)?;
    let file = layers.get(&file_key)?;
    let (value, origin) = match (direct, file) {
        (Some(d), Some(f)) => {
            return Err(ConfigError {
                setting: key.to_owned(),
                source_name: format!("{} and {}", d.origin, f.origin),
                message: format!("set either {key} or {file_key}, not both"),
            });
        }
        (Some(d), None) => (d.value, d.origin),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f.value.trim()).map_err(|e| ConfigError {
                setting: file_key.clone(),
                source_name: f.origin.clone(),
                message: format!("cannot read `{}`: {e}", f.value.trim()),
            })?;
            (text.trim_end_matches(['\r', '\n']).to_owned(), f.origin)
        }
        (None, None) => return Ok(None),
    };
    if value.chars().count() < min_len {
        return Err(ConfigError {
            setting: key.to_owned(),
            source_name: origin,
            message: format!("too short: a secret needs at least {min_len} characters"),
        });
    }
    Ok(Some(value))
}

/// The transport, with the smarthost password from `smtp_password(_file)` when given.
fn transport(layers: &Layers) -> Result<TransportSpec, ConfigError> {
    let mut spec = setting(layers, "transport", TransportSpec::parse)?
        .unwrap_or_else(|| TransportSpec::File(PathBuf::from("./data/outgoing")));
    let Some(password) = secret(layers, "smtp_password", 1)? else {
        return Ok(spec);
    };
    let origin = layers
        .get("smtp_password")?
        .or(layers.get("smtp_password_file")?)
        .map(|f| f.origin)
        .unwrap_or_default();
    match &mut spec {
        TransportSpec::Smtp {
            credentials: Some((_, pass)),
            ..
        } => {
            *pass = password;
            Ok(spec)
        }
        _ => Err(ConfigError {
            setting: "smtp_password".into(),
            source_name: origin,
            message: "needs a smarthost transport with a user, e.g. smtp://user@host:587".into(),
        }),
    }
}

/// The DKIM signer: a key and a selector, both or neither. A key that cannot be read or
/// used names `dkim_key`; a selector that is not one names `dkim_selector`.
fn dkim(layers: &Layers) -> Result<Option<crate::delivery::dkim::Signer>, ConfigError> {
    let key = layers.get("dkim_key")?;
    let selector = layers.get("dkim_selector")?;
    let error = |setting: &str, origin: String, message: String| ConfigError {
        setting: setting.to_owned(),
        source_name: origin,
        message,
    };
    match (key, selector) {
        (None, None) => Ok(None),
        (Some(k), None) => Err(error(
            "dkim_selector",
            k.origin,
            "a DKIM key needs a selector too (--dkim-selector / MAILTRAIL_DKIM_SELECTOR)".into(),
        )),
        (None, Some(s)) => Err(error(
            "dkim_key",
            s.origin,
            "a DKIM selector needs a key file too (--dkim-key / MAILTRAIL_DKIM_KEY)".into(),
        )),
        (Some(k), Some(s)) => {
            let selector = s.value.trim();
            crate::delivery::dkim::check_selector(selector)
                .map_err(|m| error("dkim_selector", s.origin.clone(), m.to_string()))?;
            let path = k.value.trim();
            let text = std::fs::read_to_string(path).map_err(|e| {
                error(
                    "dkim_key",
                    k.origin.clone(),
                    format!("cannot read `{path}`: {e}"),
                )
            })?;
            crate::delivery::dkim::Signer::new(&text, selector)
                .map(Some)
                .map_err(|m| error("dkim_key", k.origin, format!("`{path}`: {m}")))
        }
    }
}

/// An EHLO name: a domain name (RFC 5321 §4.1.1.1), or an address literal `[1.2.3.4]`.
fn parse_ehlo_name(s: &str) -> Result<String, String> {
    let literal = s.starts_with('[') && s.ends_with(']') && s.len() > 2;
    let domain = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if literal || domain {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a host name like mail.example.com (or an address literal like [192.0.2.1])"
        ))
    }
}

/// The host's name as EHLO gives it: the kernel's host name, else `localhost`.
fn default_ehlo_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .find(|h| parse_ehlo_name(h).is_ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an address like 127.0.0.1:8040"))
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("an empty path".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let steps = s
        .split(',')
        .map(|d| parse_duration(d.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| format!("{m}; write e.g. 1m,5m,15m,1h,3h,6h"))?;
    if steps.is_empty() {
        return Err("an empty schedule; write e.g. 1m,5m,15m,1h,3h,6h".into());
    }
    Ok(steps)
}

fn default_schedule() -> Vec<Duration> {
    [60, 300, 900, 3600, 3 * 3600, 6 * 3600]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
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

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("`{s}` is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A settings file in a fresh directory, named by `--config`.
    fn with_file(text: &str) -> (tempfile::TempDir, RawSettings) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mailtrail.toml");
        std::fs::write(&path, text).expect("write toml");
        let raw = RawSettings {
            config: Some(path),
            ..RawSettings::default()
        };
        (dir, raw)
    }

    fn resolve(raw: &RawSettings, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::resolve_from(raw, env(pairs), false).map(|(c, _)| c)
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let (_dir, mut raw) = with_file(
            "lease = \"1m\"\nconcurrency = 3\nmetrics = false\nretention = \"30d\"\n\
             retry_schedule = [\"1s\", \"2s\"]\npoll_interval = \"5s\"\n",
        );
        let config = resolve(&RawSettings::default(), &[]).expect("defaults");
        assert_eq!(config.lease, Duration::from_secs(300));
        assert_eq!(config.retention, Duration::from_secs(400 * 86_400));
        assert!(config.metrics);
        let config = resolve(&raw, &[]).expect("file");
        assert_eq!(config.lease, Duration::from_secs(60));
        assert_eq!(config.concurrency, 3);
        assert!(!config.metrics);
        assert_eq!(config.retention, Duration::from_secs(30 * 86_400));
        assert_eq!(
            config.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        let by_env = [("MAILTRAIL_LEASE", "2m"), ("MAILTRAIL_CONCURRENCY", "4")];
        let config = resolve(&raw, &by_env).expect("env");
        assert_eq!(config.lease, Duration::from_secs(120));
        assert_eq!(config.concurrency, 4);
        assert_eq!(
            config.poll_interval,
            Duration::from_secs(5),
            "file still counts"
        );
        raw.lease = Some("3m".into());
        raw.metrics = Some("true".into());
        let config = resolve(&raw, &by_env).expect("flags");
        assert_eq!(config.lease, Duration::from_secs(180));
        assert!(config.metrics);
        assert_eq!(config.concurrency, 4);
    }

    #[test]
    fn errors_name_the_layer() {
        let (_dir, mut raw) = with_file("lease = \"soon\"\n");
        let e = resolve(&raw, &[]).expect_err("file");
        assert!(e.to_string().starts_with("key `lease` in "), "{e}");
        assert!(
            e.to_string().contains("(file): `soon` is not a duration"),
            "{e}"
        );
        let e = resolve(&raw, &[("MAILTRAIL_LEASE", "later")]).expect_err("env");
        assert!(
            e.to_string()
                .starts_with("MAILTRAIL_LEASE (environment): `later`"),
            "{e}"
        );
        raw.lease = Some("never".into());
        let e = resolve(&raw, &[("MAILTRAIL_LEASE", "later")]).expect_err("flag");
        assert!(e.to_string().starts_with("--lease (flag): `never`"), "{e}");
        let e = resolve(&RawSettings::default(), &[("MAILTRAIL_DNS", "x")]).expect_err("dns");
        assert!(
            e.to_string().starts_with("MAILTRAIL_DNS (environment)"),
            "{e}"
        );
        let (_dir, raw) = with_file("lease = [");
        let e = resolve(&raw, &[]).expect_err("syntax");
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let (_dir, raw) = with_file("metrics = 3\n");
        let e = resolve(&raw, &[]).expect_err("bool");
        assert!(e.to_string().contains("`3` is not true or false"), "{e}");
    }

    #[test]
    fn every_key_is_a_flag_an_environment_name_and_a_toml_key() {
        use clap::CommandFactory;
        let command = crate::cli::Cli::command();
        for key in layers::KEYS {
            let (_dir, raw) = with_file(&format!("{key} = \"x\"\n"));
            let layers = Layers::new(&raw, env(&[])).expect("layers");
            let found = layers.get(key).expect("get").expect("set in the file");
            assert!(found.origin.contains("(file)"), "{key}: {}", found.origin);
            assert!(layers.warnings.is_empty(), "{key}: {:?}", layers.warnings);
            let name = layers::env_name(key);
            let layers = Layers::new(&RawSettings::default(), env(&[(&name, "x")])).expect("env");
            assert!(layers.get(key).expect("get").is_some(), "{name}");
            assert!(layers.warnings.is_empty(), "{name}: {:?}", layers.warnings);
            // Secret values have no flag (a command line is visible to every user); their
            // `_file` form does.
            if ["admin_token", "admin_password", "smtp_password"].contains(key) {
                continue;
            }
            let flag = key.replace('_', "-");
            assert!(
                command
                    .get_arguments()
                    .any(|a| a.get_long() == Some(flag.as_str())),
                "--{flag}"
            );
        }
    }

    /// The packaged example (`/etc/mailtrail/mailtrail.toml`) has a commented line for
    /// every setting, and uncommented its examples are valid.
    #[test]
    fn the_example_file_names_every_setting_and_its_examples_are_valid() {
        let example = include_str!("../deploy/debian/mailtrail.toml");
        let mut uncommented = String::new();
        for key in layers::KEYS {
            let line = example
                .lines()
                .find(|l| l.starts_with(&format!("# {key} = ")))
                .unwrap_or_else(|| panic!("no `# {key} = ` line in the example"));
            // Secrets are placeholders, and so is the DKIM key (read at start-up, with
            // its selector); their files do not exist here.
            if !key.starts_with("admin_")
                && !key.starts_with("smtp_password")
                && !key.starts_with("dkim_")
            {
                uncommented.push_str(&line[2..]);
                uncommented.push('\n');
            }
        }
        let (_dir, raw) = with_file(&uncommented);
        let (config, warnings) =
            Config::resolve_from(&raw, env(&[]), false).expect("the examples resolve");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.retention, Duration::from_secs(400 * 86_400));
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8040)));
    }

    #[test]
    fn bounce_door_settings() {
        let config = resolve(
            &RawSettings::default(),
            &[
                ("MAILTRAIL_BOUNCE_LISTEN", "127.0.0.1:2525"),
                ("MAILTRAIL_FEEDBACK_ADDRESS", "FBL@Bounces.Example.com"),
                ("MAILTRAIL_BOUNCE_TLS_CERT", "/etc/mailtrail/bounce.crt"),
                ("MAILTRAIL_BOUNCE_TLS_KEY", "/etc/mailtrail/bounce.key"),
            ],
        )
        .expect("valid");
        assert_eq!(
            config.bounce_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 2525)))
        );
        assert_eq!(
            config.feedback_address.as_deref(),
            Some("fbl@bounces.example.com")
        );
        assert!(config.bounce_tls.is_some());
        let off = resolve(&RawSettings::default(), &[]).expect("defaults");
        assert!(off.bounce_listen.is_none() && off.bounce_tls.is_none());
        let e = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_BOUNCE_TLS_KEY", "/k.pem")],
        )
        .expect_err("a key without a certificate");
        assert_eq!(e.setting, "bounce_tls_cert", "{e}");
        for bad in ["nobody", "a@b", "<a@b.example>", "a b@c.example"] {
            let e = resolve(
                &RawSettings::default(),
                &[("MAILTRAIL_FEEDBACK_ADDRESS", bad)],
            )
            .expect_err(bad);
            assert_eq!(e.setting, "feedback_address", "{e}");
        }
        let e = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_BOUNCE_LISTEN", "port 25")],
        )
        .expect_err("not an address");
        assert_eq!(e.setting, "bounce_listen", "{e}");
    }

    #[test]
    fn secrets_from_files_with_a_minimum_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "0123456789abcdef0\n").expect("write");
        let path = token_file.display().to_string();
        let config = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_ADMIN_TOKEN_FILE", &path)],
        )
        .expect("token file");
        assert_eq!(config.admin_token.as_deref(), Some("0123456789abcdef0"));
        assert!(
            !format!("{config:?}").contains("0123456789abcdef0"),
            "Debug never shows a secret"
        );
        let e = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_ADMIN_TOKEN", "short")],
        )
        .expect_err("short");
        assert!(
            e.to_string()
                .starts_with("MAILTRAIL_ADMIN_TOKEN (environment): too short"),
            "{e}"
        );
        let e = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_ADMIN_PASSWORD", "fifteen chars!!")],
        )
        .expect_err("15 characters");
        assert!(e.to_string().contains("at least 16"), "{e}");
        let e = resolve(
            &RawSettings::default(),
            &[
                ("MAILTRAIL_ADMIN_TOKEN", "0123456789abcdef0"),
                ("MAILTRAIL_ADMIN_TOKEN_FILE", &path),
            ],
        )
        .expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
        let e = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_ADMIN_PASSWORD_FILE", "/nonexistent/pw")],
        )
        .expect_err("missing file");
        assert!(
            e.to_string()
                .starts_with("MAILTRAIL_ADMIN_PASSWORD_FILE (environment): cannot read"),
            "{e}"
        );
    }

    #[test]
    fn smtp_password_outside_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("smtp");
        std::fs::write(&file, "s3cret:with@signs\n").expect("write");
        let raw = RawSettings {
            smtp_password_file: Some(file),
            transport: Some("smtp://relay@mail.example.com:587".into()),
            ..RawSettings::default()
        };
        let config = resolve(&raw, &[]).expect("password file");
        match config.transport {
            TransportSpec::Smtp { credentials, .. } => assert_eq!(
                credentials,
                Some(("relay".into(), "s3cret:with@signs".into()))
            ),
            other => panic!("{other:?}"),
        }
        let config = resolve(
            &RawSettings::default(),
            &[
                (
                    "MAILTRAIL_TRANSPORT",
                    "smtp://relay:old@mail.example.com:587",
                ),
                ("MAILTRAIL_SMTP_PASSWORD", "new"),
            ],
        )
        .expect("password env");
        assert!(matches!(
            config.transport,
            TransportSpec::Smtp { credentials: Some((_, ref p)), .. } if p == "new"
        ));
        let e = resolve(
            &RawSettings::default(),
            &[("MAILTRAIL_SMTP_PASSWORD", "pw")],
        )
        .expect_err("file transport");
        assert!(
            e.to_string()
                .starts_with("MAILTRAIL_SMTP_PASSWORD (environment): needs a smarthost"),
            "{e}"
        );
    }

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
