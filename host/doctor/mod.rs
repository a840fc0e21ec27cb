//! `bridge-host doctor`: what works on this machine. It checks the bridge
//! directory, the compile cache, the relay, and each agent client (whether
//! it is installed, which version, whether `bridge-host setup` set it up,
//! and whether its wake path works, checked live where that needs no model
//! call). It changes nothing, and prints a table, or one JSON object with
//! `--json`.
//!
//! It is the one front end that looks at all the others: it asks the relay
//! (`relay::health`), setup (`setup::installed`) and each client's own CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::invoke::{Config, absolute};

mod clients;

/// How long a client's `--version` may take.
const VERSION_WAIT: Duration = Duration::from_secs(20);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, with something the user should know.
    Warn,
    /// Does not work; the detail says what to do.
    Fail,
    /// Not in use (no relay configured, a client not installed).
    Off,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Off => "off",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

fn check(name: &str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        status,
        detail: detail.into(),
    }
}

/// Runs every check, prints the report, and exits 1 when one failed.
pub fn run(global: &Config, json: bool) -> Result<ExitCode> {
    let mut checks = vec![bridge_dir(global), compile_cache(global), relay(global)];
    checks.extend(clients::checks());
    if json {
        let failed = checks.iter().any(|c| c.status == Status::Fail);
        let report = serde_json::json!({ "ok": !failed, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&checks));
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The report as a table: CHECK, STATUS, DETAIL, the detail's further
/// lines indented under it.
fn table(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let mut out = format!("{:width$}  STATUS  DETAIL\n", "CHECK");
    for c in checks {
        let mut lines = c.detail.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(&format!(
            "{:width$}  {:6}  {first}\n",
            c.name,
            c.status.word()
        ));
        for more in lines {
            out.push_str(&format!("{:width$}  {:6}  {more}\n", "", ""));
        }
    }
    out
}

/// The bridge directory `--bridge-dir`, `BRIDGE_DIR` or the default
/// names, without creating it.
fn bridge_dir_path(global: &Config) -> Result<PathBuf> {
    match &global.bridge_dir {
        Some(dir) => absolute(dir),
        None => crate::invoke::default_bridge_dir(),
    }
}

fn bridge_dir(global: &Config) -> Check {
    const NAME: &str = "bridge directory";
    let path = match bridge_dir_path(global) {
        Ok(path) => path,
        Err(err) => return check(NAME, Status::Fail, format!("{err:#}")),
    };
    if !path.exists() {
        return check(
            NAME,
            Status::Warn,
            format!(
                "{} does not exist yet; the first session creates it (mode 0700)",
                path.display()
            ),
        );
    }
    if let Err(err) = crate::dirs::check_private_dir(&path, "bridge directory") {
        return check(NAME, Status::Fail, format!("{err:#}"));
    }
    let loose = match crate::dirs::check_session_dirs(&path) {
        Ok(loose) => loose,
        Err(err) => return check(NAME, Status::Fail, format!("{err:#}")),
    };
    let sessions = count_dirs(&path.join("sessions"));
    let mut detail = format!(
        "{} (private to you), {sessions} session{}",
        path.display(),
        if sessions == 1 { "" } else { "s" }
    );
    if loose.is_empty() {
        return check(NAME, Status::Ok, detail);
    }
    for session in &loose {
        detail.push_str(&format!("\n{}: {}", session.name, session.problem));
    }
    check(NAME, Status::Warn, detail)
}

fn count_dirs(path: &Path) -> usize {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count()
    })
}

fn compile_cache(global: &Config) -> Check {
    const NAME: &str = "compile cache";
    let shipped = if crate::compile_cache::load_shipped().is_some() {
        "the embedded guest is shipped compiled, so it needs no cache"
    } else {
        "the embedded guest is not shipped compiled for this machine: its first run compiles it"
    };
    let Some(dir) = global
        .cache_dir
        .clone()
        .or_else(crate::compile_cache::default_dir)
    else {
        return check(
            NAME,
            Status::Warn,
            format!("no cache directory (set HOME, XDG_CACHE_HOME or --cache-dir); {shipped}"),
        );
    };
    if !dir.exists() {
        return check(
            NAME,
            Status::Ok,
            format!("{} (not created yet); {shipped}", dir.display()),
        );
    }
    match crate::dirs::check_private_dir(&dir, "compile cache") {
        Ok(()) => {
            let entries = std::fs::read_dir(&dir).map_or(0, |e| {
                e.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .count()
            });
            check(
                NAME,
                Status::Ok,
                format!("{} ({entries} files); {shipped}", dir.display()),
            )
        }
        Err(err) => check(NAME, Status::Fail, format!("{err:#}")),
    }
}

fn relay(global: &Config) -> Check {
    const NAME: &str = "relay";
    let dir = match bridge_dir_path(global) {
        Ok(dir) => dir,
        Err(err) => return check(NAME, Status::Fail, format!("{err:#}")),
    };
    match crate::relay::health(&dir) {
        crate::relay::RelayHealth::Off => check(
            NAME,
            Status::Off,
            "not configured (BRIDGE_RELAY_SERVER is not set): sessions on this machine only",
        ),
        crate::relay::RelayHealth::Configured {
            server,
            running,
            reached,
        } => {
            let process = if running {
                "a relay runs for this bridge directory"
            } else {
                "no relay runs for this bridge directory now; the next session starts one \
                 (or run bridge-host relay)"
            };
            match reached {
                Ok(said) => check(
                    NAME,
                    if running { Status::Ok } else { Status::Warn },
                    format!("{server}: reached {said}, with this machine's credentials; {process}"),
                ),
                Err(why) => check(NAME, Status::Fail, format!("{server}: {why}; {process}")),
            }
        }
    }
}

/// Runs `program args` and returns its standard output's first line, or
/// why not; a program that runs longer than [`VERSION_WAIT`] is killed.
fn first_line_of(program: &Path, args: &[&str]) -> Result<String, String> {
    Ok(output_of(program, args)?
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string())
}

/// Runs `program args` and returns its standard output, or why not; a
/// program that runs longer than [`VERSION_WAIT`] is killed.
fn output_of(program: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < VERSION_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not answer within {}s",
                    program.display(),
                    VERSION_WAIT.as_secs()
                ));
            }
            Err(e) => return Err(format!("{e}")),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot read {}: {e}", program.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}",
            program.display(),
            output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The first `name` on PATH that is an executable file.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
        || std::fs::metadata(path.with_extension("exe")).is_ok_and(|m| m.is_file())
        || std::fs::metadata(path.with_extension("cmd")).is_ok_and(|m| m.is_file())
}
