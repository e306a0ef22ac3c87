//! Project and site settings (SPEC §1, §2): their wire shape, defaults and validation.
//!
//! Validation lives here so the API, the dashboard and the CLI reject the same inputs
//! with the same field names.

use super::{CopyAs, EmailAddress, EmailFormat, ProjectKey};
use crate::rules::RuleSettings;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The compiled-in template sets (SPEC §2 `template_set`).
pub const TEMPLATE_SETS: &[&str] = &["default", "plain"];

/// A settings value that failed validation, naming the field (SPEC §2: 422 naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The JSON field at fault, e.g. `allow_patterns[1]`.
    pub field: String,
    /// What is wrong with it, in a sentence.
    pub message: String,
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `copy_to`: an admin address that also receives registration emails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyTo {
    /// The admin's address (stored normalized).
    pub address: String,
    /// Which header carries it.
    #[serde(rename = "as")]
    pub copy_as: CopyAs,
}

/// A project's settings, exactly the fields of SPEC §2 with their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectSettings {
    /// "Customer invited" notification; off skips agent invitations.
    pub invite_notification: bool,
    /// Inverse of "Do not send account verification emails".
    pub verification_emails: bool,
    /// Anyone can raise requests and sign up.
    pub public_signup: bool,
    /// CC'd unknown addresses become customers (needs `public_signup`).
    pub share_with_anyone: bool,
    /// Notify customers created by automation or the REST API.
    pub notify_auto_created: bool,
    /// Regexes; when non-empty, auto-created customers must match one.
    pub allow_patterns: Vec<String>,
    /// Regexes; auto-created customers matching any are not created.
    pub deny_patterns: Vec<String>,
    /// Body format of emails.
    pub email_format: EmailFormat,
    /// Compiled-in template set.
    pub template_set: String,
    /// Also send registration emails to this admin address.
    pub copy_to: Option<CopyTo>,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            invite_notification: true,
            verification_emails: true,
            public_signup: false,
            share_with_anyone: false,
            notify_auto_created: false,
            allow_patterns: Vec::new(),
            deny_patterns: Vec::new(),
            email_format: EmailFormat::Multipart,
            template_set: "default".to_owned(),
            copy_to: None,
        }
    }
}

impl ProjectSettings {
    /// Checks every field and normalizes `copy_to.address`.
    pub fn validate(mut self) -> Result<Self, FieldError> {
        compile_all("allow_patterns", &self.allow_patterns)?;
        compile_all("deny_patterns", &self.deny_patterns)?;
        if !TEMPLATE_SETS.contains(&self.template_set.as_str()) {
            return Err(FieldError::new(
                "template_set",
                format!(
                    "unknown template set `{}`; known sets: {}",
                    crate::model::truncate(&self.template_set, 40),
                    TEMPLATE_SETS.join(", ")
                ),
            ));
        }
        if let Some(copy_to) = &mut self.copy_to {
            let address = EmailAddress::parse(&copy_to.address)
                .map_err(|e| FieldError::new("copy_to.address", e.to_string()))?;
            copy_to.address = address.as_str().to_owned();
        }
        Ok(self)
    }

    /// The settings the rules read, with patterns compiled.
    ///
    /// Patterns were validated when stored; one that no longer compiles is dropped
    /// rather than failing every decision of the project.
    pub fn rule_settings(&self) -> RuleSettings {
        let compile = |patterns: &[String]| -> Vec<Regex> {
            patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
        };
        RuleSettings {
            invite_notification: self.invite_notification,
            verification_emails: self.verification_emails,
            public_signup: self.public_signup,
            share_with_anyone: self.share_with_anyone,
            notify_auto_created: self.notify_auto_created,
            allow_patterns: compile(&self.allow_patterns),
            deny_patterns: compile(&self.deny_patterns),
        }
    }
}

fn compile_all(field: &str, patterns: &[String]) -> Result<(), FieldError> {
    if patterns.len() > 100 {
        return Err(FieldError::new(field, "at most 100 patterns"));
    }
    for (i, pattern) in patterns.iter().enumerate() {
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                FieldError::new(
                    format!("{field}[{i}]"),
                    format!("invalid regular expression: {}", first_line(&e.to_string())),
                )
            })?;
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_owned()
}

/// A project: key, name and settings (SPEC §2). Serialized flat, as `GET` answers it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Project {
    /// `^[A-Z][A-Z0-9_]{1,15}$`.
    #[schema(value_type = String)]
    pub key: ProjectKey,
    /// Display name, e.g. "IT Help".
    pub name: String,
    /// The settings, flattened into the same object.
    #[serde(flatten)]
    pub settings: ProjectSettings,
}

/// A partial update of a project (`PATCH`); `PUT` is the same with missing fields reset.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub invite_notification: Option<bool>,
    pub verification_emails: Option<bool>,
    pub public_signup: Option<bool>,
    pub share_with_anyone: Option<bool>,
    pub notify_auto_created: Option<bool>,
    pub allow_patterns: Option<Vec<String>>,
    pub deny_patterns: Option<Vec<String>>,
    pub email_format: Option<EmailFormat>,
    pub template_set: Option<String>,
    /// `null` clears it; absent leaves it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<CopyTo>)]
    pub copy_to: Option<Option<CopyTo>>,
}

impl ProjectPatch {
    /// Applies the patch onto `base` and validates the result.
    pub fn apply(
        self,
        name: &mut String,
        base: ProjectSettings,
    ) -> Result<ProjectSettings, FieldError> {
        let mut s = base;
        if let Some(n) = self.name {
            *name = validate_name(&n)?;
        }
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { s.$field = v; })* };
        }
        set!(
            invite_notification,
            verification_emails,
            public_signup,
            share_with_anyone,
            notify_auto_created,
            allow_patterns,
            deny_patterns,
            email_format,
            template_set,
            copy_to
        );
        s.validate()
    }
}

/// A project name: 1 to 100 characters, no control characters.
pub fn validate_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "a project name is 1 to 100 characters without line breaks or control characters",
        ));
    }
    Ok(name.to_owned())
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Site settings (SPEC §1).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Site {
    /// The outgoing mail switch.
    pub outgoing_mail: bool,
    /// The From mailbox, e.g. `Help Desk <help@example.com>`.
    pub from: String,
    /// Base URL of the customer portal, used for links in emails.
    pub portal_base_url: String,
    /// When `outgoing_mail` last changed (RFC 3339), so the site page can offer to
    /// resend what was skipped while it was off.
    pub outgoing_mail_changed_at: Option<String>,
}

/// A partial update of the site (`PATCH /api/v1/site`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    pub outgoing_mail: Option<bool>,
    pub from: Option<String>,
    pub portal_base_url: Option<String>,
}

impl SitePatch {
    /// Checks `from` (one mailbox) and `portal_base_url` (http or https URL).
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(from) = &self.from {
            super::ParsedMailbox::parse(from)
                .map_err(|e| FieldError::new("from", e.to_string()))?;
        }
        if let Some(url) = &self.portal_base_url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 2000
                && !url.chars().any(|c| c.is_control() || c.is_whitespace());
            if !ok {
                return Err(FieldError::new(
                    "portal_base_url",
                    "must be an http:// or https:// URL without spaces or line breaks",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let s = ProjectSettings::default();
        assert!(s.invite_notification && s.verification_emails);
        assert!(!s.public_signup && !s.share_with_anyone && !s.notify_auto_created);
        assert_eq!(s.template_set, "default");
        assert_eq!(s.email_format, EmailFormat::Multipart);
    }

    #[test]
    fn invalid_regex_names_the_field() {
        let s = ProjectSettings {
            deny_patterns: vec!["ok".into(), "(".into()],
            ..ProjectSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "deny_patterns[1]");
    }

    #[test]
    fn unknown_template_set_is_rejected() {
        let s = ProjectSettings {
            template_set: "fancy".into(),
            ..ProjectSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "template_set");
    }
}
