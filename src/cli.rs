//! The command line (SPEC §7), as clap definitions. Settings are read raw here and
//! checked in `config`, so a bad value is reported with its setting's name.

use crate::model::Role;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// mailtrail: every customer email decision recorded, delivered, and explained.
#[derive(Debug, Parser)]
#[command(name = "mailtrail", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub settings: RawSettings,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings as given by flags; `None` falls through to `MAILTRAIL_*`, then
/// `mailtrail.toml`, then the default (`config::layers` merges them). Each field's name
/// is its toml key; its environment name is `MAILTRAIL_` + the name in capitals.
/// Secret values have no flag (a command line is visible to every local user): give
/// them through the environment, the toml file, or a `*-file` flag.
#[derive(Debug, Args, Default, Clone, serde::Serialize)]
pub struct RawSettings {
    /// Address to listen on [default: 127.0.0.1:8040]
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// SQLite database file or postgres:// URL [default: ./data/mailtrail.db]
    #[arg(long, global = true)]
    pub db: Option<String>,
    /// file:DIR, smtp://host:port, smtps://host:465 or direct [default: file:./data/outgoing]
    #[arg(long, global = true)]
    pub transport: Option<String>,
    /// Configuration file (also MAILTRAIL_CONFIG) [default: ./mailtrail.toml if present]
    #[arg(long, global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Delays between delivery tries [default: 1m,5m,15m,1h,3h,6h]
    #[arg(long, global = true)]
    pub retry_schedule: Option<String>,
    /// Stop retrying after this long [default: 24h]
    #[arg(long, global = true)]
    pub give_up_after: Option<String>,
    /// How long a full mailbox (5.2.2) stays suppressed [default: 7d]
    #[arg(long, global = true)]
    pub mailbox_full_for: Option<String>,
    /// How long a delivery lease lasts [default: 5m]
    #[arg(long, global = true)]
    pub lease: Option<String>,
    /// Serve /metrics: true or false [default: true]
    #[arg(long, global = true)]
    pub metrics: Option<String>,
    /// Turn off /metrics (same as --metrics false)
    #[arg(long, global = true)]
    #[serde(skip)]
    pub no_metrics: bool,
    /// SMTP port of MX hosts for direct delivery [default: 25]
    #[arg(long, global = true)]
    pub mx_port: Option<String>,
    /// DNS server ip:port for direct delivery [default: the system resolver]
    #[arg(long, global = true)]
    pub dns: Option<String>,
    /// How often an idle worker looks for due messages [default: 1s]
    #[arg(long, global = true)]
    pub poll_interval: Option<String>,
    /// Extra CA certificate (PEM) trusted for the smarthost's TLS
    #[arg(long, global = true)]
    pub smtp_ca: Option<PathBuf>,
    /// Concurrent deliveries per worker, 1 to 256 [default: 8]
    #[arg(long, global = true)]
    pub concurrency: Option<String>,
    /// Log format [default: text]
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Group concurrent writes into one transaction: true or false [default: true]
    #[arg(long, global = true)]
    pub group_commit: Option<String>,
    /// Run the delivery worker inside `serve`: true or false [default: true]
    #[arg(long, global = true)]
    pub worker: Option<String>,
    /// Purge decisions and attempts older than this (each address's newest decision
    /// per project is kept) [default: 400d]
    #[arg(long, global = true)]
    pub retention: Option<String>,
    /// File holding the admin API token (instead of MAILTRAIL_ADMIN_TOKEN)
    #[arg(long, global = true)]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the first admin's password (instead of MAILTRAIL_ADMIN_PASSWORD)
    #[arg(long, global = true)]
    pub admin_password_file: Option<PathBuf>,
    /// File holding the smarthost password (instead of MAILTRAIL_SMTP_PASSWORD or the
    /// transport URL)
    #[arg(long, global = true)]
    pub smtp_password_file: Option<PathBuf>,
    /// Open HTTP connections at most [default: 1024]
    #[arg(long, global = true)]
    pub max_connections: Option<String>,
    /// Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client [default: none]
    #[arg(long, global = true)]
    pub trusted_proxies: Option<String>,
    /// Run the SMTP bounce door on this address, e.g. 0.0.0.0:25 [default: off]
    #[arg(long, global = true)]
    pub bounce_listen: Option<String>,
    /// Certificate chain (PEM) for the bounce door's STARTTLS (with --bounce-tls-key)
    #[arg(long, global = true)]
    pub bounce_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for the bounce door's STARTTLS (with --bounce-tls-cert)
    #[arg(long, global = true)]
    pub bounce_tls_key: Option<PathBuf>,
    /// Complaint (feedback loop) address the bounce door accepts besides VERP addresses
    #[arg(long, global = true)]
    pub feedback_address: Option<String>,
    /// DKIM private key file (RSA PEM or Ed25519 base64 seed; `mailtrail dkim keygen`
    /// writes one): every outgoing message is signed [default: none, unsigned]
    #[arg(long, global = true)]
    pub dkim_key: Option<PathBuf>,
    /// DKIM selector: the key's DNS name is SELECTOR._domainkey.<From domain>
    #[arg(long, global = true)]
    pub dkim_selector: Option<String>,
    /// Name given in EHLO/HELO [default: the host name]
    #[arg(long, global = true)]
    pub ehlo_name: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, the dashboard and the delivery worker.
    Serve {
        /// Seed demo projects, customers and decisions that cover every reason code
        /// (into ./data/demo.db unless --db is given).
        #[arg(long)]
        demo: bool,
    },
    /// Run only the delivery worker (several may share one database).
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Work on whole databases (SPEC §10).
    Db {
        #[command(subcommand)]
        action: DbCommand,
    },
    /// Explain why an address got (or did not get) an email. Exits 0 when the newest
    /// email was sent or is on its way, 3 when the address would get no email.
    Why {
        /// The address (display-name form accepted).
        email: String,
        /// Also preview a resend and an agent add for this project.
        #[arg(long)]
        project: Option<String>,
        /// Print the same JSON as the API.
        #[arg(long)]
        json: bool,
    },
    /// Resend the invitation of a project member. Exits 0 when queued, 3 when blocked
    /// or not a member.
    Resend {
        /// Project key.
        project: String,
        /// Customer address.
        email: String,
    },
    /// Look at or change the suppression list.
    Suppressions {
        #[command(subcommand)]
        action: SuppressionsCommand,
    },
    /// Manage dashboard users.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// DKIM keys (SPEC §12).
    Dkim {
        #[command(subcommand)]
        action: DkimCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Measure ingest, why look-ups, delivery, pages and memory (SPEC §8).
    Bench {
        /// Which part.
        #[arg(value_enum, default_value_t = BenchPart::All)]
        what: BenchPart,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Smaller sizes, for a quick look (the figures are not the targets' sizes).
        #[arg(long)]
        quick: bool,
        /// `delivery` only: also deliver with this many `mailtrail worker` processes
        /// sharing one store, and count at the sink whether any message went twice.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
}

/// `mailtrail db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a whole store into an empty one, SQLite to PostgreSQL or back; prints the
    /// row count of every table on both sides and exits 0 only when they match.
    Copy {
        /// The store to read: a SQLite path or a postgres:// URL.
        src: String,
        /// The empty store to fill: a SQLite path or a postgres:// URL.
        dst: String,
    },
}

/// `mailtrail suppressions …`
#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// List suppressions, newest first.
    List {
        /// Only addresses containing this text.
        #[arg(long)]
        q: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Suppress an address by hand.
    Add {
        email: String,
        #[arg(long)]
        note: String,
    },
    /// Unsuppress an address (audited). Exits 4 when the address is not suppressed
    /// (nothing is changed).
    Remove {
        email: String,
        #[arg(long)]
        note: String,
    },
}

/// `mailtrail user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add (or update) a user; the password is read from standard input when it is not
    /// a terminal, else asked for without echo.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List users: one a line, name then role.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove a user and end their sessions (not the last admin).
    Remove { name: String },
    /// Set a user's password (asked for without echo, or read from standard input) and
    /// end their sessions.
    Passwd { name: String },
}

/// `mailtrail dkim …`
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Write a new private key (mode 0600) and print the DNS TXT record to publish.
    Keygen {
        /// The selector: the record goes at SELECTOR._domainkey.<your From domain>.
        #[arg(long)]
        selector: String,
        /// rsa (2048 bits, understood by every verifier) or ed25519 (RFC 8463).
        #[arg(long, value_enum, default_value_t = crate::delivery::dkim::Algorithm::Rsa)]
        algorithm: crate::delivery::dkim::Algorithm,
        /// Where to write the private key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The signing domain (the site's From domain), to print the record's full name.
        #[arg(long)]
        domain: Option<String>,
    },
}

/// `mailtrail token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it alone on its line.
    Create {
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens: one a line, ID first, then name and role; never the secret.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Revoke a token by its ID (from `token list`).
    Revoke { id: String },
}

/// How logs are written (`--log-format`; the environment and the file give the same
/// names, checked by `config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// The parts of `mailtrail bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPart {
    /// Ingest, memory, why look-ups, pages and retention.
    All,
    /// Ingest throughput (and memory).
    Ingest,
    /// Why look-up latency.
    Why,
    /// Memory idle and under ingest.
    Memory,
    /// Dashboard pages.
    Pages,
    /// Delivery through a local SMTP sink.
    Delivery,
    /// Ingest while a retention purge runs.
    Retention,
    /// Bounce reports through the SMTP bounce door against the API.
    Bounces,
    /// Webhook events delivered to a local receiver, against its raw rate.
    Webhooks,
}

impl BenchPart {
    /// The part's name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// How a listing is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One item a line, fields separated by tabs.
    Text,
    /// One JSON array.
    Json,
}

/// Roles are checked by clap (`--role admin|support|viewer`), with the wire names.
impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        Role::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}
