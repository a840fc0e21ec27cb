//! Every line `bridge-host setup` prints. Setup is about clients'
//! configuration files, which are the host's business, not the protocol's,
//! so its words are the host's; they are all here, in one place.

use std::path::{Path, PathBuf};

use super::Client;
use super::edit::{Piece, SyntaxError};

/// The client as people name it.
pub fn client_name(client: Client) -> &'static str {
    match client {
        Client::ClaudeCode => "Claude Code",
        Client::Codex => "Codex",
        Client::Gemini => "Gemini CLI",
        Client::Cursor => "Cursor",
        Client::Vscode => "VS Code",
    }
}

/// The command-line name: `claude-code`.
pub fn client_arg(client: Client) -> &'static str {
    match client {
        Client::ClaudeCode => "claude-code",
        Client::Codex => "codex",
        Client::Gemini => "gemini",
        Client::Cursor => "cursor",
        Client::Vscode => "vscode",
    }
}

fn format_name(client: Client) -> &'static str {
    match client {
        Client::Codex => "TOML",
        Client::ClaudeCode => "JSON (without comments, as Claude Code reads it)",
        Client::Gemini => "JSON (comments allowed, no trailing commas, as Gemini CLI reads it)",
        Client::Cursor | Client::Vscode => "JSON with comments",
    }
}

pub fn unparseable(client: Client, command: &str, file: &Path, err: &SyntaxError) -> String {
    let place = match (err.line, err.column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    };
    format!(
        "cannot read {} as {}{place}: {}. Nothing was written. {} cannot read it either: \
         fix the file (or move it aside), then run `{command}` again",
        file.display(),
        format_name(client),
        err.message.trim_end_matches('.'),
        client_name(client),
    )
}

pub fn not_a_table(file: &Path, at: &str) -> String {
    format!(
        "{}: `{at}` holds a value that is not a table or object, so setup has nowhere to add \
         its entry. Nothing was written. Make `{at}` an object (or remove it), then run setup again",
        file.display()
    )
}

pub fn symlink(file: &Path, target: &Path) -> String {
    format!(
        "{} is a symbolic link (to {}); setup edits only regular files, so that it never \
         writes somewhere you did not name. Nothing was written. Run it again with \
         --config {}",
        file.display(),
        target.display(),
        target.display()
    )
}

pub fn not_regular(file: &Path, kind: &str) -> String {
    format!(
        "{} is {kind}, not a regular file. Nothing was written. Point --config at the \
         client's configuration file",
        file.display()
    )
}

pub fn unreadable(file: &Path, err: &std::io::Error) -> String {
    format!(
        "cannot read {}: {err}. Nothing was written. Check the file's permissions (setup \
         must read and rewrite it), or point --config at another file",
        file.display()
    )
}

pub fn not_utf8(file: &Path) -> String {
    format!(
        "{} is not UTF-8 text. Nothing was written. Setup edits only text files; check \
         that this is the client's configuration file",
        file.display()
    )
}

pub fn cannot_write(file: &Path) -> String {
    format!(
        "cannot write {}; check that its folder exists and is writable by you",
        file.display()
    )
}

pub fn no_home() -> String {
    "neither HOME nor (on Windows) USERPROFILE is set, so setup cannot find the client's \
     configuration file; pass --config FILE"
        .into()
}

pub fn no_appdata() -> String {
    "APPDATA is not set, so setup cannot find VS Code's user folder; pass --config FILE".into()
}

pub fn exe_unknown() -> String {
    "cannot tell where this bridge-host executable is, which the client must be given; \
     run setup from the installed binary (for example ~/.cargo/bin/bridge-host)"
        .into()
}

/// An entry of the same name that setup did not write, or that was changed
/// since it did.
pub fn conflict(command: &str, file: &Path, pieces: &[(&Piece, serde_json::Value)]) -> String {
    let mut text = format!(
        "{} already has entries that setup did not write (or that were changed since):\n",
        file.display()
    );
    for (piece, current) in pieces {
        text.push_str(&format!(
            "  {} = {}\n  setup's would be {}\n",
            piece.dotted(),
            current,
            piece.value
        ));
    }
    text.push_str(&format!(
        "Nothing was written. Setup leaves your entries alone. To keep yours, change \
         nothing: the bridge is set up if yours runs `bridge-host mcp`. To replace them \
         with setup's, run `{command} --force`; `--remove` then puts yours back"
    ));
    text
}

pub fn dry_run_note(remove: bool) -> String {
    let run = if remove {
        "run it again without --dry-run to remove them"
    } else {
        "run it again without --dry-run to apply it"
    };
    format!("(dry run: nothing was written; {run})")
}

pub fn nothing_to_change(command: &str, file: &Path) -> String {
    format!(
        "{} already holds everything `{command}` adds; nothing changed.",
        file.display(),
    )
}

pub fn added(file: &Path, pieces: &[&Piece], created: bool) -> String {
    let verb = if created { "created" } else { "updated" };
    let mut text = format!("{verb} {}:\n", file.display());
    for piece in pieces {
        text.push_str(&format!("  {}\n", piece.dotted()));
    }
    text
}

/// What setup writes beside the configuration file, in words: Claude
/// Code's plugin, or Gemini CLI's policy file.
fn files_named(client: Client, count: usize) -> String {
    match client {
        Client::Gemini => "the session-bridge policy file".to_string(),
        _ => format!("the session-bridge plugin ({count} files)"),
    }
}

pub fn plugin_written(client: Client, dir: &Path, count: usize) -> String {
    format!("wrote {} to {}", files_named(client, count), dir.display())
}

/// What to do next, after a setup that changed something.
pub fn next_steps(client: Client, command: &str) -> String {
    let then = match client {
        Client::ClaudeCode => {
            "Start Claude Code: it registers the plugin's marketplace and loads the plugin \
             (/session-bridge:start, the bridge's MCP tools); from the start after that, \
             every session also registers itself. `claude plugin list` shows \
             session-bridge@session-bridge once it has."
        }
        Client::Codex => {
            "Start Codex (a running one reads its configuration at start only); \
             `codex mcp list` shows `bridge`."
        }
        Client::Gemini => {
            "Start Gemini CLI; `gemini mcp list` shows `bridge`. The bridge's tools run \
             without asking, `gemini -p` included, but `away`, which asks (the policy file); \
             at the end of each turn, a message waiting for the session is handed to the \
             model."
        }
        Client::Cursor => {
            "Restart Cursor (or reload its MCP servers in its settings); the server is \
             `bridge`."
        }
        Client::Vscode => {
            "Reload VS Code's window (or run \"MCP: List Servers\"); the server is \
             `bridge`, and VS Code asks you to trust it on its first start."
        }
    };
    format!("{then}\nTo undo: {command} --remove")
}

pub fn removed(file: &Path, pieces: &[&Piece], deleted: bool) -> String {
    if deleted {
        return format!(
            "removed {} (setup had created it) and what it held",
            file.display()
        );
    }
    let mut text = format!("removed from {}:\n", file.display());
    for piece in pieces {
        text.push_str(&format!("  {}\n", piece.dotted()));
    }
    text.trim_end().to_string()
}

pub fn restored_exactly(file: &Path) -> String {
    format!(
        "{} is back as it was before setup, byte for byte",
        file.display()
    )
}

pub fn left_changed(file: &Path, piece: &Piece) -> String {
    format!(
        "left {} in {}: it was changed since setup wrote it, so it is yours now; \
         remove it by hand if you no longer want it",
        piece.dotted(),
        file.display()
    )
}

pub fn plugin_removed(client: Client, dir: &Path) -> String {
    match client {
        Client::Gemini => format!(
            "removed the session-bridge policy file from {}",
            dir.display()
        ),
        _ => format!(
            "removed the session-bridge plugin from {}\nClaude Code keeps the marketplace in its \
             own list (`claude plugin list` shows session-bridge disabled); \
             `claude plugin marketplace remove session-bridge` makes it forget it too.",
            dir.display()
        ),
    }
}

/// Files setup writes whole that already hold something else, and that it
/// did not write.
pub fn files_not_ours(command: &str, files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| format!("  {}", f.display())).collect();
    format!(
        "these files already exist with other contents, and setup did not write them:\n{}\n\
         Nothing was written. Setup leaves your files alone: move them aside (or merge them \
         into your own files) and run `{command}` again.",
        names.join("\n")
    )
}

pub fn nothing_recorded(client: Client, file: &Path, foreign: &[&Piece]) -> String {
    if foreign.is_empty() {
        format!(
            "setup has not written to {}; nothing to remove for {}.",
            file.display(),
            client_name(client)
        )
    } else {
        let names: Vec<String> = foreign.iter().map(|p| p.dotted()).collect();
        format!(
            "setup has no record of writing {} in {}, so it left them as they are; \
             remove them by hand if you no longer want them.",
            names.join(", "),
            file.display()
        )
    }
}

pub fn file_gone(file: &Path) -> String {
    format!(
        "{} no longer exists; nothing to remove there (setup forgot its record of it).",
        file.display()
    )
}

pub fn would_delete(file: &Path) -> String {
    format!("would delete {} (setup created it)", file.display())
}

pub fn would_write_plugin(client: Client, dir: &Path, count: usize) -> String {
    format!(
        "would write {} to {}",
        files_named(client, count),
        dir.display()
    )
}

pub fn would_remove_plugin(client: Client, dir: &Path) -> String {
    format!(
        "would remove {} from {}",
        files_named(client, 0),
        dir.display()
    )
}

pub fn record_unreadable(file: &Path, err: &str) -> String {
    format!(
        "cannot read setup's record {}: {err}. Nothing was written. Move it aside to let \
         setup start a new one (setup then treats every entry as not its own)",
        file.display()
    )
}
