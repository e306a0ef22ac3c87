//! The README's walk-through, executed (SPEC §15 "The documentation is the product
//! too"): every command of its `sh` blocks runs, in order, through bash against a
//! fresh server, and every `#>` line after a command names pieces of its answer
//! (separated by ` … `) that must appear in it. The server the README starts with
//! `cargo run` is this test's server; its URL replaces `http://127.0.0.1:8040`.

use crate::common::{App, repo_root};
use std::process::Command;

/// One command of the walk-through and what its answer must contain.
struct Step {
    command: String,
    expect: Vec<String>,
}

/// The `sh` blocks of the README section that starts with `heading`.
fn sh_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .expect("the README has the walk-through");
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split_once("\n```").map(|(code, _)| code.to_owned()))
        .collect()
}

/// Commands (a line ending in `\` continues on the next one) with their `#>` lines.
fn steps(blocks: &[String], base_url: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for block in blocks {
        let mut pending = String::new();
        for line in block.lines() {
            if let Some(expect) = line.strip_prefix("#>") {
                let step = steps.last_mut().expect("a #> line follows a command");
                step.expect
                    .extend(expect.split(" … ").map(|f| f.trim().to_owned()));
                continue;
            }
            let trimmed = line.trim();
            if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            // The README starts the server; here it already runs.
            if trimmed.starts_with("cargo run") {
                continue;
            }
            pending.push_str(&line.replace("http://127.0.0.1:8040", base_url));
            if pending.ends_with('\\') {
                pending.push('\n');
                continue;
            }
            steps.push(Step {
                command: std::mem::take(&mut pending),
                expect: Vec::new(),
            });
        }
    }
    steps
}

#[test]
fn the_readme_walk_through_gives_what_the_readme_shows() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let blocks = sh_blocks(&readme, "## Walk-through: the five scenarios with curl");
    assert!(blocks.len() >= 6, "the six blocks of the walk-through");
    let token = blocks
        .iter()
        .flat_map(|b| b.lines())
        .find_map(|l| l.strip_prefix("export MAILTRAIL_ADMIN_TOKEN="))
        .expect("the walk-through sets the admin token")
        .trim()
        .to_owned();
    let app = App::builder()
        .env("MAILTRAIL_ADMIN_TOKEN", token.clone())
        .start();
    let steps = steps(&blocks, app.base_url());
    assert!(steps.len() > 20, "{} commands", steps.len());

    const MARK: &str = "@@readme-step-done@@";
    let mut script = String::from("set -u\n");
    for step in &steps {
        script.push_str(&step.command);
        script.push_str(&format!("\nprintf '\\n{MARK}\\n'\n"));
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo_root())
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answers: Vec<&str> = stdout.split(MARK).collect();
    assert!(
        answers.len() > steps.len(),
        "every command ran: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (step, answer) in steps.iter().zip(&answers) {
        for piece in &step.expect {
            assert!(
                answer.contains(piece.as_str()),
                "`{}` answered:\n{}\nwhich lacks:\n{piece}",
                step.command,
                answer.trim()
            );
        }
    }
}

#[test]
fn the_readme_cites_only_what_is_in_the_repository() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for outside in ["SPEC", "PEERS.md", "../shared"] {
        assert!(
            !readme.contains(outside),
            "the README cites {outside}, which is not in the repository"
        );
    }
    // Every relative link and every docs/ or tests/ path it names exists.
    let mut paths: Vec<&str> = readme
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|link| !link.starts_with("http"))
        .collect();
    for piece in readme.split('`') {
        if (piece.starts_with("docs/")
            || piece.starts_with("tests/")
            || piece.starts_with("scripts/"))
            && !piece.contains(' ')
        {
            paths.push(piece);
        }
    }
    assert!(!paths.is_empty());
    for path in paths {
        let path = path.split('#').next().unwrap_or(path);
        assert!(
            root.join(path).exists(),
            "the README names {path}, which is not in the repository"
        );
    }
}
