//! The command line (SPEC §7, §9): `why` and `resend` with their exit codes, the
//! suppression commands, tokens and users, `migrate`, bad settings and `--help`. Each
//! command runs as its own process against the app's database, as an operator would.

use serde_json::{Value, json};

use super::api_ingest::{add, all_items, outgoing_mail, project, results, suppress, why};
use crate::common::{App, OutputExt};

/// Exit code of `why` and `resend` when the address gets no email (SPEC §7).
const NO_EMAIL: i32 = 3;

/// Runs `args`; asserts the exit code and returns stdout.
#[track_caller]
fn run(app: &App, args: &[&str], code: i32) -> String {
    let output = app.cli(args);
    assert_eq!(
        output.code(),
        code,
        "{args:?}: stdout {:?} stderr {:?}",
        output.stdout_text(),
        output.stderr_text()
    );
    output.stdout_text()
}

#[test]
fn why_prints_the_verdict_and_exits_0_only_when_mail_is_on_its_way() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    add(&app, "HELP", &["fine@example.com"]);
    results(
        &app,
        "/api/v1/projects/HELP/customers",
        &json!({ "emails": ["quiet@example.com"], "invite": false }),
    );

    let fine = run(&app, &["why", "Fine@Example.com"], 0);
    assert!(fine.contains("fine@example.com"), "{fine}");
    let upper = fine.to_uppercase();
    assert!(upper.contains("QUEUED") || upper.contains("SENT"), "{fine}");

    let quiet = run(&app, &["why", "quiet@example.com"], NO_EMAIL);
    assert!(quiet.to_uppercase().contains("SKIPPED"), "{quiet}");
    assert!(
        quiet.contains("agent_opted_out"),
        "the reason is shown: {quiet}"
    );

    let never = run(&app, &["why", "never@example.com"], NO_EMAIL);
    assert!(
        never.to_uppercase().contains("NO_RECORD") || never.contains("no record"),
        "{never}"
    );
    // Finding nothing, it says which database it read.
    let output = app.cli(&["why", "never@example.com"]);
    let db = app.db();
    assert!(
        output
            .stderr_text()
            .contains(&format!("read the database {db}")),
        "{}",
        output.stderr_text()
    );
    // A database that does not exist is named, and not created.
    let output = app.cli(&["--db", "elsewhere.db", "why", "never@example.com"]);
    assert_eq!(output.code(), 1, "{}", output.stderr_text());
    assert!(
        output.stderr_text().contains("no database at elsewhere.db"),
        "{}",
        output.stderr_text()
    );
    assert!(!app.dir().join("elsewhere.db").exists());

    suppress(&app, "fine@example.com");
    let suppressed = run(&app, &["why", "fine@example.com"], NO_EMAIL);
    assert!(
        suppressed.to_uppercase().contains("SUPPRESSED"),
        "{suppressed}"
    );
}

#[test]
fn why_json_prints_the_api_answer() {
    let app = App::start();
    project(&app, "HELP", json!({ "invite_notification": false }));
    add(&app, "HELP", &["toggle@example.com", "not an address"]);
    for (input, code) in [
        ("toggle@example.com", NO_EMAIL),
        ("never@example.com", NO_EMAIL),
        ("not an address", NO_EMAIL),
    ] {
        let stdout = run(&app, &["why", input, "--json"], code);
        let printed: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("why --json is not JSON ({e}): {stdout}"));
        let api = why(&app, input);
        assert_eq!(
            printed["verdict"]["code"], api["verdict"]["code"],
            "{input}"
        );
        assert_eq!(printed["email"], api["email"], "{input}");
        assert_eq!(printed["fixes"], api["fixes"], "{input}");
        assert_eq!(
            printed["decisions"].as_array().map(Vec::len),
            api["decisions"].as_array().map(Vec::len)
        );
    }
    let printed: Value = serde_json::from_str(&run(
        &app,
        &["why", "toggle@example.com", "--json"],
        NO_EMAIL,
    ))
    .unwrap_or_default();
    assert_eq!(printed["verdict"]["code"], "skipped");
    assert_eq!(printed["customer"]["projects"][0]["key"], "HELP");
}

#[test]
fn resend_exits_0_when_queued_and_3_when_blocked_or_not_a_member() {
    let app = App::start();
    project(&app, "HELP", json!({ "invite_notification": false }));
    add(&app, "HELP", &["member@example.com", "gone@example.com"]);
    suppress(&app, "gone@example.com");

    run(&app, &["resend", "HELP", "Member@Example.com"], 0);
    let resends = all_items(&app, "/api/v1/decisions?channel=resend");
    assert_eq!(resends.len(), 1, "{resends:#?}");
    assert_eq!(resends[0]["recipient"], "member@example.com");
    assert_eq!(resends[0]["decision"], "send");

    run(&app, &["resend", "HELP", "gone@example.com"], NO_EMAIL);
    run(&app, &["resend", "HELP", "stranger@example.com"], NO_EMAIL);
    run(&app, &["resend", "NOPE", "member@example.com"], NO_EMAIL);
    let resends = all_items(&app, "/api/v1/decisions?channel=resend");
    assert_eq!(
        resends.len(),
        2,
        "the blocked resend is recorded, the others are not"
    );
    assert_eq!(resends[0]["reasons"], json!(["suppressed"]));

    outgoing_mail(&app, false);
    run(&app, &["resend", "HELP", "member@example.com"], NO_EMAIL);
}

#[test]
fn suppressions_add_list_remove_round_trip() {
    let app = App::start();
    run(
        &app,
        &[
            "suppressions",
            "add",
            "Gone@Example.com",
            "--note",
            "asked to stop",
        ],
        0,
    );
    let listed = app.get("/api/v1/suppressions").expect_status(200).json();
    assert_eq!(listed["items"][0]["email"], "gone@example.com");
    assert_eq!(listed["items"][0]["reason"], "manual");
    assert_eq!(listed["items"][0]["note"], "asked to stop");

    let stdout = run(&app, &["suppressions", "list", "--json"], 0);
    let printed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e}): {stdout}"));
    let emails: Vec<&Value> = match &printed {
        Value::Array(items) => items.iter().map(|s| &s["email"]).collect(),
        other => other["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| &s["email"])
            .collect(),
    };
    assert_eq!(emails, [&json!("gone@example.com")], "{printed:#}");
    let human = run(&app, &["suppressions", "list"], 0);
    assert!(human.contains("gone@example.com"), "{human}");

    run(
        &app,
        &[
            "suppressions",
            "remove",
            "gone@example.com",
            "--note",
            "verified by phone",
        ],
        0,
    );
    assert_eq!(app.get("/api/v1/suppressions").json()["items"], json!([]));
    let audit = all_items(&app, "/api/v1/audit");
    assert!(
        audit
            .iter()
            .any(|e| e["target"] == "gone@example.com" && e["note"] == "verified by phone"),
        "the CLI unsuppress is audited: {audit:#?}"
    );
    let again = app.cli(&["suppressions", "remove", "gone@example.com", "--note", "x"]);
    assert_ne!(again.code(), 0, "removing what is not suppressed fails");
    let no_note = app.cli(&["suppressions", "add", "x@example.com"]);
    assert_eq!(no_note.code(), 2, "--note is required");
    let bad = app.cli(&["suppressions", "add", "not an address", "--note", "x"]);
    assert_eq!(bad.code(), 2, "a bad address is a usage error");
    assert_eq!(app.get("/api/v1/suppressions").json()["items"], json!([]));
}

#[test]
fn token_create_prints_one_line_token_with_its_role() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let output = app.cli(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--name",
        "dashboard-reader",
    ]);
    assert_eq!(output.code(), 0, "{}", output.stderr_text());
    let stdout = output.stdout_text();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "the token alone: {stdout:?}");
    let token = lines[0].trim();
    assert!(token.len() >= 16 && !token.contains(' '), "{token:?}");
    let viewer = app.with_token(token);
    viewer.get("/api/v1/decisions").expect_status(200);
    let post = viewer.post_json(
        "/api/v1/projects/HELP/customers",
        &json!({ "emails": ["v@example.com"] }),
    );
    post.expect_status(403);
    // Two tokens are never the same.
    let second = run(&app, &["token", "create", "--role", "viewer"], 0);
    assert_ne!(second.trim(), token);
    let bad = app.cli(&["token", "create", "--role", "overlord"]);
    assert_eq!(bad.code(), 2);
    assert!(bad.stderr_text().contains("role"), "{}", bad.stderr_text());
}

#[test]
fn user_add_reads_the_password_from_stdin() {
    let app = App::start();
    let output = app.cli_with_stdin(
        &["user", "add", "sam", "--role", "support"],
        "correct horse battery\n",
    );
    assert_eq!(output.code(), 0, "{}", output.stderr_text());
    assert!(
        !output.stdout_text().contains("correct horse"),
        "the password is never printed"
    );
    let audit = all_items(&app, "/api/v1/audit");
    assert!(audit.iter().any(|e| e["target"] == "sam"), "{audit:#?}");
    let bad_role = app.cli_with_stdin(
        &["user", "add", "kim", "--role", "root"],
        "long enough pw\n",
    );
    assert_eq!(bad_role.code(), 2);
    let no_password = app.cli_with_stdin(&["user", "add", "kim", "--role", "viewer"], "");
    assert_ne!(no_password.code(), 0, "an empty password is refused");
}

#[test]
fn migrate_is_idempotent() {
    let mut app = App::builder().build_stopped();
    let first = app.cli(&["migrate"]);
    assert_eq!(first.code(), 0, "{}", first.stderr_text());
    assert!(
        app.on_postgres() || app.db_path().exists(),
        "migrate creates the database"
    );
    let second = app.cli(&["migrate"]);
    assert_eq!(second.code(), 0, "{}", second.stderr_text());
    app.start_server();
    project(&app, "HELP", json!({}));
    app.kill_hard();
    let third = app.cli(&["migrate"]);
    assert_eq!(third.code(), 0, "{}", third.stderr_text());
    app.start_server();
    app.get("/api/v1/projects/HELP").expect_status(200);
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    let app = App::builder().build_stopped();
    let by_env = App::builder()
        .env("MAILTRAIL_LISTEN", "nonsense")
        .build_stopped()
        .cli(&["migrate"]);
    assert_eq!(by_env.code(), 2, "{}", by_env.stderr_text());
    assert!(
        by_env.stderr_text().to_lowercase().contains("listen"),
        "{}",
        by_env.stderr_text()
    );
    let cases: [(&[&str], &str); 5] = [
        (&["--listen", "nonsense", "migrate"], "listen"),
        (&["--retry-schedule", "soon", "migrate"], "retry"),
        (&["--give-up-after", "forever", "migrate"], "give"),
        (&["--transport", "pigeon://coop", "migrate"], "transport"),
        (&["--lease=soon", "migrate"], "lease"),
    ];
    for (args, setting) in cases {
        let output = app.cli(args);
        assert_eq!(output.code(), 2, "{args:?}: {}", output.stderr_text());
        let stderr = output.stderr_text().to_lowercase();
        assert!(
            stderr.contains(setting),
            "{args:?}: stderr names {setting}: {stderr}"
        );
    }
    let unknown = app.cli(&["frobnicate"]);
    assert_eq!(unknown.code(), 2);
}

#[test]
fn help_exits_0_and_lists_the_commands() {
    let app = App::builder().build_stopped();
    let stdout = run(&app, &["--help"], 0);
    for command in [
        "serve",
        "worker",
        "why",
        "resend",
        "suppressions",
        "user",
        "token",
        "migrate",
        "bench",
    ] {
        assert!(stdout.contains(command), "--help lists {command}: {stdout}");
    }
    let why_help = run(&app, &["why", "--help"], 0);
    assert!(why_help.contains("--json"), "{why_help}");
}

#[test]
fn settings_errors_name_their_layer_and_short_secrets_exit_2() {
    let short = App::builder()
        .env("MAILTRAIL_ADMIN_TOKEN", "too-short")
        .build_stopped()
        .cli(&["migrate"]);
    assert_eq!(short.code(), 2, "{}", short.stderr_text());
    assert!(
        short
            .stderr_text()
            .contains("MAILTRAIL_ADMIN_TOKEN (environment): too short"),
        "{}",
        short.stderr_text()
    );
    let from_file = App::builder()
        .file("mailtrail.toml", "concurrency = 0\n")
        .build_stopped()
        .cli(&["migrate"]);
    assert_eq!(from_file.code(), 2, "{}", from_file.stderr_text());
    assert!(
        from_file
            .stderr_text()
            .contains("key `concurrency` in mailtrail.toml (file)"),
        "{}",
        from_file.stderr_text()
    );
    let app = App::builder().build_stopped();
    let by_flag = app.cli(&["--poll-interval", "often", "migrate"]);
    assert_eq!(by_flag.code(), 2);
    assert!(
        by_flag.stderr_text().contains("--poll-interval (flag)"),
        "{}",
        by_flag.stderr_text()
    );
}

#[test]
fn token_list_shows_id_name_role_never_the_secret_and_revoke_ends_it() {
    let app = App::start();
    let first = run(
        &app,
        &["token", "create", "--role", "viewer", "--name", "reader"],
        0,
    );
    let first = first.trim();
    let second = run(&app, &["token", "create", "--role", "support"], 0);
    let second = second.trim();
    run(
        &app,
        &[
            "token",
            "create",
            "--role",
            "viewer",
            "--name",
            "two\nlines\there",
        ],
        0,
    );
    let listing = run(&app, &["token", "list"], 0);
    assert!(
        !listing.contains(first) && !listing.contains(second),
        "never the secret: {listing}"
    );
    let lines: Vec<Vec<&str>> = listing.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert_eq!(&lines[0][1..], ["reader", "viewer"], "{listing}");
    assert_eq!(&lines[1][1..], ["-", "support"], "{listing}");
    assert_eq!(
        &lines[2][1..],
        ["two\\nlines\\there", "viewer"],
        "{listing}"
    );
    let json: Value = serde_json::from_str(&run(&app, &["token", "list", "--format", "json"], 0))
        .expect("JSON listing");
    assert_eq!(json[0]["id"], lines[0][0]);
    app.with_token(first)
        .get("/api/v1/decisions")
        .expect_status(200);
    run(&app, &["token", "revoke", lines[0][0]], 0);
    app.with_token(first)
        .get("/api/v1/decisions")
        .expect_status(401);
    app.with_token(second)
        .get("/api/v1/decisions")
        .expect_status(200);
    let again = app.cli(&["token", "revoke", lines[0][0]]);
    assert_eq!(again.code(), 2, "an unknown id: {}", again.stderr_text());
    assert!(
        again.stderr_text().contains("not found"),
        "{}",
        again.stderr_text()
    );
    let audit = all_items(&app, "/api/v1/audit");
    assert!(
        audit.iter().any(|e| e["what"] == "token.revoke"),
        "{audit:#?}"
    );
    let bad = app.cli(&["token", "list", "--format", "yaml"]);
    assert_eq!(bad.code(), 2);
}
