//! What each subcommand does. `main` parses the command line, calls [`run`], and turns
//! the result into an exit code: 0 ok, 1 runtime failure, 2 usage or config error,
//! 3 "no email" for `why` and `resend` (SPEC §7).

use crate::app::App;
use crate::cli::{Cli, Command, DbCommand, Format, SuppressionsCommand, TokenCommand, UserCommand};
use crate::config::{Config, ConfigError};
use crate::http::AppState;
use crate::model::{EmailAddress, ProjectKey, Role, Verdict};
use crate::store::{DbLocation, ResendOutcome, Store, StoreError, StoreOptions, SuppressionFilter};
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad usage or configuration: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Runtime(#[from] anyhow::Error),
}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Usage(e.to_string())
    }
}

impl RunError {
    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Usage(_) => ExitCode::from(2),
            RunError::Runtime(_) => ExitCode::from(1),
        }
    }
}

/// `println!` that ignores a closed pipe (`mailtrail why x | head` must not panic).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr (`eprintln!` would panic).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit code 3: the address would get no email.
pub const NO_EMAIL: u8 = 3;

/// Exit code 4: there was nothing to change (`suppressions remove` of an address that
/// is not suppressed).
pub const NOTHING_TO_CHANGE: u8 = 4;

/// Runs one command.
pub async fn run(cli: Cli) -> Result<ExitCode, RunError> {
    // Making a key needs no settings (and must work while a broken key is configured).
    if let Command::Dkim {
        action:
            crate::cli::DkimCommand::Keygen {
                selector,
                algorithm,
                out,
                domain,
            },
    } = &cli.command
    {
        return dkim_keygen(selector, *algorithm, out, domain.as_deref());
    }
    let demo = matches!(cli.command, Command::Serve { demo: true });
    let (config, warnings) = Config::resolve(&cli.settings, demo)?;
    init_logging(config.log_json);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Worker => worker(config).await,
        Command::Migrate => {
            let db = config.db.clone();
            let (before, after) = tokio::task::spawn_blocking(move || Store::migrate_only(&db))
                .await
                .map_err(anyhow::Error::from)?
                .map_err(|e| open_error(&config.db, e))?;
            outln!("schema version {after} (was {before}) in {}", config.db);
            Ok(ExitCode::SUCCESS)
        }
        Command::Why {
            email,
            project,
            json,
        } => why(config, email, project, json).await,
        Command::Resend { project, email } => resend(config, project, email).await,
        Command::Suppressions { action } => suppressions(config, action).await,
        Command::User { action } => user(config, action).await,
        Command::Token { action } => token(config, action).await,
        Command::Dkim { .. } => Ok(ExitCode::SUCCESS),
        Command::Bench {
            what,
            json,
            quick,
            workers,
        } => crate::bench::run(config, &what.name(), json, quick, workers).await,
        Command::Db {
            action: DbCommand::Copy { src, dst },
        } => db_copy(src, dst).await,
    }
}

/// `mailtrail dkim keygen`: writes the key (mode 0600, never over an existing file) and
/// prints the TXT record to publish.
fn dkim_keygen(
    selector: &str,
    algorithm: crate::delivery::dkim::Algorithm,
    out: &std::path::Path,
    domain: Option<&str>,
) -> Result<ExitCode, RunError> {
    use crate::delivery::dkim;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    dkim::check_selector(selector).map_err(|m| RunError::Usage(format!("--selector: {m}")))?;
    if let Some(d) = domain {
        crate::model::EmailAddress::parse(&format!("postmaster@{d}"))
            .map_err(|_| RunError::Usage(format!("--domain: `{d}` is not a domain name")))?;
    }
    let key = dkim::generate(algorithm).map_err(|m| RunError::Runtime(anyhow::anyhow!(m)))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| RunError::Usage(format!("--out {}: {e}", out.display())))?;
    file.write_all(key.private.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| RunError::Runtime(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    let record = dkim::txt_record(selector, domain.unwrap_or(""), algorithm, &key.public);
    // Without --domain the name is relative (`sel._domainkey`), as a zone file of the
    // From domain takes it.
    let record = if domain.is_none() {
        record.replacen("._domainkey.. IN", "._domainkey IN", 1)
    } else {
        record
    };
    eprintln!(
        "wrote the {} private key to {} (mode 0600); publish this TXT record in the DNS zone of your From domain:",
        algorithm.dns_name(),
        out.display()
    );
    outln!("{record}");
    Ok(ExitCode::SUCCESS)
}

/// A store that cannot be opened at start-up: a wrong URL, password or unreachable
/// server is a configuration error naming `db` (exit 2); anything else a failure.
fn open_error(db: &DbLocation, e: StoreError) -> RunError {
    match e {
        StoreError::Invalid { message, .. } => RunError::Usage(format!("db ({db}): {message}")),
        StoreError::Unavailable(message) => {
            RunError::Usage(format!("db ({db}): cannot reach the database: {message}"))
        }
        e => RunError::Runtime(anyhow::anyhow!("cannot open {db}: {e}")),
    }
}

/// `mailtrail db copy SRC DST`: prints every table's row count on both sides.
async fn db_copy(src: String, dst: String) -> Result<ExitCode, RunError> {
    let src = DbLocation::parse(&src).map_err(|m| RunError::Usage(format!("SRC: {m}")))?;
    let dst = DbLocation::parse(&dst).map_err(|m| RunError::Usage(format!("DST: {m}")))?;
    let (from, to) = (src.clone(), dst.clone());
    let report = tokio::task::spawn_blocking(move || crate::store::copy(&from, &to))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| match e {
            StoreError::Conflict(m) => RunError::Usage(format!("DST ({dst}): {m}")),
            e => open_error(&src, e),
        })?;
    outln!(
        "{:<20} {:>12} {:>12}",
        "table",
        src.engine().as_str(),
        dst.engine().as_str()
    );
    for (table, (a, b)) in &report.tables {
        let mark = if a == b { "" } else { "  MISMATCH" };
        outln!("{table:<20} {a:>12} {b:>12}{mark}");
    }
    if report.matches() {
        outln!("copied: every table has the same row count on both sides");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(RunError::Runtime(anyhow::anyhow!(
            "the row counts differ; the destination is not a faithful copy"
        )))
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILTRAIL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr (`mailtrail serve 2>&1 | head -3`) must not stop the service:
        // tracing-subscriber would report the failed write with `eprintln!`, which
        // panics on that same closed stderr, inside whichever task logged.
        .log_internal_errors(false)
        // Colour codes only on a terminal: a log file or collector gets plain lines.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The application over the configured database, for a command that acts as a front
/// door of its own (`why`, `resend`).
async fn open_app(config: Config) -> Result<App, RunError> {
    let store = open(&config).await?;
    Ok(App::new(store, config).map_err(anyhow::Error::from)?)
}

async fn open(config: &Config) -> Result<Store, RunError> {
    if let DbLocation::Sqlite(path) = &config.db {
        create_private(path).map_err(|e| {
            RunError::Runtime(anyhow::anyhow!("cannot create {}: {e}", path.display()))
        })?;
    }
    let options = StoreOptions {
        max_batch: if config.group_commit {
            StoreOptions::default().max_batch
        } else {
            1
        },
        // PostgreSQL answers each statement over the network, so one writer would be
        // bound by round trips: several writers each group-commit their own batches.
        // Without group commit, each request commits on a connection of a pool as
        // large as the benchmark's client count (SPEC §8's baseline). SQLite always
        // has one writer.
        writers: if config.group_commit {
            StoreOptions::default().writers
        } else {
            64
        },
        ..StoreOptions::default()
    };
    Store::connect(&config.db, options)
        .await
        .map_err(|e| open_error(&config.db, e))
}

fn parse_address(input: &str) -> Result<EmailAddress, RunError> {
    EmailAddress::parse(input)
        .map_err(|e| RunError::Usage(format!("`{input}` is not a valid address: {e}")))
}

// --- h1 (issue 10 finding 6, issue 11 §9) ---
/// Creates the database's directory (mode 0700) and an empty database file (mode 0600)
/// when they do not exist yet, so nobody else on the machine can read them (SPEC §14).
/// SQLite gives its `-wal` and `-shm` files the database file's mode. Existing files
/// and directories keep theirs.
fn create_private(db: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        if !db.exists() {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(db)
            {
                Ok(_) => {}
                // Another process created it meanwhile: fine.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

/// A bad `MAILTRAIL_SMTP_CA` is a configuration error at start-up (exit 2 naming the
/// setting), not a server that answers but never sends.
fn check_smtp_ca(config: &Config) -> Result<(), RunError> {
    let Some(path) = &config.smtp_ca else {
        return Ok(());
    };
    let bad = |why: String| {
        RunError::Usage(format!(
            "invalid setting smtp_ca (from MAILTRAIL_SMTP_CA): {why}"
        ))
    };
    let pem =
        std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let has_certificate = String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----");
    if !has_certificate || lettre::transport::smtp::client::Certificate::from_pem(&pem).is_err() {
        return Err(bad(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(())
}
// --- end h1

async fn serve(config: Config, demo: bool) -> Result<ExitCode, RunError> {
    check_smtp_ca(&config)?;
    let store = open(&config).await?;
    ensure_first_admin(&store, &config, demo).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            RunError::Runtime(anyhow::anyhow!("cannot listen on {}: {e}", config.listen))
        })?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    let app = App::new(store, config).map_err(anyhow::Error::from)?;
    let mut state = AppState::new(app.clone());
    if let crate::delivery::TransportSpec::File(dir) = &state.config.transport
        && !demo
    {
        tracing::warn!(dir = %dir.display(), "the transport is file: emails are written to files in this directory, not sent; set --transport smtp://… or direct to send them");
        state.file_transport_banner = true;
    }
    if demo {
        crate::demo::seed(&app).await.map_err(RunError::Runtime)?;
    }
    outln!("mailtrail: listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, db = %state.config.db, transport = %state.config.transport, "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if !state.config.worker {
        // No transport in this process: readiness does not wait for one.
        state.readiness.transport(Ok(()));
    }
    let worker = state
        .config
        .worker
        .then(|| crate::delivery::spawn_worker(app.clone(), stop_rx.clone()));
    let bounce_door = crate::bounce_door::start(&app, stop_rx.clone())
        .await
        .map_err(bounce_door_error)?;
    let retention = crate::retention::spawn(state.store.clone(), state.config.retention, stop_rx);
    crate::http::serve(listener, state, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await
    .map_err(anyhow::Error::from)?;
    if let Some(worker) = worker {
        worker.await.map_err(anyhow::Error::from)?;
    }
    retention.await.map_err(anyhow::Error::from)?;
    if let Some(door) = bounce_door {
        door.await.map_err(anyhow::Error::from)?;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn worker(config: Config) -> Result<ExitCode, RunError> {
    check_smtp_ca(&config)?;
    let store = open(&config).await?;
    let app = App::new(store, config).map_err(anyhow::Error::from)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bounce_door = crate::bounce_door::start(&app, stop_rx.clone())
        .await
        .map_err(bounce_door_error)?;
    let worker = crate::delivery::spawn_worker(app, stop_rx);
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    worker.await.map_err(anyhow::Error::from)?;
    if let Some(door) = bounce_door {
        door.await.map_err(anyhow::Error::from)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A bounce door that cannot start: bad TLS files are a configuration error (exit 2,
/// naming the setting); an address that cannot be bound is a runtime error.
fn bounce_door_error(e: anyhow::Error) -> RunError {
    let text = e.to_string();
    if text.starts_with("bounce_tls") {
        RunError::Usage(format!("invalid setting {text}"))
    } else {
        RunError::Runtime(e)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// On first start with no users, creates `admin` (SPEC §7). The demo adds `support`
/// and `viewer` too, all with the password `demo` unless one is set.
async fn ensure_first_admin(store: &Store, config: &Config, demo: bool) -> Result<(), RunError> {
    if store.user_count().await.map_err(anyhow::Error::from)? > 0 {
        return Ok(());
    }
    let (password, printed) = match (&config.admin_password, demo) {
        (Some(p), _) => (String::from(&**p), false),
        (None, true) => ("demo".to_owned(), true),
        (None, false) => (crate::store::new_secret("")[..20].to_owned(), true),
    };
    let hash = crate::password::hash_blocking(password.clone())
        .await
        .map_err(|e| RunError::Runtime(anyhow::anyhow!(e)))?;
    store
        .put_user("admin".into(), Role::Admin, hash, "first-start".into())
        .await
        .map_err(anyhow::Error::from)?;
    if demo {
        for (name, role) in [("support", Role::Support), ("viewer", Role::Viewer)] {
            let hash = crate::password::hash_blocking(password.clone())
                .await
                .map_err(|e| RunError::Runtime(anyhow::anyhow!(e)))?;
            store
                .put_user(name.into(), role, hash, "first-start".into())
                .await
                .map_err(anyhow::Error::from)?;
        }
    }
    if printed {
        outln!("mailtrail: created user `admin` with password {password} (shown once)");
    } else {
        outln!("mailtrail: created user `admin` with the password from MAILTRAIL_ADMIN_PASSWORD");
    }
    Ok(())
}

async fn why(
    config: Config,
    email: String,
    project: Option<String>,
    json: bool,
) -> Result<ExitCode, RunError> {
    // A look-up never creates a database: an empty new one would answer "no record"
    // for everything, which is not the truth about the server's database.
    if let DbLocation::Sqlite(path) = &config.db
        && !path.exists()
    {
        return Err(RunError::Runtime(anyhow::anyhow!(
            "there is no database at {}; name the server's database with --db or MAILTRAIL_DB (`serve --demo` uses ./data/demo.db)",
            path.display()
        )));
    }
    let db = config.db.to_string();
    let project = project
        .map(|p| ProjectKey::parse(&p).map_err(RunError::Usage))
        .transpose()?;
    let app = open_app(config).await?;
    let answer = app
        .why(&email, project)
        .await
        .map_err(|e| RunError::Runtime(anyhow::anyhow!("{e}")))?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&answer).map_err(anyhow::Error::from)?
        );
    } else {
        let _ = std::io::stdout().write_all(crate::why::render_text(&answer).as_bytes());
    }
    if answer.verdict.code == "no_record" {
        eprintln!(
            "mailtrail: read the database {db}, which has nothing about this address; if the server uses another one, name it with --db or MAILTRAIL_DB (`serve --demo` uses ./data/demo.db)"
        );
    }
    Ok(if answer.is_on_its_way() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NO_EMAIL)
    })
}

async fn resend(config: Config, project: String, email: String) -> Result<ExitCode, RunError> {
    let project = ProjectKey::parse(&project).map_err(RunError::Usage)?;
    let address = parse_address(&email)?;
    let app = open_app(config).await?;
    match app.resend(project.clone(), address.clone(), None).await {
        Ok(ResendOutcome::NotMember) => {
            errln!("{address} is not a customer of {project}");
            Ok(ExitCode::from(NO_EMAIL))
        }
        Ok(ResendOutcome::Recorded(outcome)) => {
            outln!("{}", outcome.message);
            outln!("decision {}", outcome.decision_id);
            Ok(if outcome.decision == Verdict::Send {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(NO_EMAIL)
            })
        }
        Err(crate::store::StoreError::NotFound(what)) => {
            errln!("{what} {project} not found");
            Ok(ExitCode::from(NO_EMAIL))
        }
        Err(e) => Err(RunError::Runtime(e.into())),
    }
}

async fn suppressions(config: Config, action: SuppressionsCommand) -> Result<ExitCode, RunError> {
    let app = open_app(config).await?;
    let store = &app.store;
    match action {
        SuppressionsCommand::List { q, json, limit } => {
            let page = store
                .suppressions(SuppressionFilter {
                    q,
                    limit: limit.clamp(1, 100_000),
                    after: None,
                })
                .await
                .map_err(anyhow::Error::from)?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&page.items).map_err(anyhow::Error::from)?
                );
            } else if page.items.is_empty() {
                outln!("no suppressions");
            } else {
                for s in &page.items {
                    let reply = crate::why::smtp_line(
                        s.smtp_code,
                        s.enhanced_code.as_deref(),
                        s.response.as_deref(),
                    );
                    outln!(
                        "{:<40} {:<13} {}  {}",
                        s.email,
                        s.reason.as_str(),
                        s.suppressed_at,
                        if reply.is_empty() {
                            s.note.clone().unwrap_or_default()
                        } else {
                            reply
                        }
                    );
                }
            }
        }
        SuppressionsCommand::Add { email, note } => {
            let address = parse_address(&email)?;
            match app
                .suppress_by_hand(address.clone(), Some(note), "cli".into())
                .await
            {
                Ok(_) => outln!("suppressed {address}"),
                Err(crate::store::StoreError::Conflict(m)) => outln!("{m}"),
                Err(e) => return Err(RunError::Runtime(e.into())),
            }
        }
        SuppressionsCommand::Remove { email, note } => {
            let address = parse_address(&email)?;
            if note.trim().is_empty() {
                return Err(RunError::Usage("--note must say why".into()));
            }
            match app.unsuppress(address.clone(), note, "cli".into()).await {
                Ok(_) => outln!("unsuppressed {address}"),
                Err(crate::store::StoreError::NotFound(_)) => {
                    errln!("{address} is not suppressed; nothing was changed");
                    return Ok(ExitCode::from(NOTHING_TO_CHANGE));
                }
                Err(e) => return Err(RunError::Runtime(e.into())),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user(config: Config, action: UserCommand) -> Result<ExitCode, RunError> {
    match action {
        UserCommand::Add { name, role } => user_add(config, name, role).await,
        UserCommand::List { format } => {
            let users = open(&config)
                .await?
                .list_users()
                .await
                .map_err(anyhow::Error::from)?;
            match format {
                Format::Json => outln!("{}", serde_json::json!(users)),
                Format::Text => {
                    for u in users {
                        outln!("{}\t{}", u.name.escape_debug(), u.role);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Remove { name } => {
            open(&config)
                .await?
                .remove_user(name.clone(), "cli".into())
                .await
                .map_err(not_found_is_usage)?;
            outln!("user {name} removed");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Passwd { name } => {
            let store = open(&config).await?;
            if store
                .user(name.clone())
                .await
                .map_err(anyhow::Error::from)?
                .is_none()
            {
                return Err(RunError::Usage(format!("no user named `{name}`")));
            }
            let hash = password_hash(&name).await?;
            store
                .set_password(name.clone(), hash, "cli".into())
                .await
                .map_err(not_found_is_usage)?;
            outln!("password of {name} changed; their sessions ended");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn token(config: Config, action: TokenCommand) -> Result<ExitCode, RunError> {
    let store = open(&config).await?;
    match action {
        TokenCommand::Create { role, name } => {
            let token = store
                .create_token(role, name, "cli".into())
                .await
                .map_err(anyhow::Error::from)?;
            outln!("{token}");
        }
        TokenCommand::List { format } => {
            let tokens = store.list_tokens().await.map_err(anyhow::Error::from)?;
            match format {
                Format::Json => outln!("{}", serde_json::json!(tokens)),
                Format::Text => {
                    for t in tokens {
                        // A name is free text: a tab or newline in it must not
                        // break the one-token-a-line format.
                        let name = t
                            .name
                            .as_deref()
                            .map_or("-".into(), |n| n.escape_debug().to_string());
                        outln!("{}\t{name}\t{}", t.id, t.role);
                    }
                }
            }
        }
        TokenCommand::Revoke { id } => {
            store
                .revoke_token(id.clone(), "cli".into())
                .await
                .map_err(not_found_is_usage)?;
            outln!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An unknown user or token, or a refused change, is the caller's mistake: exit 2.
fn not_found_is_usage(e: crate::store::StoreError) -> RunError {
    match e {
        crate::store::StoreError::NotFound(_) | crate::store::StoreError::Conflict(_) => {
            RunError::Usage(e.to_string())
        }
        other => RunError::Runtime(other.into()),
    }
}

/// Asks for a password without echo on a terminal (twice, to catch a typo), or reads
/// it from standard input; checks its length and hashes it.
async fn password_hash(name: &str) -> Result<String, RunError> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .map_err(anyhow::Error::from)?;
        let again = rpassword::prompt_password("again: ").map_err(anyhow::Error::from)?;
        if first != again {
            return Err(RunError::Usage("the two passwords differ".into()));
        }
        first
    } else {
        let mut all = String::new();
        std::io::stdin()
            .read_to_string(&mut all)
            .map_err(anyhow::Error::from)?;
        all
    };
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < 8 {
        return Err(RunError::Usage(
            "the password must be at least 8 characters".into(),
        ));
    }
    crate::password::hash_blocking(password)
        .await
        .map_err(|e| RunError::Runtime(anyhow::anyhow!(e)))
}

async fn user_add(config: Config, name: String, role: Role) -> Result<ExitCode, RunError> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !valid_name {
        return Err(RunError::Usage(format!(
            "invalid user name `{name}`: letters, digits and . _ - @ only"
        )));
    }
    let hash = password_hash(&name).await?;
    let store = open(&config).await?;
    store
        .put_user(name.clone(), role, hash, "cli".into())
        .await
        .map_err(anyhow::Error::from)?;
    outln!("user {name} ({role}) saved");
    Ok(ExitCode::SUCCESS)
}
