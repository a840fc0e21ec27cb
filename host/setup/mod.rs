//! `bridge-host setup <client>`: installs the bridge into a coding agent's
//! user-level configuration, and `--remove` takes it out again.
//!
//! Each client is a module saying where its file is, in which syntax, and
//! which [`Piece`]s make up the bridge there (an MCP server entry today;
//! hooks later, added and removed with it). [`edit`] changes only those
//! entries and keeps every other byte; [`files`] checks the file before
//! reading it and keeps a record of what setup wrote, so that `--remove`
//! removes what setup added and nothing a user wrote: a file comes back
//! byte for byte when nothing else changed it meanwhile. Every word it
//! prints is in [`words`].

mod claude_code;
mod codex;
mod cursor;
mod edit;
mod files;
mod gemini;
mod vscode;
mod words;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use claude_code::PluginFiles;
use edit::{Document, Format, Piece};
use files::{FileRecord, Places, PluginRecord, Record, RecordedPiece, Undo};

/// A client setup knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// Claude Code: the session-bridge plugin, through ~/.claude/settings.json.
    ClaudeCode,
    /// Codex CLI: ~/.codex/config.toml (or $CODEX_HOME/config.toml).
    Codex,
    /// Gemini CLI: ~/.gemini/settings.json.
    Gemini,
    /// Cursor: ~/.cursor/mcp.json.
    Cursor,
    /// VS Code: the user profile's mcp.json.
    Vscode,
}

impl Client {
    /// Every client, in the order `bridge-host doctor` lists them.
    pub const ALL: [Client; 5] = [
        Client::ClaudeCode,
        Client::Codex,
        Client::Gemini,
        Client::Cursor,
        Client::Vscode,
    ];

    /// The name `bridge-host setup` takes.
    pub fn name(self) -> &'static str {
        words::client_arg(self)
    }
}

/// The file to edit (`config`, else the client's user-level file) and
/// what makes up the bridge in it, for the `bridge-host` at `exe`.
fn what_to_install(
    client: Client,
    places: &Places,
    exe: &str,
    config: Option<&Path>,
) -> Result<(PathBuf, Install)> {
    let default = match client {
        Client::ClaudeCode => claude_code::default_config(places),
        Client::Codex => codex::default_config(places),
        Client::Gemini => gemini::default_config(places),
        Client::Cursor => cursor::default_config(places),
        Client::Vscode => vscode::default_config(places)?,
    };
    let file = match config {
        Some(path) => std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?,
        None => default,
    };
    let install = match client {
        Client::ClaudeCode => claude_code::install(exe, &claude_code::plugin_dir(places)),
        Client::Codex => codex::install(exe, &file),
        Client::Gemini => gemini::install(exe, &gemini::policies_dir(&file)),
        Client::Cursor => cursor::install(exe),
        Client::Vscode => vscode::install(exe),
    };
    Ok((file, install))
}

/// How much of what setup adds a client's configuration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetUp {
    /// None of it (or no file).
    No,
    /// Some entries, not all as setup writes them for this `bridge-host`.
    Partly,
    /// Everything.
    Yes,
}

/// How much of what setup would add for this `bridge-host` `client`'s
/// user-level configuration holds, for `bridge-host doctor`; an error when
/// the file cannot be read or parsed.
pub fn installed(client: Client) -> Result<SetUp> {
    let places = Places::of_environment()?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|_| anyhow!(words::exe_unknown()))?;
    let (file, install) = what_to_install(client, &places, &exe.to_string_lossy(), None)?;
    let Some(text) = files::read_config(&file)? else {
        return Ok(SetUp::No);
    };
    let doc = Document::parse(install.format, &text).map_err(|err| {
        let command = format!("bridge-host setup {}", words::client_arg(client));
        anyhow!(words::unparseable(client, &command, &file, &err))
    })?;
    let present = |piece: &&Piece| doc.get(&piece.path).is_some();
    let held = |piece: &&Piece| {
        doc.get(&piece.path)
            .is_some_and(|v| holds(&v, &piece.value))
    };
    Ok(if install.pieces.iter().all(|p| held(&p)) {
        SetUp::Yes
    } else if install.pieces.iter().any(|p| present(&p)) {
        SetUp::Partly
    } else {
        SetUp::No
    })
}

/// `bridge-host setup`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// The client to set up.
    #[arg(value_enum)]
    client: Client,
    /// Edit this file instead of the client's user-level configuration.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Take out what setup added: the file comes back as it was.
    #[arg(long)]
    remove: bool,
    /// Print the change as a unified diff and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace an entry of the same name that setup did not write
    /// (`--remove` puts it back).
    #[arg(long)]
    force: bool,
}

/// What makes up the bridge in one client's configuration.
pub(crate) struct Install {
    format: Format,
    pieces: Vec<Piece>,
    plugin: Option<PluginFiles>,
}

/// Runs `bridge-host setup`.
///
/// # Errors
///
/// A configuration file setup cannot read, parse or write, or entries of
/// the same name it did not write; in each case nothing was written.
pub fn run(args: SetupArgs) -> Result<ExitCode> {
    let places = Places::of_environment()?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|_| anyhow!(words::exe_unknown()))?;
    let exe = exe.to_string_lossy().into_owned();
    let client = args.client;
    let (file, install) = what_to_install(client, &places, &exe, args.config.as_deref())?;
    let mut command = format!("bridge-host setup {}", words::client_arg(client));
    if args.config.is_some() {
        command.push_str(&format!(
            " --config {}",
            shell_words::quote(&file.to_string_lossy())
        ));
    }
    let mut record = Record::load(&places.record_file())?;
    let job = Job {
        client,
        command: &command,
        file: &file,
        install: &install,
        dry_run: args.dry_run,
    };
    if args.remove {
        job.remove(&mut record, &places)
    } else {
        job.setup(&mut record, &places, args.force)
    }
}

struct Job<'a> {
    client: Client,
    /// The command that set this file up, for the words that repeat it.
    command: &'a str,
    file: &'a Path,
    install: &'a Install,
    dry_run: bool,
}

/// True when `current` holds everything in `wanted`: the same value, or an
/// object with at least `wanted`'s keys, each holding its value. A user's
/// additions to an entry (Gemini's `"trust": true`) keep it setup's.
fn holds(current: &Value, wanted: &Value) -> bool {
    match (current, wanted) {
        (Value::Object(current), Value::Object(wanted)) => wanted
            .iter()
            .all(|(k, v)| current.get(k).is_some_and(|c| holds(c, v))),
        _ => current == wanted,
    }
}

impl Job<'_> {
    fn parse(&self, text: &str) -> Result<Document> {
        Document::parse(self.install.format, text).map_err(|err| {
            anyhow!(words::unparseable(
                self.client,
                self.command,
                self.file,
                &err
            ))
        })
    }

    fn setup(&self, record: &mut Record, places: &Places, force: bool) -> Result<ExitCode> {
        let original = files::read_config(self.file)?;
        let mut doc = self.parse(original.as_deref().unwrap_or(""))?;
        let owned = record.files.get(self.file).cloned();
        let recorded = |piece: &Piece| {
            owned
                .as_ref()
                .and_then(|r| r.pieces.iter().find(|p| p.path == piece.path))
        };

        let mut conflicts = Vec::new();
        let mut changed = Vec::new();
        let mut pieces = Vec::new();
        for piece in &self.install.pieces {
            let current = doc.get(&piece.path);
            let mine = recorded(piece)
                .filter(|r| current.as_ref().is_some_and(|c| holds(c, &r.value)))
                .cloned();
            match (&current, mine) {
                (Some(current), mine) if holds(current, &piece.value) => {
                    // Already there: keep ownership only if setup wrote it.
                    if let Some(mine) = mine {
                        pieces.push(RecordedPiece {
                            value: piece.value.clone(),
                            ..mine
                        });
                    }
                }
                (Some(_), Some(mine)) => {
                    doc.set(&piece.path, &piece.value)
                        .map_err(|e| anyhow!(words::not_a_table(self.file, &e.at)))?;
                    changed.push(piece);
                    pieces.push(RecordedPiece {
                        value: piece.value.clone(),
                        ..mine
                    });
                }
                (Some(current), None) if !force => conflicts.push((piece, current.clone())),
                (current, _) => {
                    let existed = doc
                        .set(&piece.path, &piece.value)
                        .map_err(|e| anyhow!(words::not_a_table(self.file, &e.at)))?;
                    changed.push(piece);
                    pieces.push(RecordedPiece {
                        path: piece.path.clone(),
                        value: piece.value.clone(),
                        existed,
                        replaced: current.clone(),
                    });
                }
            }
        }
        if !conflicts.is_empty() {
            bail!(words::conflict(self.command, self.file, &conflicts));
        }
        if let Some(plugin) = &self.install.plugin {
            let theirs = files_not_ours(plugin, record);
            // Not even with --force: --remove could not give a whole file back.
            if !theirs.is_empty() {
                bail!(words::files_not_ours(self.command, &theirs));
            }
        }

        let plugin_changes = match &self.install.plugin {
            Some(plugin) => plugin_changes(plugin),
            None => Vec::new(),
        };
        if changed.is_empty() && plugin_changes.is_empty() {
            println!("{}", words::nothing_to_change(self.command, self.file));
            return Ok(ExitCode::SUCCESS);
        }

        let before = original.clone().unwrap_or_default();
        let after = doc.render();
        if self.dry_run {
            if before != after || original.is_none() {
                print!(
                    "{}",
                    edit::unified_diff(&self.file.display().to_string(), &before, &after)
                );
            }
            if let Some(plugin) = &self.install.plugin
                && !plugin_changes.is_empty()
            {
                println!(
                    "{}",
                    words::would_write_plugin(self.client, &plugin.dir, plugin_changes.len())
                );
                if plugin.diff {
                    for (path, bytes, _) in &plugin.files {
                        let target = plugin.dir.join(path);
                        let now = fs::read_to_string(&target).unwrap_or_default();
                        let after = String::from_utf8_lossy(bytes);
                        if now != after {
                            let name = target.display().to_string();
                            print!("{}", edit::unified_diff(&name, &now, &after));
                        }
                    }
                }
            }
            eprintln!("{}", words::dry_run_note(false));
            return Ok(ExitCode::SUCCESS);
        }

        // Write the plugin first: settings that name a folder not there yet
        // would leave Claude Code with a marketplace it cannot read.
        let plugin_record = match &self.install.plugin {
            Some(plugin) => Some(write_plugin(plugin, owned.as_ref())?),
            None => None,
        };
        // The text before setup first wrote: what `--remove` gives back.
        let baseline = match &owned {
            Some(r) if Some(files::digest(&before)) == Some(r.written.clone()) => {
                r.undo.apply(&before)
            }
            _ => original.clone(),
        };
        let created_dirs = match (&owned, &original) {
            (Some(r), _) if !r.created_dirs.is_empty() => r.created_dirs.clone(),
            (_, None) => files::create_parents(self.file)?,
            _ => Vec::new(),
        };
        if before != after || original.is_none() {
            files::write_whole(self.file, after.as_bytes())?;
        }
        record.files.insert(
            self.file.to_path_buf(),
            FileRecord {
                client: words::client_arg(self.client).to_string(),
                written: files::digest(&after),
                undo: Undo::between(&after, baseline.as_deref()),
                created_dirs,
                pieces,
                plugin: plugin_record,
            },
        );
        record.save(&places.record_file())?;

        if !changed.is_empty() {
            print!("{}", words::added(self.file, &changed, original.is_none()));
        }
        if let Some(plugin) = &self.install.plugin
            && !plugin_changes.is_empty()
        {
            println!(
                "{}",
                words::plugin_written(self.client, &plugin.dir, plugin_changes.len())
            );
        }
        println!("{}", words::next_steps(self.client, self.command));
        Ok(ExitCode::SUCCESS)
    }

    fn remove(&self, record: &mut Record, places: &Places) -> Result<ExitCode> {
        let current = files::read_config(self.file)?;
        let Some(owned) = record.files.get(self.file).cloned() else {
            let foreign: Vec<&Piece> = match &current {
                Some(text) => {
                    let doc = self.parse(text)?;
                    self.install
                        .pieces
                        .iter()
                        .filter(|p| doc.get(&p.path).is_some())
                        .collect()
                }
                None => Vec::new(),
            };
            println!(
                "{}",
                words::nothing_recorded(self.client, self.file, &foreign)
            );
            return Ok(ExitCode::SUCCESS);
        };
        let Some(current) = current else {
            if !self.dry_run {
                remove_plugin(&owned, record, self.file);
                record.files.remove(self.file);
                record.save(&places.record_file())?;
            }
            println!("{}", words::file_gone(self.file));
            return Ok(ExitCode::SUCCESS);
        };

        let as_written = files::digest(&current) == owned.written;
        let mut removed = Vec::new();
        let mut left = Vec::new();
        let after: Option<String> = if as_written {
            // Nothing touched the file since: undo exactly.
            owned.undo.apply(&current)
        } else {
            let mut doc = self.parse(&current)?;
            for recorded in &owned.pieces {
                let piece = Piece {
                    path: recorded.path.clone(),
                    value: recorded.value.clone(),
                };
                match doc.get(&piece.path) {
                    None => {}
                    Some(value) if holds(&value, &recorded.value) => {
                        match &recorded.replaced {
                            Some(theirs) => {
                                doc.set(&piece.path, theirs)
                                    .map_err(|e| anyhow!(words::not_a_table(self.file, &e.at)))?;
                            }
                            None => {
                                doc.remove(&piece.path, recorded.existed);
                            }
                        }
                        removed.push(piece);
                    }
                    Some(_) => left.push(piece),
                }
            }
            if owned.undo == Undo::Delete && doc.is_empty() {
                None
            } else {
                Some(doc.render())
            }
        };
        let pieces: Vec<Piece> = if as_written {
            owned
                .pieces
                .iter()
                .map(|p| Piece {
                    path: p.path.clone(),
                    value: p.value.clone(),
                })
                .collect()
        } else {
            removed
        };

        if self.dry_run {
            match &after {
                Some(after) => print!(
                    "{}",
                    edit::unified_diff(&self.file.display().to_string(), &current, after)
                ),
                None => println!("{}", words::would_delete(self.file)),
            }
            if let Some(plugin) = &owned.plugin {
                println!("{}", words::would_remove_plugin(self.client, &plugin.dir));
            }
            eprintln!("{}", words::dry_run_note(true));
            return Ok(ExitCode::SUCCESS);
        }

        match &after {
            Some(text) => files::write_whole(self.file, text.as_bytes())?,
            None => fs::remove_file(self.file)
                .with_context(|| format!("cannot remove {}", self.file.display()))?,
        }
        if after.is_none() {
            files::remove_empty_dirs(&owned.created_dirs);
        }
        remove_plugin(&owned, record, self.file);
        record.files.remove(self.file);
        record.save(&places.record_file())?;

        let refs: Vec<&Piece> = pieces.iter().collect();
        println!("{}", words::removed(self.file, &refs, after.is_none()));
        if as_written && after.is_some() {
            println!("{}", words::restored_exactly(self.file));
        }
        for piece in &left {
            println!("{}", words::left_changed(self.file, piece));
        }
        if let Some(plugin) = &owned.plugin {
            println!("{}", words::plugin_removed(self.client, &plugin.dir));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The files setup would write whole that exist with other contents and
/// that no earlier setup wrote (of this configuration file or another that
/// shares them): a user's own.
fn files_not_ours(plugin: &PluginFiles, record: &Record) -> Vec<PathBuf> {
    let ours = |path: &PathBuf| {
        record.files.values().any(|r| {
            r.plugin
                .as_ref()
                .is_some_and(|p| p.dir == plugin.dir && p.files.contains(path))
        })
    };
    plugin
        .files
        .iter()
        .filter(|(path, bytes, _)| {
            let on_disk = fs::read(plugin.dir.join(path)).ok();
            on_disk.is_some() && on_disk.as_deref() != Some(bytes) && !ours(path)
        })
        .map(|(path, _, _)| plugin.dir.join(path))
        .collect()
}

/// The plugin files whose content on disk differs from what setup writes.
fn plugin_changes(plugin: &PluginFiles) -> Vec<PathBuf> {
    plugin
        .files
        .iter()
        .filter(|(path, bytes, _)| fs::read(plugin.dir.join(path)).ok().as_deref() != Some(bytes))
        .map(|(path, _, _)| path.clone())
        .collect()
}

fn write_plugin(plugin: &PluginFiles, owned: Option<&FileRecord>) -> Result<PluginRecord> {
    let mut created_dirs = owned
        .and_then(|r| r.plugin.as_ref())
        .map(|p| p.created_dirs.clone())
        .unwrap_or_default();
    for (path, bytes, executable) in &plugin.files {
        let target = plugin.dir.join(path);
        if fs::read(&target).ok().as_deref() == Some(bytes) {
            continue;
        }
        for dir in files::create_parents(&target)? {
            created_dirs.push(dir);
        }
        files::write_whole(&target, bytes)?;
        #[cfg(unix)]
        if *executable {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", target.display()))?;
        }
        #[cfg(not(unix))]
        let _ = executable;
    }
    Ok(PluginRecord {
        dir: plugin.dir.clone(),
        files: plugin.files.iter().map(|(p, _, _)| p.clone()).collect(),
        created_dirs,
    })
}

/// Removes the plugin files `owned` recorded, unless another configuration
/// file set up with them still names them.
fn remove_plugin(owned: &FileRecord, record: &Record, file: &Path) {
    let Some(plugin) = &owned.plugin else {
        return;
    };
    let shared = record
        .files
        .iter()
        .any(|(other, r)| other != file && r.plugin.as_ref().is_some_and(|p| p.dir == plugin.dir));
    if shared {
        return;
    }
    for path in &plugin.files {
        let _ = fs::remove_file(plugin.dir.join(path));
    }
    // Innermost first: sort the folders by depth.
    let mut dirs = plugin.created_dirs.clone();
    dirs.sort_by_key(|d| d.components().count());
    files::remove_empty_dirs(&dirs);
}
