#!/usr/bin/env python3
"""Drive the real Claude Code CLI interactively, in tmux, against the local
model stub (``model_stub.py``). Standard library only (Python 3.11).

Nothing here reaches beyond 127.0.0.1: Claude Code gets
``ANTHROPIC_BASE_URL`` and ``HTTPS_PROXY``/``HTTP_PROXY`` pointing at the
stub, which refuses every proxy request, and the two switches that stop its
start-up traffic. Every Claude Code run has a throwaway ``HOME``.

Library::

    with Stub(log=..., persona="default") as stub, \\
         Claude(project_dir, stub, bridge_dir=..., cache_dir=...) as cc:
        cc.wait_ready()
        cc.type_line("/session-bridge:status")
        cc.wait_for(lambda: stub.find(main=True, answer_rule="rule_a_tool_result"), 60)
        if cc.permission_prompt():
            cc.answer_permission(True)
        cc.exit()

CLI (``python3 harness.py -h``)::

    python3 harness.py smoke            # the end-to-end smoke
    python3 harness.py explore ...      # the runs NOTES.md reports
    python3 harness.py timing ...       # start-up timing

Which Claude Code: ``$CLAUDE_CODE_BIN`` (a path), else
``$CLAUDE_CODE_VERSION`` (installed with npm into
``~/.cache/session-bridge-tests/claude-code-<version>``), else the pinned one
in ``.ci/claude-code`` (``npm ci`` run there when it is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PLUGIN_DIR = REPO / "plugin"
PINNED_DIR = REPO / ".ci" / "claude-code"
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "session-bridge-tests"

# What the input prompt looks like when Claude Code waits for the user: the
# "❯" line between two horizontal rules (2.1.197 and 2.1.332).
PROMPT_RE = re.compile(r"^─{20,}\n❯ ?(.*)\n─{20,}$", re.M)
# A tool permission prompt (2.1.197 and 2.1.332 alike).
PERMISSION_RE = re.compile(r"Do you want to proceed\?")
# First-run dialogs that a pre-written HOME should have skipped; seeing one
# means make_home() needs another key for this version.
DIALOG_RES = {
    "trust": re.compile(r"Do you trust the files in this folder|Is this a project you created or one you trust"),
    "api key": re.compile(r"Detected a custom API key"),
    "theme": re.compile(r"Choose the text style that looks best"),
    "auto mode offer": re.compile(r"Make auto mode your default permission mode\?"),
    "login": re.compile(r"Select login method"),
}


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# Which binaries.
# --------------------------------------------------------------------------


def claude_bin() -> Path:
    """The Claude Code executable to test (see the module's doc)."""
    if os.environ.get("CLAUDE_CODE_BIN"):
        path = Path(os.environ["CLAUDE_CODE_BIN"])
        if not os.access(path, os.X_OK):
            raise HarnessError(f"CLAUDE_CODE_BIN={path} is not executable")
        return path
    version = os.environ.get("CLAUDE_CODE_VERSION")
    if version:
        if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
            raise HarnessError(f"CLAUDE_CODE_VERSION={version!r}: expected x.y.z")
        prefix = CACHE_ROOT / f"claude-code-{version}"
        binary = prefix / "node_modules" / ".bin" / "claude"
        if not binary.exists():
            prefix.mkdir(parents=True, exist_ok=True)
            run(["npm", "install", "--prefix", str(prefix), "--no-fund", "--no-audit",
                 "--no-save", f"@anthropic-ai/claude-code@{version}"], timeout=600, stdout=sys.stderr)
        return binary
    binary = PINNED_DIR / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        run(["npm", "ci", "--prefix", str(PINNED_DIR), "--no-fund", "--no-audit"], timeout=600, stdout=sys.stderr)
    return binary


def claude_version(binary: Path) -> str:
    home = tempfile.mkdtemp(prefix="cc-version-home-")
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                             env={"PATH": SYSTEM_PATH, "HOME": home, **OFFLINE_ENV,
                                  # nothing listens on port 9 here: any request fails at once
                                  **{k: "http://127.0.0.1:9" for k in ("ANTHROPIC_BASE_URL", "HTTPS_PROXY",
                                                                        "HTTP_PROXY")}}).stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)
    found = re.search(r"\d+\.\d+\.\d+", out)
    return found.group(0) if found else "unknown"


def bridge_host_bin() -> Path | None:
    """The real bridge-host: $BRIDGE_HOST_BIN, else target/release, else
    target/debug."""
    if os.environ.get("BRIDGE_HOST_BIN"):
        return Path(os.environ["BRIDGE_HOST_BIN"]).absolute()
    for kind in ("release", "debug"):
        candidate = REPO / "target" / kind / "bridge-host"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def run(cmd: list[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, timeout=timeout, **kw)


# Marks the environment of every process a Claude run starts (see
# processes_with_marker).
RUN_MARKER = "SESSION_BRIDGE_REAL_CLIENT_RUN"

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Switches that keep Claude Code offline; the stub's address is added per run.
OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "ANTHROPIC_API_KEY": "test",
}


# --------------------------------------------------------------------------
# The model stub, as a child process.
# --------------------------------------------------------------------------


class Stub:
    """``model_stub.py`` running in its own process; ``port`` once started."""

    def __init__(self, log: Path, persona: str = "default", dump_dir: Path | None = None):
        self.log = Path(log)
        self.persona = persona
        self.dump_dir = dump_dir
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> "Stub":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        port_file = self.log.with_suffix(".port")
        port_file.unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / "model_stub.py"), "--log", str(self.log),
               "--port-file", str(port_file), "--persona", self.persona,
               "--exit-with-parent", str(os.getpid())]
        if self.dump_dir:
            cmd += ["--dump-dir", str(self.dump_dir)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise HarnessError("the model stub did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "Stub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def find(self, since: int = 0, **want: Any) -> list[dict]:
        """Log entries (from the ``since``-th on) whose fields match ``want``.
        ``answer_<field>`` looks inside ``answer`` (``answer_type``,
        ``answer_rule``, ``answer_command``); a key ending in ``_contains``
        matches a substring."""
        out = []
        for entry in self.entries()[since:]:
            if all(_field_matches(entry, key, value) for key, value in want.items()):
                out.append(entry)
        return out

    def proxy_refusals(self) -> list[str]:
        return [e["proxy_refused"] for e in self.entries() if "proxy_refused" in e]


def _field_matches(entry: dict, key: str, value: Any) -> bool:
    contains = key.endswith("_contains")
    if contains:
        key = key[: -len("_contains")]
    holder = entry
    if key.startswith("answer_"):
        holder = entry.get("answer") if isinstance(entry.get("answer"), dict) else {}
        key = key[len("answer_"):]
    got = holder.get(key)
    if contains:
        return isinstance(got, str) and value in got
    return got == value


# --------------------------------------------------------------------------
# A throwaway HOME.
# --------------------------------------------------------------------------


def make_home(project_dir: Path, version: str, home: Path | None = None,
              settings: dict | None = None) -> Path:
    """A fresh HOME in which Claude Code reaches its prompt with no dialog:
    onboarding done, ``project_dir`` trusted, the API key approved, release
    notes seen; ``~/.claude/settings.json`` with ``permissions.defaultMode``
    "default" and no allow rules."""
    home = Path(home or tempfile.mkdtemp(prefix="cc-home-"))
    project = str(Path(project_dir).resolve())
    api_key = OFFLINE_ENV["ANTHROPIC_API_KEY"]
    state = {
        "numStartups": 1,
        "installMethod": "npm-local",
        "autoUpdates": False,
        "theme": "dark",
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": version,
        "lastReleaseNotesSeen": version,
        "hasSeenTasksHint": True,
        # 2.1.332: without these, "Make auto mode your default permission mode?"
        # comes up a few seconds after the prompt.
        "hasSeenAutoDefaultNotice": True,
        "hasSeenAutoDefaultNudge": True,
        "hasSeenAutoModeEntryWarning": True,
        "hasAcknowledgedCostThreshold": True,
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
        "projects": {
            project: {
                "allowedTools": [],
                "hasTrustDialogAccepted": True,
                "hasCompletedProjectOnboarding": True,
                "projectOnboardingSeenCount": 1,
                "hasClaudeMdExternalIncludesApproved": False,
                "hasClaudeMdExternalIncludesWarningShown": False,
            }
        },
    }
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    (home / ".claude.json").write_text(json.dumps(state, indent=2))
    (home / ".claude" / "settings.json").write_text(
        json.dumps(settings if settings is not None else {"permissions": {"defaultMode": "default"}}, indent=2)
    )
    return home


# --------------------------------------------------------------------------
# Processes.
# --------------------------------------------------------------------------


def processes_in_session(sid: int) -> list[int]:
    """PIDs whose session ID is ``sid``: for the pane's shell, Claude Code
    and its Bash commands (not its hooks: see processes_with_marker)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session
            out.append(int(entry.name))
    return out


def processes_with_marker(marker: str) -> list[int]:
    """PIDs whose environment holds ``RUN_MARKER=<marker>``: Claude Code and
    everything it started, hooks included (Claude Code starts hooks in
    sessions of their own, and they outlive it when it does not end them)."""
    needle = f"{RUN_MARKER}={marker}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            out.append(int(entry.name))
    return out


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd}"


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------
# Claude Code in tmux.
# --------------------------------------------------------------------------


_RUN_COUNTER = itertools.count(1)


class Claude:
    """One interactive Claude Code, in a tmux server of its own
    (``tmux -L <socket>``)."""

    def __init__(self, project_dir: Path, stub: Stub, *, bridge_dir: Path | None = None,
                 cache_dir: Path | None = None, plugin_dir: Path | None = PLUGIN_DIR,
                 binary: Path | None = None, home: Path | None = None,
                 extra_env: dict[str, str] | None = None, extra_args: list[str] | None = None,
                 width: int = 200, height: int = 50, name: str = "cc"):
        self.project_dir = Path(project_dir).resolve()
        self.stub = stub
        self.bridge_dir = bridge_dir
        self.cache_dir = cache_dir
        self.plugin_dir = plugin_dir
        self.binary = Path(binary) if binary else claude_bin()
        self.version = claude_version(self.binary)
        self.home = make_home(self.project_dir, self.version, home)
        self.status_file = self.home / ".claude-exit-status"
        self.extra_env = extra_env or {}
        self.extra_args = extra_args or []
        self.width, self.height = width, height
        self.socket = f"rc-{name}-{os.getpid()}-{next(_RUN_COUNTER)}-{int(time.time() * 1000) % 10**8}"
        self.pid: int | None = None
        self.exit_seconds: float | None = None
        self.leftovers: list[str] = []
        self.started_at: float | None = None
        self.ready_at: float | None = None

    # --- environment

    def env(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.stub.port}"
        env = {
            # A fixed PATH: no bridge-host installed in ~/.cargo/bin is found
            # by the plugin's script; BRIDGE_HOST_BIN names the one to test.
            "PATH": SYSTEM_PATH,
            "HOME": str(self.home),
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            **OFFLINE_ENV,
            "ANTHROPIC_BASE_URL": proxy,
            "HTTPS_PROXY": proxy,
            "HTTP_PROXY": proxy,
            "https_proxy": proxy,
            "http_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        if self.bridge_dir:
            env["BRIDGE_DIR"] = str(self.bridge_dir)
        if self.cache_dir:
            env["BRIDGE_CACHE_DIR"] = str(self.cache_dir)
        host = bridge_host_bin()
        if host:
            env["BRIDGE_HOST_BIN"] = str(host)
        env.update(self.extra_env)
        env[RUN_MARKER] = self.socket
        return env

    def command(self) -> list[str]:
        cmd = [str(self.binary)]
        if self.plugin_dir:
            cmd += ["--plugin-dir", str(self.plugin_dir)]
        return cmd + self.extra_args

    # --- tmux

    def tmux(self, *args: str, check: bool = True, timeout: float = 10) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise HarnessError(f"tmux {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def start(self) -> "Claude":
        env_args = [f"{k}={v}" for k, v in self.env().items()]
        self.started_at = time.monotonic()
        # env -i: nothing of this process's environment (a parent Claude
        # Code's variables, say) reaches the tested one.
        # remain-on-exit in the same tmux command, so an early exit still
        # leaves the pane (and its exit status) to read.
        # A shell around it writes its exit status (tmux's pane_dead_status
        # is sometimes still empty when the pane shows dead).
        wrapper = ["/bin/sh", "-mc", 'env -i "$@"; echo $? > "$STATUS_FILE.tmp"; mv "$STATUS_FILE.tmp" "$STATUS_FILE"', "sh"]
        self.tmux("new-session", "-d", "-s", "main", "-x", str(self.width), "-y", str(self.height),
                  "-e", f"STATUS_FILE={self.status_file}",
                  "-c", str(self.project_dir), *wrapper, *env_args, *self.command(),
                  ";", "set-option", "-w", "-t", "main", "remain-on-exit", "on")
        self.pid = int(self.tmux("display-message", "-p", "-t", "main", "#{pane_pid}").strip())
        return self

    def __enter__(self) -> "Claude":
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            with contextlib.suppress(Exception):
                sys.stderr.write(f"--- screen at failure ---\n{self.capture()}\n---\n")
        self.kill()

    def capture(self, history: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", "main"]
        if history:
            args += ["-S", "-2000"]
        return self.tmux(*args, check=False)

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str = "condition",
                 interval: float = 0.1) -> Any:
        """Poll ``condition`` until it returns something truthy (returned), at
        most ``timeout`` seconds; HarnessError after that."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def wait_screen(self, pattern: str | re.Pattern, timeout: float = 30) -> re.Match:
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        return self.wait_for(lambda: rx.search(self.capture()), timeout, f"screen to match {rx.pattern!r}")

    def prompt_ready(self) -> bool:
        """The input box is shown, empty, and nothing is running."""
        screen = self.capture()
        found = list(PROMPT_RE.finditer(screen))
        if not found or found[-1].group(1).strip():
            return False
        return not re.search(r"esc to interrupt|Do you want to proceed\?", screen)

    def dialog(self) -> str | None:
        """The name of a first-run dialog on screen, if any."""
        screen = self.capture()
        return next((name for name, rx in DIALOG_RES.items() if rx.search(screen)), None)

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait for the empty input prompt; seconds since start. Fails at
        once on a first-run dialog or an early exit."""
        self.wait_for(lambda: self.prompt_ready() or self.dialog() or (not self.alive() and "dead"),
                      timeout, "the input prompt", interval=0.05)
        if not self.alive():
            raise HarnessError(f"Claude Code exited before its prompt:\n{self.capture()}")
        if self.dialog():
            raise HarnessError(f"a first-run dialog ({self.dialog()}) instead of the prompt:\n{self.capture()}")
        if self.ready_at is None:
            self.ready_at = time.monotonic()
        return time.monotonic() - (self.started_at or 0)

    def type_line(self, line: str, settle: float = 0.5) -> None:
        """Type ``line`` into the prompt and press Enter."""
        self.tmux("send-keys", "-t", "main", "-l", line)
        # Wait for the text to show in the input box, so Enter is not taken
        # by a completion menu that is still opening.
        probe = line[-20:]
        self.wait_for(lambda: probe in self.capture(), 10, "the typed text on screen")
        time.sleep(settle)
        self.tmux("send-keys", "-t", "main", "Enter")

    def permission_prompt(self) -> str | None:
        """The permission prompt on screen (from its "Bash command" line on),
        or None."""
        screen = self.capture()
        if not PERMISSION_RE.search(screen):
            return None
        start = screen.rfind(" Bash command")
        return screen[start if start >= 0 else 0:].rstrip()

    def answer_permission(self, allow: bool = True, timeout: float = 10) -> None:
        """Answer the permission prompt: Enter takes the highlighted "1. Yes";
        Escape cancels (the model is told the user said no). 2.1.332 ignores
        keys for a moment after a dialog appears, so the key is sent again
        until the prompt goes."""
        deadline = time.monotonic() + timeout
        time.sleep(0.3)
        while self.permission_prompt():
            if time.monotonic() > deadline:
                raise HarnessError(f"the permission prompt did not take the answer:\n{self.capture()}")
            self.keys("Enter" if allow else "Escape")
            gone = time.monotonic() + 1.0
            while time.monotonic() < gone and self.permission_prompt():
                time.sleep(0.05)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def exit(self, timeout: float = 30) -> int | None:
        """``/exit`` and wait for the process to end; its exit status."""
        if self.alive():
            self.wait_for(self.prompt_ready, 30, "the prompt before /exit")
            self.type_line("/exit")
            t0 = time.monotonic()
            self.wait_for(lambda: not self.alive(), timeout, "Claude Code to exit", interval=0.02)
            self.exit_seconds = time.monotonic() - t0
        status = self.exit_status(0 if self.alive() else 5)
        self.leftovers = self.leftover_processes()
        return status

    def processes(self) -> list[int]:
        """Live processes of this run: Claude Code, its hooks, its tools."""
        pids = set(processes_with_marker(self.socket))
        if self.pid:
            pids.update(processes_in_session(self.pid))
        return sorted(p for p in pids if p != self.pid and pid_alive(p))

    def leftover_processes(self, grace: float = 2.0) -> list[str]:
        """What Claude Code started and left running, ``grace`` seconds
        after it ended ("pid command line" each)."""
        deadline = time.monotonic() + grace
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        return [describe(p) for p in self.processes()]

    def exit_status(self, timeout: float = 5) -> int | None:
        """The exit status of the ended Claude Code (the shell around it
        writes it to a file; 128 + N for signal N); None if it still runs
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError):
                return int(self.status_file.read_text())
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def kill(self) -> None:
        """Everything this run started (Claude Code, its hooks, its Bash
        commands: see processes()), then the tmux server."""
        for _ in range(3):  # a process may start another while we look
            pids = self.processes() + ([self.pid] if self.pid else [])
            if not [p for p in pids if pid_alive(p)]:
                break
            kill_pids(pids)
            time.sleep(0.05)
        self.tmux("kill-server", check=False)
        # tmux leaves its socket file behind.
        socket_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (socket_dir / self.socket).unlink(missing_ok=True)


# --------------------------------------------------------------------------
# Scenarios.
# --------------------------------------------------------------------------


@contextlib.contextmanager
def workspace(keep: bool = False, prefix: str = "real-client-") -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def bridge(*args: str, bridge_dir: Path, cache_dir: Path, timeout: float = 60,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run bridge-host from a terminal with this run's BRIDGE_DIR."""
    host = bridge_host_bin()
    if host is None:
        raise HarnessError("no bridge-host binary (target/release or target/debug)")
    home = Path(bridge_dir).parent / "terminal-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": SYSTEM_PATH, "HOME": str(home),
           "BRIDGE_DIR": str(bridge_dir), "BRIDGE_CACHE_DIR": str(cache_dir)}
    return subprocess.run([str(host), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=check)


def smoke(args: argparse.Namespace) -> int:
    """Start Claude Code with the plugin, type the plugin's ``status``
    command, and check: the stub got the command's expansion, ran the
    ``bridge-host run status`` it names, got back a result that names this
    session, and Claude Code exits cleanly. A permission prompt, if one comes
    up, is reported and accepted."""
    if bridge_host_bin() is None:
        raise HarnessError("no bridge-host binary: build it first (cargo build --release)")
    plugin = Path(args.plugin_dir).resolve()
    checks: list[tuple[str, bool]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append((name, ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)

    with workspace(args.keep) as root:
        project = root / "project"
        project.mkdir()
        bdir, cdir = root / "bridge", root / "cache"
        with Stub(root / "stub.jsonl", dump_dir=root / "requests" if args.keep else None) as stub, \
                Claude(project, stub, bridge_dir=bdir, cache_dir=cdir, plugin_dir=plugin) as cc:
            print(f"claude {cc.version} ({cc.binary}), plugin {plugin}, stub on port {stub.port}, work dir {root}")
            took = cc.wait_ready(args.timeout)
            check("input prompt ready", True, f"{took:.2f}s after launch")
            me = session_of_project(project, bdir, cdir)
            check("SessionStart registered the session", bool(me), me)
            command = args.status_command or default_status_command(plugin)
            cc.type_line(command)
            first = cc.wait_for(lambda: stub.find(main=True), args.timeout, "the command's request")[0]
            check("the stub got the command's expansion",
                  "<command-name>/session-bridge:" in first["newest_user_text"],
                  next((l for l in first["newest_user_text"].splitlines() if "<command-name>" in l), ""))
            ran = first["answer"].get("command")
            check("the stub ran bridge-host run status", bool(ran and ran.startswith("bridge-host run status")),
                  repr(ran))
            if ran:
                deadline = time.monotonic() + args.timeout
                prompted = False
                while time.monotonic() < deadline and not stub.find(main=True, answer_rule="rule_a_tool_result"):
                    shown = None if prompted else cc.permission_prompt()
                    if shown:
                        prompted = True
                        print("note: a permission prompt came up; accepting it:\n"
                              + "\n".join("    " + l for l in shown.splitlines() if l.strip()))
                        cc.answer_permission(True)
                    time.sleep(0.1)
                print(f"note: permission prompt for the command's Bash call: {'yes' if prompted else 'no'}")
                done = stub.find(main=True, answer_rule="rule_a_tool_result")
                result = done[0]["newest_user_text"] if done else ""
                check("the command's result reached the stub and names this session",
                      bool(done) and me in result, repr(result[:300]))
            cc.wait_for(cc.prompt_ready, args.timeout, "the prompt after the turn")
            status = cc.exit()
            check("Claude Code exits cleanly after /exit", status == 0,
                  f"status {status} in {cc.exit_seconds:.2f}s; left running: {cc.leftovers or 'nothing'}")
            refused = stub.proxy_refusals()
            print(f"note: proxy requests refused: {refused or 'none'}")
    passed = sum(ok for _, ok in checks)
    print(f"smoke: {passed} passed, {len(checks) - passed} failed")
    return 0 if passed == len(checks) else 1


def default_status_command(plugin_dir: Path) -> str:
    """``/session-bridge:bridge status`` for a plugin with one ``bridge``
    command, ``/session-bridge:status`` for one command per verb."""
    if (plugin_dir / "commands" / "bridge.md").exists():
        return "/session-bridge:bridge status"
    return "/session-bridge:status"


def session_of_project(project: Path, bridge_dir: Path, cache_dir: Path, timeout: float = 30) -> str:
    """The bridge session ID that Claude Code's SessionStart hook registered
    for ``project`` (from ``run peers --json``)."""
    deadline = time.monotonic() + timeout
    while True:
        res = bridge("run", "peers", "--json", bridge_dir=bridge_dir, cache_dir=cache_dir, check=False)
        with contextlib.suppress(ValueError):
            value = json.loads(res.stdout or "null")
            rows = value.get("peers", value) if isinstance(value, dict) else value
            for row in rows or []:
                path = row.get("projectPath") or row.get("project_path")
                if path and Path(path).resolve() == project.resolve():
                    return row.get("sessionId") or row.get("session_id")
        if time.monotonic() > deadline:
            raise HarnessError(f"no bridge session for {project}: {res.stdout} {res.stderr}")
        time.sleep(0.5)


def explore(args: argparse.Namespace) -> int:
    """The runs NOTES.md reports, for one Claude Code: a wake-up of a session
    never prompted (SessionStart hook), the permission prompt of the Bash
    call it makes, a slash command's expansion, a plain prompt (helper
    requests), and a wake-up after a turn (Stop hook). Screens and the
    requests' texts go to ``--out``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plugin = Path(args.plugin_dir)
    root = out / "work"
    shutil.rmtree(root, ignore_errors=True)
    if args.no_session_start_wake:
        plugin = plugin_without_session_start_wake(plugin, out / "plugin-nowake")
    project = root / "project"
    project.mkdir(parents=True)
    bdir, cdir = root / "bridge", root / "cache"
    notes: list[str] = []

    def shot(name: str, cc: Claude) -> None:
        (out / f"screen-{name}.txt").write_text(cc.capture())
        notes.append(f"screen {name} saved")

    with Stub(root / "stub.jsonl", dump_dir=root / "requests") as stub, \
            Claude(project, stub, bridge_dir=bdir, cache_dir=cdir, plugin_dir=plugin) as cc:
        took = cc.wait_ready(args.timeout)
        notes.append(f"claude {cc.version}: prompt ready after {took:.2f}s")
        time.sleep(3)
        shot("1-idle", cc)
        me = session_of_project(project, bdir, cdir)
        sender = bridge("run", "start", "--project-dir", "/tmp/x", bridge_dir=bdir, cache_dir=cdir).stdout.strip()
        notes.append(f"session {me}, sender {sender}")

        # A: wake a session that was never prompted.
        n = len(stub.entries())
        sent_at = time.time()
        sent = bridge("run", "send", "--session", sender, me, "query", "hello?", bridge_dir=bdir, cache_dir=cdir)
        notes.append(f"sent {sent.stdout.strip()} at {time.monotonic() - cc.started_at:.2f}s")
        try:
            woke = cc.wait_for(lambda: stub.find(since=n, main=True), args.wake_timeout, "a wake-up request")
            notes.append(f"A: woken {woke[0]['time'] - sent_at:.2f}s after the send, rule "
                         f"{woke[0]['answer'].get('rule')}, command {woke[0]['answer'].get('command')}")
            try:
                cc.wait_screen(r"Do you want to proceed\?", 20)
                shot("2-permission", cc)
                cc.answer_permission(True)
                notes.append("A: permission prompt shown, accepted with Enter")
            except HarnessError:
                shot("2-no-permission-prompt", cc)
                notes.append("A: no permission prompt")
            cc.wait_for(lambda: stub.find(since=n, main=True, answer_rule="rule_a_tool_result"), 60, "the result")
            cc.wait_for(cc.prompt_ready, 30, "the prompt")
            shot("3-after-wake", cc)
        except HarnessError as e:
            notes.append(f"A: not woken: {e}")
            shot("2-not-woken", cc)

        # B: the slash command's expansion.
        n = len(stub.entries())
        cc.type_line(args.status_command or default_status_command(plugin))
        cc.wait_for(lambda: stub.find(since=n, main=True), 30, "the slash command's request")
        time.sleep(1)
        with contextlib.suppress(HarnessError):
            cc.wait_screen(r"Do you want to proceed\?", 5)
            shot("4-slash-permission", cc)
            cc.answer_permission(True)
        cc.wait_for(lambda: stub.find(since=n, main=True, answer_type="text"), 60, "the end of the turn")
        cc.wait_for(cc.prompt_ready, 30, "the prompt")
        shot("4-after-slash", cc)

        # C: a wake-up after a turn (the Stop hook's).
        time.sleep(2)
        n = len(stub.entries())
        sent_at = time.time()
        bridge("run", "send", "--session", sender, me, "query", "which API changed? please clarify",
               bridge_dir=bdir, cache_dir=cdir)
        try:
            woke = cc.wait_for(lambda: stub.find(since=n, main=True), args.wake_timeout, "a wake-up request")
            notes.append(f"C: woken {woke[0]['time'] - sent_at:.2f}s after the send: "
                         f"{woke[0]['newest_user_text'][-200:]!r}")
            with contextlib.suppress(HarnessError):
                cc.wait_screen(r"Do you want to proceed\?", 20)
                shot("5-permission", cc)
                cc.answer_permission(True)
            cc.wait_for(lambda: stub.find(since=n, main=True, answer_rule="rule_a_tool_result"), 60, "the result")
            cc.wait_for(cc.prompt_ready, 30, "the prompt")
            notes.append("C: woken after a turn")
        except HarnessError as e:
            notes.append(f"C: not woken: {e}")
        shot("5-after-stop-wake", cc)

        # D: a plain prompt, for helper requests.
        n = len(stub.entries())
        cc.type_line("hello there, what is in this directory?")
        cc.wait_for(lambda: stub.find(since=n, main=True, answer_type="text"), 60, "the end of the turn")
        time.sleep(5)
        cc.wait_for(cc.prompt_ready, 30, "the prompt")
        shot("6-plain", cc)
        status = cc.exit()
        notes.append(f"exit status {status}")
        shot("7-exit", cc)
        replies = bridge("run", "check-inbox", "--session", sender, bridge_dir=bdir, cache_dir=cdir, check=False)
        notes.append(f"sender's inbox: {replies.stdout.strip()!r}")
        notes.append(f"proxy refusals: {stub.proxy_refusals()}")
    shutil.copy(root / "stub.jsonl", out / "stub.jsonl")
    (out / "notes.txt").write_text("\n".join(notes) + "\n")
    print("\n".join(notes))
    return 0


def plugin_without_session_start_wake(plugin: Path, dest: Path) -> Path:
    """A copy of ``plugin`` whose SessionStart has no ``hook wake`` entry."""
    shutil.copytree(plugin, dest, symlinks=True)
    hooks_file = dest / "hooks" / "hooks.json"
    hooks = json.loads(hooks_file.read_text())
    for group in hooks["hooks"].get("SessionStart", []):
        group["hooks"] = [h for h in group["hooks"] if " hook wake" not in h.get("command", "")]
    hooks_file.write_text(json.dumps(hooks, indent=2))
    return dest


def launch_once(project: Path, stub: Stub, plugin: Path | None, bridge_dir: Path, cache_dir: Path,
                timeout: float) -> dict:
    """One launch: seconds to the prompt, to the session's registration (the
    SessionStart hook's work), and from /exit to the process's end."""
    sessions = bridge_dir / "sessions"
    before = set(os.listdir(sessions)) if sessions.exists() else set()
    with Claude(project, stub, bridge_dir=bridge_dir, cache_dir=cache_dir, plugin_dir=plugin) as cc:
        ready = registered = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (ready is None or (plugin and registered is None)):
            now = time.monotonic() - cc.started_at
            if ready is None and cc.prompt_ready():
                ready = now
            if registered is None and sessions.exists() and set(os.listdir(sessions)) - before:
                registered = now
            if not cc.alive():
                raise HarnessError(f"Claude Code exited:\n{cc.capture()}")
            time.sleep(0.02)
        if ready is None:
            raise HarnessError(f"no prompt after {timeout}s:\n{cc.capture()}")
        time.sleep(1)
        status = cc.exit()
        return {"ready": ready, "registered": registered, "exit": cc.exit_seconds, "status": status,
                "leftovers": cc.leftovers}


def timing(args: argparse.Namespace) -> int:
    """Start-up timing: launch to input prompt, median of ``--runs``, with the
    plugin as it is, with its SessionStart ``hook wake`` removed, and with no
    plugin."""
    plugin = Path(args.plugin_dir).resolve()
    results: dict[str, list[dict]] = {}
    with workspace(prefix="real-client-timing-") as root:
        variants = {"plugin": plugin,
                    "no-sessionstart-wake": plugin_without_session_start_wake(plugin, root / "plugin-nowake"),
                    "no-plugin": None}
        cache = root / "cache"
        bridge("run", "peers", bridge_dir=root / "warm-bridge", cache_dir=cache)  # compile the guest once
        with Stub(root / "stub.jsonl") as stub:
            version = claude_version(claude_bin())
            for i in range(args.runs):
                for name, pdir in variants.items():  # interleaved, so drift hits all alike
                    project = root / f"project-{name}-{i}"
                    project.mkdir()
                    r = launch_once(project, stub, pdir, root / f"bridge-{name}-{i}", cache, args.timeout)
                    results.setdefault(name, []).append(r)
                    print(f"{version} {name:22} run {i + 1}: ready {r['ready']:.2f}s"
                          + (f", registered {r['registered']:.2f}s" if r["registered"] is not None else "")
                          + f", exit {r['exit']:.2f}s (status {r['status']})"
                          + (f", left running: {r['leftovers']}" if r["leftovers"] else ""), flush=True)
    print(f"\nClaude Code {version}, median of {args.runs}:")
    for name, rs in results.items():
        med = lambda key: statistics.median([r[key] for r in rs if r[key] is not None] or [float("nan")])
        print(f"  {name:22} ready {med('ready'):.2f}s  registered {med('registered'):.2f}s  exit {med('exit'):.2f}s"
              f"  (ready min {min(r['ready'] for r in rs):.2f} max {max(r['ready'] for r in rs):.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"version": version, "results": results}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Drive the real Claude Code in tmux against the model stub.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("smoke", help="end-to-end: the plugin's status command through the stub")
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--keep", action="store_true", help="keep the work dir (and dump requests)")
    s.add_argument("--plugin-dir", default=str(PLUGIN_DIR))
    s.add_argument("--status-command", help="default: from the plugin's commands/")
    s.set_defaults(func=smoke)
    e = sub.add_parser("explore", help="the runs NOTES.md reports; screens and logs to --out")
    e.add_argument("--out", required=True)
    e.add_argument("--plugin-dir", default=str(PLUGIN_DIR))
    e.add_argument("--status-command", help="default: from the plugin's commands/")
    e.add_argument("--timeout", type=float, default=60)
    e.add_argument("--wake-timeout", type=float, default=60)
    e.add_argument("--no-session-start-wake", action="store_true",
                   help="use a copy of the plugin without its SessionStart hook wake")
    e.set_defaults(func=explore)
    t = sub.add_parser("timing", help="start-up timing with and without the SessionStart wake hook")
    t.add_argument("--plugin-dir", default=str(PLUGIN_DIR))
    t.add_argument("--runs", type=int, default=5)
    t.add_argument("--timeout", type=float, default=60)
    t.add_argument("--json", help="also write the figures here")
    t.set_defaults(func=timing)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
