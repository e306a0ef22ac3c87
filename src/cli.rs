//! The command line (SPEC §7), as clap definitions. Settings are read raw here and
//! checked in `config`, so a bad value is reported with its setting's name.

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

/// Settings as given by flags or environment; `None` falls through to
/// `mailtrail.toml`, then the default.
#[derive(Debug, Args, Default, Clone)]
pub struct RawSettings {
    /// Address to listen on [default: 127.0.0.1:8040]
    #[arg(long, env = "MAILTRAIL_LISTEN", global = true)]
    pub listen: Option<String>,
    /// SQLite database file [default: ./data/mailtrail.db]
    #[arg(long, env = "MAILTRAIL_DB", global = true)]
    pub db: Option<PathBuf>,
    /// file:DIR, smtp://host:port, smtps://host:465 or direct [default: file:./data/outgoing]
    #[arg(long, env = "MAILTRAIL_TRANSPORT", global = true)]
    pub transport: Option<String>,
    /// Configuration file [default: ./mailtrail.toml if present]
    #[arg(long, env = "MAILTRAIL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Delays between delivery tries [default: 1m,5m,15m,1h,3h,6h]
    #[arg(long, env = "MAILTRAIL_RETRY_SCHEDULE", global = true)]
    pub retry_schedule: Option<String>,
    /// Stop retrying after this long [default: 24h]
    #[arg(long, env = "MAILTRAIL_GIVE_UP_AFTER", global = true)]
    pub give_up_after: Option<String>,
    /// How long a delivery lease lasts [default: 5m]
    #[arg(long, env = "MAILTRAIL_LEASE", global = true)]
    pub lease: Option<String>,
    /// Turn off /metrics
    #[arg(long, global = true)]
    pub no_metrics: bool,
    /// Log format: text or json [default: text]
    #[arg(long, env = "MAILTRAIL_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    // --- h1 (issue 10, SPEC §14) ---
    /// Open HTTP connections at most [default: 1024]
    #[arg(long, env = "MAILTRAIL_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<String>,
    /// Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client [default: none]
    #[arg(long, env = "MAILTRAIL_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    // --- end h1
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
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Measure ingest, why look-ups, delivery, pages and memory (SPEC §8).
    Bench {
        /// Which part: all, ingest, why, memory, delivery, pages.
        #[arg(default_value = "all")]
        what: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Smaller sizes, for a quick look (the figures are not the targets' sizes).
        #[arg(long)]
        quick: bool,
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
    /// a terminal, else asked for.
    Add {
        name: String,
        #[arg(long)]
        role: String,
    },
}

/// `mailtrail token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it alone on its line.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
}
