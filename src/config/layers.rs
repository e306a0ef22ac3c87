//! The three layers of settings, merged by figment: `mailtrail.toml` < `MAILTRAIL_*`
//! environment < flags (SPEC §7, §14). Every value keeps its provenance, so an error
//! names the layer it came from: `MAILTRAIL_LEASE (environment)`, `--lease (flag)` or
//! ``key `lease` in ./mailtrail.toml``.
//!
//! A setting is one entry of [`KEYS`]: its toml key; the environment name is
//! `MAILTRAIL_` + the key in capitals and the flag `--` + the key with dashes.

use super::ConfigError;
use crate::cli::RawSettings;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use std::path::{Path, PathBuf};

/// Every setting's toml key (SPEC §7, §10–§14). Add a setting here, as a field of
/// [`RawSettings`] (its flag) and of `Config`, and as one line of `Config::resolve`.
pub const KEYS: &[&str] = &[
    "listen",
    "db",
    "transport",
    "retry_schedule",
    "give_up_after",
    "mailbox_full_for",
    "lease",
    "metrics",
    "mx_port",
    "dns",
    "poll_interval",
    "smtp_ca",
    "concurrency",
    "log_format",
    "group_commit",
    "worker",
    "retention",
    "admin_token",
    "admin_token_file",
    "admin_password",
    "admin_password_file",
    "smtp_password",
    "smtp_password_file",
    "max_connections",
    "trusted_proxies",
    "bounce_listen",
    "bounce_tls_cert",
    "bounce_tls_key",
    "feedback_address",
    "dkim_key",
    "dkim_selector",
    "ehlo_name",
];

/// `MAILTRAIL_*` names read outside the settings: the file itself and the log filter.
const OTHER_ENV: &[&str] = &["MAILTRAIL_CONFIG", "MAILTRAIL_LOG"];

const FLAGS: &str = "flag";
const ENVIRONMENT: &str = "environment";
const FILE: &str = "file";

/// A setting's value as text, and where it came from.
#[derive(Debug)]
pub struct Found {
    /// The value; a toml array is joined with `,`.
    pub value: String,
    /// E.g. `MAILTRAIL_LEASE (environment)`.
    pub origin: String,
}

/// The merged layers of one process.
pub struct Layers {
    figment: Figment,
    file: Option<PathBuf>,
    /// Unknown environment names and toml keys, to log once logging is up.
    pub warnings: Vec<String>,
}

impl Layers {
    /// Merges the settings file (`--config`, `MAILTRAIL_CONFIG`, else `./mailtrail.toml`
    /// when present), the environment `env` and the flags `raw`.
    pub fn new(
        raw: &RawSettings,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layers, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut warnings = Vec::new();
        for (name, _) in &env {
            let known = name
                .strip_prefix("MAILTRAIL_")
                .is_some_and(|k| KEYS.contains(&k.to_lowercase().as_str()));
            if name.starts_with("MAILTRAIL_") && !known && !OTHER_ENV.contains(&name.as_str()) {
                warnings.push(format!("unknown environment variable {name} is ignored"));
            }
        }
        let file = config_file(raw, &env)?;
        let mut figment = Figment::new();
        if let Some(path) = &file {
            figment = figment.merge(TomlFile::read(path, &mut warnings)?);
        }
        let figment = figment.merge(Environment(env)).merge(Flags(raw));
        Ok(Layers {
            figment,
            file,
            warnings,
        })
    }

    /// The value of `key` from the highest layer that sets it, if any.
    pub fn get(&self, key: &str) -> Result<Option<Found>, ConfigError> {
        let value = match self.figment.find_value(key) {
            Ok(v) => v,
            Err(e) if matches!(e.kind, figment::error::Kind::MissingField(_)) => return Ok(None),
            Err(e) => {
                return Err(ConfigError {
                    setting: key.to_owned(),
                    source_name: "settings".into(),
                    message: e.to_string(),
                });
            }
        };
        let layer = self
            .figment
            .get_metadata(value.tag())
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        let origin = self.origin(key, &layer);
        let text = match text_of(&value) {
            Some(t) => t,
            None => {
                return Err(ConfigError {
                    setting: key.to_owned(),
                    source_name: origin,
                    message: "must be a string, a number or true/false".into(),
                });
            }
        };
        // An empty environment variable counts as unset, as shells make them easily.
        if text.is_empty() && layer == ENVIRONMENT {
            return Ok(None);
        }
        Ok(Some(Found {
            value: text,
            origin,
        }))
    }

    /// How an error names the place `key` was set in `layer`.
    pub fn origin(&self, key: &str, layer: &str) -> String {
        match layer {
            FLAGS => format!("--{} (flag)", key.replace('_', "-")),
            ENVIRONMENT => format!("{} (environment)", env_name(key)),
            FILE => format!(
                "key `{key}` in {} (file)",
                self.file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            other => other.to_owned(),
        }
    }
}

/// `MAILTRAIL_` + the key in capitals.
pub fn env_name(key: &str) -> String {
    format!("MAILTRAIL_{}", key.to_uppercase())
}

/// Which settings file to read: `--config`, `MAILTRAIL_CONFIG`, else `./mailtrail.toml`
/// when it exists. A named file that is missing is an error.
fn config_file(
    raw: &RawSettings,
    env: &[(String, String)],
) -> Result<Option<PathBuf>, ConfigError> {
    let from_env = env
        .iter()
        .find(|(k, v)| k == "MAILTRAIL_CONFIG" && !v.is_empty())
        .map(|(_, v)| PathBuf::from(v));
    let (path, source_name) = match (&raw.config, from_env) {
        (Some(p), _) => (p.clone(), "--config (flag)"),
        (None, Some(p)) => (p, "MAILTRAIL_CONFIG (environment)"),
        (None, None) if Path::new("mailtrail.toml").exists() => {
            return Ok(Some(PathBuf::from("mailtrail.toml")));
        }
        (None, None) => return Ok(None),
    };
    if !path.is_file() {
        return Err(ConfigError {
            setting: "config".into(),
            source_name: source_name.into(),
            message: format!("cannot read {}: no such file", path.display()),
        });
    }
    Ok(Some(path))
}

/// A setting's value as text: strings as they are, numbers and booleans printed, arrays
/// of those joined with `,` (so `retry_schedule = ["1m", "5m"]` works).
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string())),
        Value::Array(_, items) => items
            .iter()
            .map(text_of)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        Value::Empty(..) | Value::Dict(..) => None,
    }
}

/// The settings file, parsed by figment's toml provider after a check of its keys.
struct TomlFile(figment::providers::Data<figment::providers::Toml>);

impl TomlFile {
    fn read(path: &Path, warnings: &mut Vec<String>) -> Result<TomlFile, ConfigError> {
        use figment::providers::Format;
        let file_err = |message: String| ConfigError {
            setting: "config".into(),
            source_name: format!("{} (file)", path.display()),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_err(format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| file_err(format!("not valid TOML: {e}")))?;
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "unknown key `{key}` in {} is ignored (known: {})",
                    path.display(),
                    KEYS.join(", ")
                ));
            }
        }
        Ok(TomlFile(figment::providers::Toml::string(&text)))
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::named(FILE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

/// `MAILTRAIL_*` variables, as unparsed strings (a secret like `0123…` stays text).
struct Environment(Vec<(String, String)>);

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = self
            .0
            .iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix("MAILTRAIL_")?.to_lowercase();
                KEYS.contains(&key.as_str())
                    .then(|| (key, Value::from(value.clone())))
            })
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

/// The flags given on the command line (unset ones fall through).
struct Flags<'a>(&'a RawSettings);

impl Provider for Flags<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named(FLAGS)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = figment::providers::Serialized::defaults(self.0)
            .data()?
            .remove(&Profile::Default)
            .unwrap_or_default();
        dict.retain(|_, v| !matches!(v, Value::Empty(..)));
        if self.0.no_metrics {
            dict.insert("metrics".into(), Value::from(false));
        }
        Ok(Profile::Default.collect(dict))
    }
}
