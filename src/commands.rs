//! What each subcommand does. `main` parses the command line, calls [`run`], and turns
//! the result into an exit code: 0 ok, 1 runtime failure, 2 usage or config error,
//! 3 "no email" for `why` and `resend` (SPEC §7).

use crate::cli::{Cli, Command, SuppressionsCommand, TokenCommand, UserCommand};
use crate::config::{Config, ConfigError};
use crate::http::AppState;
use crate::model::{EmailAddress, ProjectKey, Role, SuppressionReason, Verdict};
use crate::store::{NewSuppression, ResendOutcome, Store, StoreOptions, SuppressionFilter};
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

/// Exit code 3: the address would get no email.
pub const NO_EMAIL: u8 = 3;

/// Runs one command.
pub async fn run(cli: Cli) -> Result<ExitCode, RunError> {
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
            let (before, after) = Store::migrate_only(&config.db).map_err(anyhow::Error::from)?;
            outln!(
                "schema version {after} (was {before}) in {}",
                config.db.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Why {
            email,
            project,
            json,
        } => why(config, email, project, json).await,
        Command::Resend { project, email } => resend(config, project, email).await,
        Command::Suppressions { action } => suppressions(config, action).await,
        Command::User {
            action: UserCommand::Add { name, role },
        } => user_add(config, name, role).await,
        Command::Token {
            action: TokenCommand::Create { role, name },
        } => {
            let role = parse_role(&role)?;
            let store = open(&config)?;
            let token = store
                .create_token(role, name, "cli".into())
                .await
                .map_err(anyhow::Error::from)?;
            outln!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what, json, quick } => crate::bench::run(config, &what, json, quick).await,
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILTRAIL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn open(config: &Config) -> Result<Store, RunError> {
    let options = StoreOptions {
        max_batch: if config.group_commit {
            StoreOptions::default().max_batch
        } else {
            1
        },
        ..StoreOptions::default()
    };
    Store::open(&config.db, options)
        .map_err(|e| RunError::Runtime(anyhow::anyhow!("cannot open {}: {e}", config.db.display())))
}

fn parse_role(role: &str) -> Result<Role, RunError> {
    role.parse().map_err(|_| {
        RunError::Usage(format!(
            "invalid --role `{role}`: use admin, support or viewer"
        ))
    })
}

fn parse_address(input: &str) -> Result<EmailAddress, RunError> {
    EmailAddress::parse(input)
        .map_err(|e| RunError::Usage(format!("`{input}` is not a valid address: {e}")))
}

async fn serve(config: Config, demo: bool) -> Result<ExitCode, RunError> {
    let store = open(&config)?;
    ensure_first_admin(&store, &config, demo).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            RunError::Runtime(anyhow::anyhow!("cannot listen on {}: {e}", config.listen))
        })?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    let mut state = AppState::new(store, config);
    if let crate::delivery::TransportSpec::File(dir) = &state.config.transport
        && !demo
    {
        tracing::warn!(dir = %dir.display(), "the transport is file: emails are written to files in this directory, not sent; set --transport smtp://… or direct to send them");
        state.file_transport_banner = true;
    }
    if demo {
        crate::demo::seed(&state).await.map_err(RunError::Runtime)?;
    }
    outln!("mailtrail: listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, db = %state.config.db.display(), transport = %state.config.transport, "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = state
        .config
        .worker
        .then(|| crate::delivery::spawn_worker(state.clone(), stop_rx));
    crate::http::serve(listener, state, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await
    .map_err(anyhow::Error::from)?;
    if let Some(worker) = worker {
        worker.await.map_err(anyhow::Error::from)?;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn worker(config: Config) -> Result<ExitCode, RunError> {
    let store = open(&config)?;
    let state = AppState::new(store, config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = crate::delivery::spawn_worker(state, stop_rx);
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    worker.await.map_err(anyhow::Error::from)?;
    Ok(ExitCode::SUCCESS)
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
        (Some(p), _) => (p.clone(), false),
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
    if !config.db.exists() {
        return Err(RunError::Runtime(anyhow::anyhow!(
            "there is no database at {}; name the server's database with --db or MAILTRAIL_DB (`serve --demo` uses ./data/demo.db)",
            config.db.display()
        )));
    }
    let db = config.db.display().to_string();
    let store = open(&config)?;
    let project = project
        .map(|p| ProjectKey::parse(&p).map_err(RunError::Usage))
        .transpose()?;
    let state = AppState::new(store, config);
    let answer = crate::http::api::read::why_answer(&state, &email, project)
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
    let store = open(&config)?;
    match store.resend(project.clone(), address.clone(), None).await {
        Ok(ResendOutcome::NotMember) => {
            eprintln!("{address} is not a customer of {project}");
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
            eprintln!("{what} {project} not found");
            Ok(ExitCode::from(NO_EMAIL))
        }
        Err(e) => Err(RunError::Runtime(e.into())),
    }
}

async fn suppressions(config: Config, action: SuppressionsCommand) -> Result<ExitCode, RunError> {
    let store = open(&config)?;
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
            match store
                .suppress(
                    NewSuppression::plain(address.clone(), SuppressionReason::Manual, Some(note)),
                    "cli".into(),
                )
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
            match store.unsuppress(address.clone(), note, "cli".into()).await {
                Ok(_) => outln!("unsuppressed {address}"),
                Err(crate::store::StoreError::NotFound(_)) => {
                    eprintln!("{address} is not suppressed");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(RunError::Runtime(e.into())),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user_add(config: Config, name: String, role: String) -> Result<ExitCode, RunError> {
    let role = parse_role(&role)?;
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
    let password = if std::io::stdin().is_terminal() {
        eprint!("password for {name}: ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(anyhow::Error::from)?;
        line
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
    let store = open(&config)?;
    let hash = crate::password::hash_blocking(password)
        .await
        .map_err(|e| RunError::Runtime(anyhow::anyhow!(e)))?;
    store
        .put_user(name.clone(), role, hash, "cli".into())
        .await
        .map_err(anyhow::Error::from)?;
    outln!("user {name} ({role}) saved");
    Ok(ExitCode::SUCCESS)
}
