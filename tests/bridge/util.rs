//! Drives the real `bridge-host` binary in a fresh temporary bridge
//! directory, with an environment cleared of every `BRIDGE_*` and
//! `CLAUDE_*` variable. A failing expectation prints the command, its
//! output and the bridge directory's contents.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_bridge-host");

/// A compile cache shared by every test, so the guest is compiled once per
/// test run rather than once per command.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")
}

/// One temporary world: a home, a bridge directory and project folders.
pub struct World {
    pub root: tempfile::TempDir,
    pub bridge: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("bridge-test")
            .tempdir()
            .expect("temp dir");
        let bridge = root.path().join("home/.claude/session-bridge");
        World { root, bridge }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// A project directory (created) named `name`.
    pub fn project(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join("projects").join(name);
        std::fs::create_dir_all(&dir).expect("project dir");
        dir
    }

    /// A command run from `cwd`.
    pub fn cmd(&self, cwd: &Path) -> Cmd {
        self.in_world(Command::new(BIN), cwd, vec![])
    }

    /// `sh -c script` run from `cwd`, with the same environment as
    /// [`World::cmd`] plus a `PATH` of the system's directories.
    pub fn sh(&self, cwd: &Path, script: &str) -> Cmd {
        let mut command = Command::new("sh");
        // Its own process group, so that a test can stop the shell together
        // with whatever it started.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
            .arg("-c")
            .arg(script)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        self.in_world(command, cwd, vec!["sh -c".into(), script.into()])
    }

    /// `command` with only this world's environment, run from `cwd`.
    fn in_world(&self, mut command: Command, cwd: &Path, shown: Vec<OsString>) -> Cmd {
        let path = command
            .get_envs()
            .find(|(k, _)| *k == "PATH")
            .and_then(|(_, v)| v.map(|v| v.to_os_string()));
        command
            .env_clear()
            .env("HOME", self.home())
            .env("BRIDGE_DIR", &self.bridge)
            .env("BRIDGE_CACHE_DIR", shared_cache())
            .current_dir(cwd);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        Cmd {
            command,
            stdin: None,
            bridge: self.bridge.clone(),
            shown,
        }
    }

    /// `bridge-host run start` in `project`, returning the session ID.
    pub fn start(&self, project: &Path) -> String {
        self.cmd(project)
            .args(["run", "start"])
            .ok()
            .trim()
            .to_string()
    }

    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.bridge.join("sessions").join(id)
    }
}

pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Tolerate entries that vanish while concurrent commands run.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path.clone());
                files.insert(path, b"<dir>".to_vec());
            } else if meta.is_file() {
                if let Ok(bytes) = std::fs::read(&path) {
                    files.insert(path, bytes);
                }
            } else {
                files.insert(path, b"<other>".to_vec());
            }
        }
    }
    files
}

pub fn listing(dir: &Path) -> String {
    snapshot(dir)
        .keys()
        .map(|p| format!("  {}\n", p.strip_prefix(dir).unwrap_or(p).display()))
        .collect()
}

/// A `bridge-host` invocation being built.
pub struct Cmd {
    command: Command,
    stdin: Option<Vec<u8>>,
    bridge: PathBuf,
    shown: Vec<OsString>,
}

impl Cmd {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            self.shown.push(arg.as_ref().to_os_string());
            self.command.arg(arg);
        }
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Starts the command; standard input is fed on a thread, so a large
    /// input cannot deadlock against the child's output.
    pub fn spawn(mut self) -> Child {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("spawn bridge-host");
        let mut pipe = child.stdin.take().unwrap();
        let input = self.stdin.take();
        std::thread::spawn(move || {
            if let Some(bytes) = input {
                let _ = pipe.write_all(&bytes);
            }
        });
        child
    }

    /// Starts the command with its standard input left open to the
    /// caller (a client that speaks to it, such as an MCP client).
    pub fn spawn_open(mut self) -> Child {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        self.command.spawn().expect("spawn bridge-host")
    }

    pub fn output(self) -> (Output, String) {
        let (shown, bridge) = (self.shown.clone(), self.bridge.clone());
        let output = self.spawn().wait_with_output().expect("wait bridge-host");
        let description = describe(&shown, &bridge, &output);
        (output, description)
    }

    /// Runs, expects success, returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        let (output, description) = self.output();
        assert!(output.status.success(), "expected success\n{description}");
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// Runs with `--json`, expects success, returns the parsed object.
    #[track_caller]
    pub fn json(self) -> Value {
        let text = self.args(["--json"]).ok();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Runs, expects exit code 1, returns (stdout, stderr).
    #[track_caller]
    pub fn fails(self) -> (String, String) {
        let (output, description) = self.output();
        assert_eq!(
            output.status.code(),
            Some(1),
            "expected exit 1\n{description}"
        );
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn describe(shown: &[OsString], bridge: &Path, output: &Output) -> String {
    format!(
        "command: bridge-host {shown:?}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}\nbridge directory:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        listing(bridge)
    )
}

/// Parses a delivered message as the agent reads it: the fields of the
/// `<peer-message ...>` line under the reference's names (`MESSAGE_ID`,
/// `FROM_ID`, `TO_ID`, `TYPE`, `IN_REPLY_TO`, plus `FROM_PROJECT` from the
/// first line and `FIRST_LINE` itself), and the content between the fences.
pub fn parse_listen(text: &str) -> (BTreeMap<String, String>, String) {
    let first = text.lines().next().unwrap_or_default();
    let open = text
        .find("<peer-message ")
        .unwrap_or_else(|| panic!("no <peer-message line in: {text:?}"));
    let line_end = open
        + text[open..]
            .find('\n')
            .expect("a line after the opening tag");
    let mut fields = BTreeMap::new();
    for word in text[open..line_end].split(' ') {
        if let Some((key, value)) = word.split_once('=') {
            let name = match key {
                "id" => "MESSAGE_ID",
                "from" => "FROM_ID",
                "to" => "TO_ID",
                "type" => "TYPE",
                "in-reply-to" => "IN_REPLY_TO",
                "fence" => "FENCE",
                _ => continue,
            };
            let value = value.trim_end_matches('>');
            let value = if value == "-" { "" } else { value };
            fields.insert(name.to_string(), value.to_string());
        }
    }
    let project = first
        .split_once('"')
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(name, _)| name);
    fields.insert("FROM_PROJECT".into(), project.into());
    fields.insert("FIRST_LINE".into(), first.into());
    let close = format!("</peer-message fence={}>", fields["FENCE"]);
    let body = &text[line_end + 1..];
    let end = body
        .find(&close)
        .unwrap_or_else(|| panic!("no closing {close} in: {text:?}"));
    let content = body[..end].strip_suffix('\n').unwrap_or(&body[..end]);
    (fields, content.to_string())
}

/// The sender's project and the content of a reply that `ask` or `receive`
/// printed, checking the first line says what a reply says and the command
/// after it follows up on this reply.
pub fn parse_reply(text: &str) -> (String, String) {
    let (fields, content) = parse_listen(text);
    let first = &fields["FIRST_LINE"];
    assert!(first.starts_with("Reply from "), "not a reply: {text:?}");
    let script = answer_script(text, "x");
    assert!(
        script.starts_with(&format!(
            "bridge-host run ask {} --in-reply-to {} - <<'ANSWER_",
            fields["FROM_ID"], fields["MESSAGE_ID"]
        )),
        "the text does not give the command that answers: {text:?}"
    );
    (fields["FROM_PROJECT"].clone(), content)
}

/// The command a delivered message's text says answers it, as a shell
/// script: the `bridge-host run …` line that opens a quoted here-document,
/// its `<answer>` line replaced by `answer`, and the closing line. The
/// text must give the block exactly so, and never in double quotes.
pub fn answer_script(text: &str, answer: &str) -> String {
    assert!(
        !text.contains("\"<answer>\""),
        "a double-quoted answer template: {text:?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("bridge-host run ") && l.contains(" - <<'ANSWER_"))
        .unwrap_or_else(|| panic!("no answering command in: {text:?}"));
    let delimiter = lines[at]
        .rsplit_once("<<'")
        .and_then(|(_, d)| d.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no quoted delimiter: {:?}", lines[at]));
    assert_eq!(
        lines.get(at + 1..at + 3),
        Some(&["<answer>", delimiter][..]),
        "{text:?}"
    );
    format!("{}\n{answer}\n{delimiter}\n", lines[at])
}

/// [`answer_script`] as a shell would run it: the words of the command
/// line after `bridge-host` (the here-document operator left out) and the
/// standard input the here-document feeds.
pub fn answer_command(text: &str, answer: &str) -> (Vec<String>, String) {
    let script = answer_script(text, answer);
    let (line, _) = script.split_once('\n').unwrap();
    let words: Vec<String> = line
        .split(' ')
        .skip(1)
        .filter(|w| !w.starts_with("<<'"))
        .map(str::to_string)
        .collect();
    (words, format!("{answer}\n"))
}

/// The probe guest (tests/guests/probe), built once per test run.
pub fn probe_guest() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("probe-guest");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
            ])
            .arg("--manifest-path")
            .arg(root.join("tests/guests/probe/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo for the probe guest");
        assert!(status.success(), "building the probe guest failed");
        target_dir.join("wasm32-wasip2/release/probe_guest.wasm")
    })
}

/// True when `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a pinned client CLI is there: `$env_var` names one, or `npm ci
/// --prefix .ci/<prefix>` installed `bin`.
pub fn pinned_cli(env_var: &str, prefix: &str, bin: &str) -> bool {
    std::env::var_os(env_var).is_some()
        || Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ci")
            .join(prefix)
            .join("node_modules/.bin")
            .join(bin)
            .exists()
}

/// A pinned client's program, `npm ci --prefix .ci/<dir>` installed as
/// `program`. When it is not there, `test` (its name, for the message)
/// fails under `CI=true` and is skipped elsewhere, saying so.
pub fn pinned(dir: &str, program: &str, test: &str) -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci")
        .join(dir)
        .join("node_modules/.bin")
        .join(program);
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run under CI: no .ci/{dir}"
    );
    eprintln!("skipped: {test} needs npm ci --prefix .ci/{dir}");
    None
}

/// The names of the `needs` that are not there, joined; None when all are.
pub fn absent(needs: &[(&str, bool)]) -> Option<String> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| *name)
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Runs the Python scenario `script` (relative to the repository) against
/// this build's bridge-host, and asserts that it exited 0 with a last line
/// `<label>: N passed, 0 failed`. When something it needs is `missing`, it
/// fails under `CI=true` and is skipped elsewhere, saying so.
pub fn python_scenario(script: &str, label: &str, missing: Option<String>) {
    if let Some(absent) = missing {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the {label} test cannot run under CI: missing {absent}"
        );
        eprintln!("skipped: the {label} test needs {absent}");
        return;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(Path::new(repo).join(script))
        .current_dir(repo)
        .env("BRIDGE_HOST_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("BRIDGE_DIR")
        .env_remove("BRIDGE_SESSION_ID")
        .env_remove("BRIDGE_CACHE_DIR")
        .env_remove("BRIDGE_GUEST")
        .env_remove("BRIDGE_GUEST_SETTINGS")
        .env_remove("PROJECT_DIR")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the {label} scenario failed:\n{stdout}{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("{label}: ")) && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
}
