//! docs/policies.md's "Writing a policy" must work as written: its shell block is
//! run here, in an empty directory, with `bridge-host` on the PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first ```sh block after the heading `## <title>`.
fn shell_block(readme: &str, title: &str) -> String {
    let section = readme
        .split_once(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("docs/policies.md has no section {title:?}"))
        .1;
    let block = section.split_once("```sh\n").expect("a ```sh block").1;
    block
        .split_once("\n```")
        .expect("a closed block")
        .0
        .to_string()
}

#[test]
fn the_writing_a_policy_walkthrough_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("docs/policies.md")).unwrap();
    let script = shell_block(&readme, "Writing a policy");

    // Outside the repository, so `cargo new` touches no workspace of ours.
    let work = tempfile::Builder::new()
        .prefix("policy-walkthrough")
        .tempdir()
        .unwrap();
    let start = work.path().join("start");
    std::fs::create_dir(&start).unwrap();
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_bridge-host"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&start)
        .env("PATH", path)
        .env("SESSION_BRIDGE", root)
        .env("BRIDGE_DIR", work.path().join("bridge"))
        .env(
            "BRIDGE_CACHE_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
        )
        .env_remove("BRIDGE_SESSION_ID")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("policy: footer 0.1.0"), "{stdout}");
    assert!(stdout.contains("can run: yes"), "{stdout}");
    assert!(
        stdout
            .contains("\nIs the v2 API frozen?\n-- reviewed by the footer policy\n</peer-message"),
        "{stdout}"
    );
}

/// No text in the repository shows an answer template in double quotes:
/// in `"<answer>"` bash runs backticks and `$(…)` and expands `$` and `!`,
/// so an answer with code in it either changes or stops at a permission
/// prompt. The shown form is a quoted here-document.
#[test]
fn no_text_shows_a_double_quoted_answer_template() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Built here so that this file does not match itself.
    let placeholders = ["answer", "question", "reply", "text"].map(|p| format!("<{p}>"));
    let needles: Vec<String> = placeholders
        .iter()
        .flat_map(|p| [format!("\"{p}\""), format!("\\\"{p}\\\"")])
        .collect();
    // A template is a command line with such an argument.
    let commands = ["bridge-host", "run reply", "run ask", "run send"];
    let mut stack: Vec<PathBuf> = [
        "README.md",
        "docs",
        "plugin",
        "guest/src",
        "host",
        "tests",
        "policies",
        "benches",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    let mut found = Vec::new();
    let mut read = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "node_modules")
            {
                continue;
            }
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        read += 1;
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str()))
                && commands.iter().any(|c| line.contains(c))
            {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(read > 50, "read only {read} files");
    assert!(
        found.is_empty(),
        "double-quoted templates:\n{}",
        found.join("\n")
    );
}

/// README is a newcomer's page: at most 300 lines, the depth in `docs/`.
#[test]
fn the_readme_is_at_most_300_lines() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move the depth into docs/ and link it"
    );
}
