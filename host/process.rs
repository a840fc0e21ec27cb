//! Which process is which, for the hooks' restart-race guard: a running
//! process, told apart from a later one that reuses its PID by its start
//! time.
//!
//! On Linux the start time and parent come from `/proc/<pid>/stat`. On
//! macOS and the other Unixes (and on Linux with the `portable` feature)
//! they come from `ps -o ppid= -o lstart= -o comm=`, whose start time is
//! given to the second. On Windows no process is identified (see
//! [`ProcessId::unsupported`]).

/// A running process and when it started. The start time is kept as text:
/// clock ticks since boot on Linux, the start date from `ps` elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: String,
}

/// The shells Claude Code may run a hook's command line in.
#[cfg(unix)]
fn is_shell(command: &str) -> bool {
    // `ps` may give a path, and a login shell's name starts with '-'.
    let name = command.rsplit('/').next().unwrap_or(command);
    let name = name.trim_start_matches('-');
    matches!(name, "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash")
}

impl ProcessId {
    /// The Claude Code process that ran this hook: the parent, or the
    /// grandparent when the parent is the shell Claude Code ran the hook's
    /// command line in. None when it cannot be told (see
    /// [`ProcessId::unsupported`]).
    pub fn claude() -> Option<Self> {
        #[cfg(unix)]
        {
            let parent = std::os::unix::process::parent_id();
            let (grandparent, _, command) = sys::read(parent)?;
            let claude = if is_shell(&command) {
                grandparent
            } else {
                parent
            };
            Self::of(claude)
        }
        #[cfg(not(unix))]
        None
    }

    /// The process `pid`, if it is running.
    pub fn of(pid: u32) -> Option<Self> {
        #[cfg(unix)]
        {
            let (_, start_time, _) = sys::read(pid)?;
            Some(ProcessId { pid, start_time })
        }
        #[cfg(not(unix))]
        {
            let _ = pid;
            None
        }
    }

    pub fn is_running(&self) -> bool {
        Self::of(self.pid).as_ref() == Some(self)
    }

    /// Why [`ProcessId::claude`] found nothing, when the platform is the
    /// reason; None where it should have worked.
    pub fn unsupported() -> Option<&'static str> {
        if cfg!(unix) {
            None
        } else {
            Some("bridge-host cannot identify processes on this platform")
        }
    }

    /// The agent session ID of the bridge session that the Gemini CLI
    /// process `self` has: its MCP server (`bridge-host mcp`) and its hooks
    /// are both its children, so each finds it with [`ProcessId::claude`]
    /// and names the same session. Gemini CLI tells neither its session ID
    /// when it starts the server (checked with 0.61.0: no variable, and a
    /// tool call's `_meta` holds only the progress token).
    pub fn gemini_agent_session(&self) -> String {
        // `ps` gives the start as a date with colons; the agent session ID
        // takes letters, digits, '-', '_' and '.'.
        let start: String = self
            .start_time
            .chars()
            .take(64)
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
                _ => '.',
            })
            .collect();
        format!("gemini-{}-{start}", self.pid)
    }

    /// The form [`ProcessId::parse`] reads.
    pub fn to_text(&self) -> String {
        format!("{} {}", self.pid, self.start_time)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (pid, start_time) = text.trim().split_once(' ')?;
        (!start_time.is_empty() && !start_time.contains(char::is_whitespace)).then_some(())?;
        Some(ProcessId {
            pid: pid.parse().ok()?,
            start_time: start_time.to_string(),
        })
    }
}

/// `/proc/<pid>/stat`: parent, start time and command name.
#[cfg(native_linux)]
mod sys {
    pub fn read(pid: u32) -> Option<(u32, String, String)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces;
        // the fields after it are plain. Parent is field 4, start time 22.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let command = stat.get(open + 1..close)?.to_string();
        let mut after_name = stat.get(close + 2..)?.split(' ');
        let parent = after_name.nth(1)?.parse().ok()?;
        let start_time: u64 = after_name.nth(17)?.parse().ok()?;
        Some((parent, start_time.to_string(), command))
    }
}

/// `ps`, with the same fields on macOS, the BSDs and Linux (procps).
#[cfg(all(unix, not(native_linux)))]
mod sys {
    use std::process::{Command, Stdio};

    pub fn read(pid: u32) -> Option<(u32, String, String)> {
        let ps = ["/bin/ps", "/usr/bin/ps"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("ps");
        let output = Command::new(ps)
            .args(["-o", "ppid=", "-o", "lstart=", "-o", "comm=", "-p"])
            .arg(pid.to_string())
            // `lstart` is a date in the locale's words.
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// `  4242 Tue Dec  1 22:40:53 2026 /bin/zsh`: the parent, the start
    /// date's five words and the command, which may hold spaces.
    pub(super) fn parse(line: &str) -> Option<(u32, String, String)> {
        let mut words = line.split_whitespace();
        let parent = words.next()?.parse().ok()?;
        let start: Vec<&str> = words.by_ref().take(5).collect();
        if start.len() != 5 {
            return None;
        }
        let command = words.collect::<Vec<_>>().join(" ");
        Some((parent, start.join("_"), command))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn ps_lines_give_parent_start_and_command() {
            assert_eq!(
                super::parse("  4242 Tue Dec  1 22:40:53 2026 /Applications/My App/claude\n"),
                Some((
                    4242,
                    "Tue_Dec_1_22:40:53_2026".to_string(),
                    "/Applications/My App/claude".to_string()
                ))
            );
            assert_eq!(super::parse("4242 Tue Dec 1"), None);
            assert_eq!(super::parse(""), None);
        }
    }
}

/// Makes `command` start in a session of its own, so that it outlives the
/// hook that starts it: the hook's process group ends with the hook.
/// Elsewhere than Unix the child is left as it is.
/// Starts `command` detached (see [`detach`]), with no standard input and
/// its output appended to the private file `log` (created 0600), or
/// discarded without one. `what` names the process in errors.
pub fn spawn_detached(
    command: &mut std::process::Command,
    log: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<std::process::Child> {
    use anyhow::Context;
    use std::process::Stdio;
    command.stdin(Stdio::null());
    match log {
        Some(log) => {
            let file = crate::dirs::new_file_options(
                std::fs::OpenOptions::new().append(true).create(true),
                0o600,
            )
            .open(log)
            .with_context(|| format!("cannot open the {what}'s log {}", log.display()))?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    detach(command);
    command
        .spawn()
        .with_context(|| format!("cannot start the {what}"))
}

pub fn detach(command: &mut std::process::Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches nothing else.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    #[cfg(not(unix))]
    let _ = command;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_and_its_record_round_trips() {
        let me = ProcessId::of(std::process::id()).expect("this process is running");
        assert!(me.is_running());
        assert_eq!(ProcessId::parse(&me.to_text()), Some(me.clone()));
        let reused = ProcessId {
            start_time: format!("{}0", me.start_time),
            ..me
        };
        assert!(
            !reused.is_running(),
            "a PID reused later is another process"
        );
        assert!(is_shell("-zsh") && is_shell("/bin/sh") && !is_shell("node"));
    }

    #[test]
    fn a_gemini_process_names_an_agent_session_the_guest_accepts() {
        let linux = ProcessId::parse("4242 123456").unwrap();
        assert_eq!(linux.gemini_agent_session(), "gemini-4242-123456");
        let ps = ProcessId::parse("4242 Tue_Dec_1_22:40:53_2026").unwrap();
        assert_eq!(
            ps.gemini_agent_session(),
            "gemini-4242-Tue_Dec_1_22.40.53_2026"
        );
    }
}
