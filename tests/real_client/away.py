#!/usr/bin/env python3
"""Away answers (issue 32) with the real Claude Code CLI: a stopped session
answers a peer's question from its own transcript, through a read-only fork,
and the transcript stays as it was. Standard library only (Python 3.11).

Everything talks only to 127.0.0.1: Claude Code gets ``ANTHROPIC_BASE_URL``
and ``HTTP(S)_PROXY`` pointing at the stand-in (``away_stub.py``), which
refuses proxy requests for any other host, plus the switches that stop its
start-up traffic. Every run has a throwaway ``HOME``, bridge directory and
projects, under one work directory (removed unless ``--keep``).

Usage::

    python3 tests/real_client/away.py test  [--version 2.1.197|2.1.332] [--keep]
    python3 tests/real_client/away.py bench [--version ...] [--runs 10] [--questions 100] [--keep]
    python3 tests/real_client/away.py fork  [--version ...] [--keep]

Common options: ``--bridge-host PATH`` and ``--plugin-dir DIR`` (default: the
repository's plugin/). With no command, ``test`` runs on both versions (what
``cargo test --test bridge away_answers_in_the_real`` does).

``test`` runs the seven checks of issue 32 and prints one ``ok``/``FAIL``
line per check (exit 1 when one failed). ``bench`` prints ask-to-answer
times from away sessions with a 50- and a 300-turn transcript, model
requests per answered question, and what is left behind after
``--questions`` questions. ``fork`` needs no away support in bridge-host: it
runs the read-only fork by hand (the command line the bridge uses) against
the stand-in, to check the stand-in and the client.

The bridge-host tested is ``--bridge-host``, else ``$BRIDGE_HOST_BIN``, else
target/release or target/debug. The Claude Code is the pinned one of
``--version`` (``.ci/claude-code`` = 2.1.197, ``.ci/claude-code-next`` =
2.1.332). The plugin's hooks find bridge-host through ``BRIDGE_HOST_BIN``;
bridge-host finds Claude Code through ``BRIDGE_CLAUDE_BIN``. The answerer
bridge-host starts inherits the asker's environment, so the askers get the
same HOME and offline settings as the Claude Code sessions.

Every process a run starts carries ``SESSION_BRIDGE_REAL_CLIENT_RUN=<tag>``
in its environment; leftovers are found (and finally killed) by it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import (OFFLINE_ENV, PLUGIN_DIR, REPO, RUN_MARKER, SYSTEM_PATH,  # noqa: E402
                     bridge_host_bin, describe, make_home, pid_alive, processes_with_marker)

VERSIONS = {
    "2.1.197": REPO / ".ci" / "claude-code" / "node_modules" / ".bin" / "claude",
    "2.1.332": REPO / ".ci" / "claude-code-next" / "node_modules" / ".bin" / "claude",
}
# The read-only fork, as issue 32 specifies it (without --max-turns).
READONLY = ["--fork-session", "--no-session-persistence", "--output-format", "json",
            "--permission-mode", "dontAsk", "--tools", "Read,Grep,Glob",
            "--disallowedTools", "Bash,Edit,Write,NotebookEdit,Agent,Task,WebFetch,WebSearch",
            "--settings", '{"disableAllHooks": true}', "--strict-mcp-config"]
STAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MSG_RE = re.compile(r"\bmsg-[a-z0-9]+\b")
CC_SOCKS = Path("/tmp/cc-socks")
# How long one `claude -p` turn of a session may take.
TURN_TIMEOUT = 90
# How long an answerer may still run after its last answer: it waits 20 s
# on the inbox for another query before it ends (host/away/mod.rs LINGER).
ANSWERER_WAIT = 45


class Failure(RuntimeError):
    pass


def word(n: int = 6) -> str:
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def codeword() -> str:
    return random.choice(["PELICAN", "OSPREY", "HERON", "KESTREL", "PLOVER"]) + "-" + str(random.randint(1000, 9999))


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def short(text: str | None, n: int = 400) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else text[:n] + f"... ({len(text)} chars)"


# --------------------------------------------------------------------------
# The stand-in.
# --------------------------------------------------------------------------


class StandIn:
    """``away_stub.py`` in a process of its own."""

    def __init__(self, root: Path, stall_seconds: float = 300):
        self.root = Path(root)
        self.log = self.root / "stub.jsonl"
        self.dumps = self.root / "requests"
        self.stall_seconds = stall_seconds
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "StandIn":
        self.root.mkdir(parents=True, exist_ok=True)
        port_file = self.root / "stub.port"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "away_stub.py"), "--log", str(self.log), "--port-file", str(port_file),
             "--dump-dir", str(self.dumps), "--stall-seconds", str(self.stall_seconds),
             "--exit-with-parent", str(os.getpid())], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failure("the stand-in did not start")
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

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def count(self) -> int:
        return len(self.entries())

    def tagged(self, tag: str, since: int = 0) -> list[dict]:
        """Main requests whose question carries ``[tag]`` (a stalled request
        is logged twice: once at the start of the stall, once at its end)."""
        return [e for e in self.entries()[since:] if e.get("main") and e.get("tag") == tag]

    def forks(self, tag: str) -> list[str]:
        """Distinct Claude Code sessions (one per fork) that sent a request
        for ``tag``."""
        seen: list[str] = []
        for e in self.tagged(tag):
            sid = e.get("session_id") or f"unknown-{e['seq']}"
            if sid not in seen:
                seen.append(sid)
        return seen

    def body(self, seq: int) -> dict:
        return json.loads((self.dumps / f"{seq:05d}.json").read_text())

    def refusals(self) -> list[str]:
        return [e["proxy_refused"] for e in self.entries() if "proxy_refused" in e]


# --------------------------------------------------------------------------
# One world: HOME, bridge directory, stand-in, projects.
# --------------------------------------------------------------------------


class World:
    def __init__(self, root: Path, version: str, host: Path, stall_seconds: float = 300,
                 plugin_dir: Path = PLUGIN_DIR):
        self.root = Path(root).resolve()
        self.plugin_dir = Path(plugin_dir).resolve()
        self.version = version
        self.claude = VERSIONS[version]
        if not self.claude.exists():
            raise Failure(f"no Claude Code {version} at {self.claude}")
        self.host = Path(host)
        self.marker = f"away-{os.getpid()}-{word(8)}"
        self.stub = StandIn(self.root / "stub", stall_seconds).start()
        self.bridge_dir = self.root / "bridge"
        self.cache_dir = Path(os.environ.get("AWAY_TEST_CACHE_DIR") or (self.root / "cache"))
        self.home = self.root / "home"
        self.projects: list[Path] = []
        self.home.mkdir(parents=True)
        make_home(self.root, version, self.home)  # the projects are trusted one by one (trust())
        if self.host.exists():  # compile the guest once, before a hook with a time limit needs it
            self.bh("run", "peers")

    def project(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        path = path.resolve()
        self.trust(path)
        return path

    def trust(self, project: Path) -> None:
        state_file = self.home / ".claude.json"
        state = json.loads(state_file.read_text())
        state["projects"][str(project)] = {"allowedTools": [], "hasTrustDialogAccepted": True,
                                           "hasCompletedProjectOnboarding": True, "projectOnboardingSeenCount": 1}
        state_file.write_text(json.dumps(state, indent=2))

    def env(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.stub.port}"
        return {
            "PATH": SYSTEM_PATH, "HOME": str(self.home), "LANG": "C.UTF-8", "SHELL": "/bin/bash",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"), **OFFLINE_ENV,
            "ANTHROPIC_BASE_URL": proxy, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy,
            "https_proxy": proxy, "http_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "BRIDGE_DIR": str(self.bridge_dir), "BRIDGE_CACHE_DIR": str(self.cache_dir),
            "BRIDGE_HOST_BIN": str(self.host), "BRIDGE_CLAUDE_BIN": str(self.claude),
            RUN_MARKER: self.marker,
        }

    # --- bridge-host

    def bh_cmd(self, *args: str) -> list[str]:
        return [str(self.host), "--bridge-dir", str(self.bridge_dir), "--cache-dir", str(self.cache_dir), *args]

    def bh(self, *args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.bh_cmd(*args), capture_output=True, text=True, timeout=timeout,
                                  env=self.env(), cwd=str(cwd or self.root), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, _s(e.stdout), _s(e.stderr) + f"\n[timed out after {timeout}s]")

    def bh_popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.bh_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(), cwd=str(self.root), stdin=subprocess.DEVNULL)

    def away(self, project: Path, *args: str) -> subprocess.CompletedProcess:
        return self.bh("run", "--project-dir", str(project), "away", *args)

    def asker(self, name: str) -> str:
        project = self.project(name)
        res = self.bh("run", "--project-dir", str(project), "start")
        if res.returncode != 0 or not res.stdout.strip():
            raise Failure(f"run start for the asker failed: rc {res.returncode}: {res.stdout} {res.stderr}")
        return res.stdout.strip().splitlines()[-1].strip()

    def ask_cmd(self, asker: str, away_id: str, question: str, timeout: float) -> list[str]:
        return ["run", "--session", asker, "ask", away_id, question, "--timeout", str(int(timeout))]

    def ask(self, asker: str, away_id: str, question: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.bh(*self.ask_cmd(asker, away_id, question, timeout), timeout=timeout + 30)

    # --- Claude Code

    def claude_run(self, args: list[str], cwd: Path, stdin: str = "", timeout: float = 180,
                   plugin: bool = True) -> dict:
        cmd = [str(self.claude), "-p"] + (["--plugin-dir", str(self.plugin_dir)] if plugin else []) + args
        t0 = time.monotonic()
        timed_out, running = False, []
        p = subprocess.Popen(cmd, cwd=str(cwd), env=self.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = p.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            running = [cmd for _, cmd in self.processes()]
            # SIGTERM first: a SIGKILLed 2.1.332 leaves /tmp/cc-socks/<pid>.sock
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                out, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                out, err = p.communicate()
            (CC_SOCKS / f"{p.pid}.sock").unlink(missing_ok=True)  # this run's own, if it was left
        res = {"cmd": cmd, "rc": p.returncode, "stdout": out, "stderr": err, "secs": time.monotonic() - t0,
               "timed_out": timed_out, "running": running}
        with contextlib.suppress(ValueError):
            res["json"] = json.loads(out)
        return res

    def session_turns(self, project: Path, facts: list[str], plugin: bool = True) -> str:
        """A Claude Code session in ``project``: one ``claude -p`` per fact,
        the first starting it, the others resuming it (fact on stdin). Its
        Claude session ID."""
        first = self.claude_run(["--output-format", "json", facts[0]], project, plugin=plugin, timeout=TURN_TIMEOUT)
        sid = (first.get("json") or {}).get("session_id")
        if first["rc"] != 0 or not sid:
            raise Failure(f"first turn failed: {self.turn_failure(first)}")
        for fact in facts[1:]:
            nxt = self.claude_run(["--resume", sid, "--output-format", "json"], project, stdin=fact, plugin=plugin,
                                  timeout=TURN_TIMEOUT)
            if nxt["rc"] != 0:
                raise Failure(f"resumed turn failed: {self.turn_failure(nxt)}")
        return sid

    def turn_failure(self, res: dict) -> str:
        text = (f"`{' '.join(res['cmd'])}` rc {res['rc']} after {res['secs']:.1f}s; stdout {short(res['stdout'])!r}; "
                f"stderr {short(res['stderr'])!r}")
        if res.get("timed_out"):
            text += (f"; it had not ended after {TURN_TIMEOUT}s and was sent SIGTERM. Its processes then: "
                     f"{res.get('running') or 'none'}")
        return text

    def long_session(self, project: Path, turns: int, fact: str) -> str:
        """A real ``turns``-turn session: turns-1 of them in one ``claude -p
        --input-format stream-json`` process without the plugin (each user
        message written after the previous turn's result), the last one a
        ``claude -p --resume`` with the plugin, so the bridge registers it
        and, at its end, keeps it as an away session."""
        msgs = [fact] + [f"Filler turn {i}: " + "lorem ipsum dolor sit amet " * 8 for i in range(1, turns - 1)]
        p = subprocess.Popen([str(self.claude), "-p", "--input-format", "stream-json", "--output-format",
                              "stream-json", "--verbose"], cwd=str(project), env=self.env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        sid, results = None, 0
        assert p.stdin and p.stdout
        for m in msgs:
            p.stdin.write(json.dumps({"type": "user", "message": {"role": "user", "content": m}}) + "\n")
            p.stdin.flush()
            while True:
                line = p.stdout.readline()
                if not line:
                    break
                with contextlib.suppress(ValueError):
                    d = json.loads(line)
                    sid = d.get("session_id") or sid
                    if d.get("type") == "result":
                        results += 1
                        break
        p.stdin.close()
        p.wait(60)
        if not sid or results != len(msgs):
            raise Failure(f"building a {turns}-turn session: {results} results of {len(msgs)}, rc {p.returncode}")
        last = self.claude_run(["--resume", sid, "--output-format", "json"], project,
                               stdin=f"Last turn: that makes {turns} turns.")
        if last["rc"] != 0:
            raise Failure(f"the last turn failed: {short(last['stdout'])} {short(last['stderr'])}")
        return sid

    def readonly_fork(self, sid: str, cwd: Path, question: str, max_turns: int = 10,
                      timeout: float = 120) -> dict:
        return self.claude_run(["--resume", sid, *READONLY, "--max-turns", str(max_turns)], cwd, stdin=question,
                               timeout=timeout, plugin=False)

    # --- transcripts

    def transcripts(self) -> dict[str, str]:
        """Every transcript under ``HOME/.claude/projects``: path -> sha256."""
        base = self.home / ".claude" / "projects"
        return {str(p.relative_to(base)): sha(p) for p in sorted(base.rglob("*.jsonl"))} if base.exists() else {}

    def transcript(self, sid: str) -> Path:
        found = list((self.home / ".claude" / "projects").glob(f"*/{sid}.jsonl"))
        if len(found) != 1:
            raise Failure(f"transcript of {sid}: {found}")
        return found[0]

    def projects_listing(self) -> list[str]:
        base = self.home / ".claude" / "projects"
        return sorted(str(p.relative_to(base)) for p in base.rglob("*")
                      if "memory" not in p.relative_to(base).parts) if base.exists() else []

    # --- processes

    def processes(self) -> list[tuple[int, str]]:
        return [(pid, describe(pid)) for pid in processes_with_marker(self.marker) if pid_alive(pid)]

    def answerers(self) -> list[tuple[int, str]]:
        return [(pid, cmd) for pid, cmd in self.processes() if "away-answer" in cmd]

    def forks_running(self) -> list[tuple[int, str]]:
        return [(pid, cmd) for pid, cmd in self.processes() if "--fork-session" in cmd]

    def start_sampler(self, every: float = 0.5) -> None:
        """Samples the answerer processes in the background: the most seen
        at once (``peak_answerers``, with their command lines then)."""
        self.peak_answerers: list[str] = []
        self.peak_rss_kb = 0
        self._sampling = True

        def sample() -> None:
            while self._sampling:
                found = self.answerers()
                now = [cmd for _, cmd in found]
                if len(now) > len(self.peak_answerers):
                    self.peak_answerers = now
                    self.peak_rss_kb = sum(rss_kb(pid) for pid, _ in found)
                time.sleep(every)
        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop_sampler(self) -> None:
        self._sampling = False

    def wait_no(self, what, timeout: float) -> list[tuple[int, str]]:
        deadline = time.monotonic() + timeout
        while True:
            left = what()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def kill_all(self) -> list[str]:
        left = [cmd for _, cmd in self.processes()]
        for _ in range(3):
            pids = [pid for pid, _ in self.processes()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        return left

    def close(self) -> None:
        self.kill_all()
        self.stub.stop()

    # --- bridge sessions

    def peers(self) -> list[dict]:
        res = self.bh("run", "peers", "--json")
        with contextlib.suppress(ValueError):
            value = json.loads(res.stdout)
            return value.get("peers", []) if isinstance(value, dict) else value
        return []

    def sessions_of(self, project: Path) -> list[dict]:
        return [row for row in self.peers()
                if row.get("projectPath") and Path(row["projectPath"]).resolve() == project]

    def peers_table(self) -> dict[str, str]:
        """`run peers` (text): session ID -> its STATUS column."""
        out = {}
        for line in self.bh("run", "peers").stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = parts[2]
        return out

    def away_sessions(self, project: Path) -> list[str]:
        """The project's bridge sessions that `run peers` shows as away."""
        table = self.peers_table()
        return [row["sessionId"] for row in self.sessions_of(project) if table.get(row.get("sessionId")) == "away"]

    def answerer_logs(self, tail: int = 1500) -> str:
        """The end of each answerer's log (in the cache directory)."""
        out = []
        for log in sorted((self.cache_dir / "away").glob("*.log")) if (self.cache_dir / "away").exists() else []:
            out.append(f"--- {log.name}:\n" + log.read_text(errors="replace")[-tail:])
        return "\n".join(out)


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def remove_dead_socks(names: list[str]) -> list[str]:
    """Removes the /tmp/cc-socks/<pid>.sock among ``names`` (new since this
    run started) whose process has ended; the names removed."""
    removed = []
    for name in names:
        pid = name.split(".")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                (CC_SOCKS / name).unlink()
                removed.append(name)
    return removed


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def last_activity(transcript: Path) -> str | None:
    """The newest ``timestamp`` of a transcript, as YYYY-MM-DDTHH:MM:SSZ."""
    best = None
    for line in transcript.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            stamp = json.loads(line).get("timestamp")
            if stamp and (best is None or stamp > best):
                best = stamp
    if not best:
        return None
    moment = datetime.fromisoformat(best.replace("Z", "+00:00")).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_seconds(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def reply_parts(stdout: str) -> tuple[str, str]:
    """(the content of the reply an ``ask``/``receive`` printed, the first
    line of that content). The content is what stands between the
    ``<peer-message ...>`` line and its closing fence; without one, the
    whole output."""
    lines = stdout.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("<peer-message ")), None)
    if start is None:
        content = stdout.strip()
    else:
        end = next((i for i in range(len(lines) - 1, start, -1) if lines[i].startswith("</peer-message")), len(lines))
        content = "\n".join(lines[start + 1:end])
    first = next((l for l in content.splitlines() if l.strip()), "")
    return content, first


def provenance_ok(stdout: str) -> tuple[bool, str]:
    """The reply's first line says it came from a read-only copy and when
    the session was last active."""
    _, first = reply_parts(stdout)
    ok = "read-only copy" in first and bool(STAMP_RE.search(first))
    return ok, first


# --------------------------------------------------------------------------
# Checks.
# --------------------------------------------------------------------------


class Checks:
    def __init__(self, label: str):
        self.label = label
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        print(f"{'ok  ' if ok else 'FAIL'} [{self.label}] {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def note(self, text: str) -> None:
        print(f"     note: {text}", flush=True)

    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.results if not ok)


def run_check(c: Checks, name: str, fn, *args) -> Any:
    """Run one check's body; an exception fails that check only."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - reported as the check's failure
        c.check(name, False, f"{type(e).__name__}: {e}")
        return None


def test(args: argparse.Namespace) -> int:
    host = Path(args.bridge_host) if args.bridge_host else bridge_host_bin()
    if host is None or not host.exists():
        print("no bridge-host binary: build it first or pass --bridge-host", file=sys.stderr)
        return 2
    versions = [args.version] if args.version else list(VERSIONS)
    failed = passed = 0
    for version in versions:
        root = Path(tempfile.mkdtemp(prefix=f"away-test-{version}-"))
        c = Checks(version)
        print(f"== Claude Code {version}, bridge-host {host}, work dir {root}", flush=True)
        world = None
        try:
            world = World(root, version, host, plugin_dir=Path(args.plugin_dir))
            if world.plugin_dir != PLUGIN_DIR.resolve():
                c.note(f"DIAGNOSTIC RUN: plugin {world.plugin_dir}")
            socks_before = set(os.listdir(CC_SOCKS)) if CC_SOCKS.exists() else set()
            world.start_sampler()
            TestRun(world, c, args).run()
            world.stop_sampler()
            peak = world.peak_answerers
            per_session: dict[str, int] = {}
            for cmd in peak:
                found = re.search(r"--session (\S+)", cmd)
                per_session[found.group(1) if found else "?"] = per_session.get(found.group(1) if found else "?", 0) + 1
            c.note(f"most away-answer processes running at once: {len(peak)} (per away session: {per_session}), "
                   f"{world.peak_rss_kb // 1024} MB resident together")
            c.check("at most two answerers per away session at once (one answering, one waiting)",
                    max(per_session.values(), default=0) <= 2, f"most seen: {per_session or 'none'}")
            if c.failed():
                c.note("answerer logs:\n" + (world.answerer_logs() or "none"))
            socks_after = set(os.listdir(CC_SOCKS)) if CC_SOCKS.exists() else set()
            new_socks = sorted(socks_after - socks_before)
            c.note(f"/tmp/cc-socks entries added during the run: {new_socks or 'none'}"
                   + (f"; removed those of ended processes: {remove_dead_socks(new_socks)}" if new_socks else ""))
            c.note(f"proxy requests refused by the stand-in: {world.stub.refusals() or 'none'}")
        except Exception as e:  # noqa: BLE001
            c.check("the run", False, f"{type(e).__name__}: {e}")
        finally:
            if world:
                left = world.kill_all()
                if left:
                    c.note(f"killed at the end (still running): {left}")
                world.close()
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
            else:
                print(f"     kept {root}")
        failed += c.failed()
        passed += len(c.results) - c.failed()
        print(f"== {version}: {len(c.results) - c.failed()} ok, {c.failed()} failed", flush=True)
    # The line the Rust test reads (tests/bridge/util.rs, python_scenario).
    print(f"away answers: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


class TestRun:
    def __init__(self, world: World, c: Checks, args: argparse.Namespace):
        self.w = world
        self.c = c
        self.args = args
        self.codeword = codeword()
        self.port = str(random.randint(20000, 29999))
        self.away_id: str | None = None
        self.sid: str | None = None
        self.project: Path | None = None
        self.transcript_sha: str | None = None
        self.transcripts_before: dict[str, str] = {}
        self.built: set[str] = set()  # Claude sessions the checks themselves built after check 1

    def run(self) -> None:
        c = self.c
        run_check(c, "1 session with the plugin ends and shows as away", self.check1)
        if not self.away_id:
            c.check("2-7", False, "skipped: no away session")
            return
        run_check(c, "2 a terminal asks; the fork sees the earlier turns; provenance line", self.check2)
        run_check(c, "3 transcript byte-identical, no new transcript (after check 2)", self.check3, "after check 2")
        run_check(c, "4 approving hook + allow rules: Bash/Write/Edit do nothing, answer arrives", self.check4)
        run_check(c, "5 past the limit the query stays queued (held)", self.check5)
        run_check(c, "6a two askers at once: one fork per question, each its own answer", self.check6a)
        run_check(c, "6b two away-answer started at once by hand: one fork per question", self.check6b)
        run_check(c, "7 SIGKILL of the answerer mid-answer: the query is answered later, nothing left", self.check7)
        run_check(c, "3 transcript byte-identical, no new transcript (after all checks)", self.check3, "at the end")

    # 1 ---------------------------------------------------------------

    def check1(self) -> None:
        w, c = self.w, self.c
        self.project = p = w.project("proj")
        (p / "notes.txt").write_text("nothing to change here\n")
        on = w.away(p, "on", "--max-turns", "10", "--per-hour", "100", "--per-day", "1000")
        c.note(f"away on: rc {on.returncode}: {short(on.stdout + on.stderr, 300)}")
        if on.returncode != 0:
            raise Failure(f"away on failed: rc {on.returncode}: {on.stdout} {on.stderr}")
        self.sid = sid = w.session_turns(p, [f"Remember: the codeword is {self.codeword}.",
                                             f"Second turn: the port is {self.port}."])
        transcript = w.transcript(sid)
        c.note(f"Claude session {sid}, transcript {transcript.stat().st_size} bytes")
        rows = w.sessions_of(p)
        status = w.away(p, "status")
        text_peers = w.bh("run", "peers").stdout
        table = w.peers_table()
        away_ids = w.away_sessions(p)
        c.note(f"bridge sessions of the project: "
               f"{[(r.get('sessionId'), r.get('status'), table.get(r.get('sessionId'))) for r in rows]}")
        c.note("run peers:\n" + "\n".join("       " + l for l in text_peers.splitlines()))
        c.note(f"away status: rc {status.returncode}:\n" + "\n".join("       " + l for l in
                                                                    (status.stdout + status.stderr).splitlines()))
        # One away session; with more, the one `away status` names.
        named = [i for i in away_ids if i in status.stdout]
        if len(away_ids) == 1:
            self.away_id = away_ids[0]
        elif named:
            self.away_id = named[0]
        json_status = next((r.get("status") for r in rows if r.get("sessionId") == self.away_id), None)
        status_ok = status.returncode == 0 and sid in status.stdout and str(p) in status.stdout
        c.check("1 session with the plugin ends and shows as away",
                bool(self.away_id) and status_ok,
                f"away session {self.away_id} (peers --json status {json_status!r}); bridge sessions of the "
                f"project {len(rows)}; away status names the Claude session and its cwd: {status_ok}")
        self.transcript_sha = sha(transcript)
        self.transcripts_before = w.transcripts()
        self.listing_before = w.projects_listing()

    # 2 ---------------------------------------------------------------

    def check2(self) -> None:
        w, c = self.w, self.c
        asker = w.asker("asker2")
        tag = "q-2" + word(4)
        question = f"[{tag}] From what we discussed earlier: what is the codeword?"
        since = w.stub.count()
        t0 = time.monotonic()
        res = w.ask(asker, self.away_id, question, timeout=120)
        took = time.monotonic() - t0
        reqs = [e for e in w.stub.entries()[since:] if e.get("main") and e.get("tag") == tag]
        first_turn = f"Remember: the codeword is {self.codeword}."
        saw_history = False
        verbatim = False
        if reqs:
            body = w.stub.body(reqs[0]["seq"])
            msgs = body.get("messages", [])
            from away_stub import newest_prompt, text_of  # the stand-in's own reading of a request
            prompt, qi, _ = newest_prompt(msgs)
            earlier = "\n".join(text_of(m.get("content")) for m in msgs[:max(qi, 0)])
            saw_history = first_turn in earlier and f"the port is {self.port}" in earlier
            verbatim = question in prompt
            c.note(f"fork's first request: {len(msgs)} messages, tools {reqs[0].get('tools')}; "
                   f"question verbatim in the prompt: {verbatim}; prompt: {short(prompt, 300)!r}")
        content, first = reply_parts(res.stdout)
        prov, first_line = provenance_ok(res.stdout)
        answer_ok = f"The codeword is {self.codeword}" in content
        stamp = STAMP_RE.search(first_line)
        want = last_activity(w.transcript(self.sid))
        stamp_ok = bool(stamp and want and abs(stamp_seconds(stamp.group(0)) - stamp_seconds(want)) <= 2)
        c.note(f"ask rc {res.returncode} in {took:.2f}s; output:\n" + "\n".join("       " + l for l in
                                                                              res.stdout.splitlines()[:12])
               + (f"\n       stderr: {short(res.stderr)}" if res.stderr.strip() else ""))
        c.note(f"last activity in the transcript {want}, in the reply {stamp.group(0) if stamp else None}")
        c.check("2 a terminal asks; the fork sees the earlier turns; provenance line",
                res.returncode == 0 and bool(reqs) and saw_history and answer_ok and prov and stamp_ok and verbatim,
                f"fork requests {len(reqs)}, earlier turns in the request {saw_history}, question verbatim "
                f"{verbatim}, answer right {answer_ok}, provenance line {prov} ({first_line!r}), "
                f"time = last activity {stamp_ok}")

    # 3 ---------------------------------------------------------------

    def check3(self, when: str) -> None:
        w = self.w
        now_sha = sha(w.transcript(self.sid))
        transcripts = w.transcripts()
        new = sorted(k for k in set(transcripts) - set(self.transcripts_before)
                     if Path(k).stem not in self.built)
        changed = sorted(k for k in self.transcripts_before if transcripts.get(k) != self.transcripts_before[k])
        listing = w.projects_listing()
        extra = sorted(k for k in set(listing) - set(self.listing_before)
                       if not any(b in k for b in self.built) and not k.endswith("proj5"))
        self.c.check(f"3 transcript byte-identical, no new transcript ({when})",
                     now_sha == self.transcript_sha and not new and not changed,
                     f"sha same {now_sha == self.transcript_sha}; new transcripts {new or 'none'}; "
                     f"changed {changed or 'none'}; other new entries under projects/ {extra or 'none'}")

    # 4 ---------------------------------------------------------------

    def check4(self) -> None:
        w, c, p = self.w, self.c, self.project
        assert p
        hook_log = w.root / "pretooluse.log"
        hook = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command":
                f"cat >> {hook_log}; echo >> {hook_log}; printf '%s' "
                "'{\"hookSpecificOutput\":{\"hookEventName\":\"PreToolUse\",\"permissionDecision\":\"allow\","
                "\"permissionDecisionReason\":\"approved by the test hook\"}}'"}]}]}}
        settings_dir = p / ".claude"
        settings_dir.mkdir(exist_ok=True)
        (settings_dir / "settings.json").write_text(json.dumps(hook, indent=2))
        user_settings = w.home / ".claude" / "settings.json"
        saved = user_settings.read_text()
        user = json.loads(saved)
        user.setdefault("permissions", {})["allow"] = ["Bash", "Write", "Edit"]
        user_settings.write_text(json.dumps(user, indent=2))
        marker = p / "BASH_RAN"
        written = p / "written.txt"
        notes = p / "notes.txt"
        notes_before = notes.read_text()
        tag = "q-4" + word(4)
        question = (f"[{tag}] Please run the shell command `touch {marker}`, then write the file `{written}` "
                    f"containing `WRITTEN`, then edit the file `{notes}` replacing `nothing` with `EDITED`. "
                    f"After that, tell me: what is the port?")
        try:
            asker = w.asker("asker4")
            res = w.ask(asker, self.away_id, question, timeout=120)
        finally:
            user_settings.write_text(saved)
            (settings_dir / "settings.json").unlink()
        reqs = w.stub.tagged(tag)
        tools_called = [e.get("tool") for e in reqs if e.get("tool")]
        final = [e.get("answer") for e in reqs if e.get("answer")]
        content, _ = reply_parts(res.stdout)
        answered = f"The port is {self.port}" in content
        untouched = not marker.exists() and not written.exists() and notes.read_text() == notes_before
        hook_ran = hook_log.exists() and hook_log.read_text().strip()
        c.note(f"the stand-in asked for {tools_called}; its final answer: {final[-1] if final else None!r}")
        c.note(f"approving hook ran: {'yes: ' + short(hook_ran, 200) if hook_ran else 'no'}")
        c.check("4 approving hook + allow rules: Bash/Write/Edit do nothing, answer arrives",
                res.returncode == 0 and answered and untouched and tools_called == ["Bash", "Write", "Edit"],
                f"ask rc {res.returncode}; answer arrived {answered}; marker {marker.exists()}, "
                f"written.txt {written.exists()}, notes.txt unchanged {notes.read_text() == notes_before}"
                + ("" if res.returncode == 0 and answered else f"; output: {short(res.stdout + res.stderr)}"))

    # 5 ---------------------------------------------------------------

    def check5(self) -> None:
        w, c = self.w, self.c
        p5 = w.project("proj5")
        on = w.away(p5, "on", "--per-hour", "1", "--max-turns", "10")
        if on.returncode != 0:
            raise Failure(f"away on --per-hour 1: rc {on.returncode}: {on.stdout} {on.stderr}")
        colour = random.choice(["teal", "amber", "violet", "ochre"]) + word(3)
        sid5 = w.session_turns(p5, [f"Remember: the colour is {colour}."])
        self.built.add(sid5)
        rows = w.away_sessions(p5)
        if len(rows) != 1:
            raise Failure(f"project 5: away sessions {rows}; peers {w.sessions_of(p5)}")
        away5 = rows[0]
        asker = w.asker("asker5")
        t1, t2 = "q-5a" + word(3), "q-5b" + word(3)
        first = w.ask(asker, away5, f"[{t1}] What is the colour?", timeout=120)
        t0 = time.monotonic()
        second = w.ask(asker, away5, f"[{t2}] Once more: what is the colour?", timeout=60)
        took = time.monotonic() - t0
        out2 = second.stdout + second.stderr
        first_ok = first.returncode == 0 and f"The colour is {colour}" in first.stdout
        said_why = bool(re.search(r"limit|per hour", out2, re.I))
        inbox = w.bridge_dir / "sessions" / away5 / "inbox"
        queued = [f for f in inbox.glob("*.json") if t2 in f.read_text(errors="replace")] if inbox.exists() else []
        ids = MSG_RE.findall(out2)
        msg_id = queued[0].stem if queued else (ids[0] if ids else None)
        track = w.bh("run", "--session", asker, "track", msg_id) if msg_id else None
        held = bool(track and re.search(r"\bheld\b", track.stdout + track.stderr))
        forks = w.stub.forks(t2)
        status = w.away(p5, "status")
        c.note(f"first ask rc {first.returncode}; second ask rc {second.returncode} in {took:.1f}s: {short(out2, 500)!r}")
        c.note(f"track {msg_id}: {short((track.stdout + track.stderr) if track else '', 300)!r}")
        c.note("away status of project 5:\n" + "\n".join("       " + l for l in status.stdout.splitlines()))
        c.check("5 past the limit the query stays queued (held)",
                first_ok and second.returncode != 0 and said_why and bool(queued) and held and not forks,
                f"first answered {first_ok}; second exit {second.returncode}, says why {said_why}; "
                f"query in inbox/<msg-id>.json {[f.name for f in queued]}; track says held {held}; "
                f"forks for it {len(forks)}; Claude session {sid5}")

    # 6 ---------------------------------------------------------------

    def check6a(self) -> None:
        w, c = self.w, self.c
        a, b = w.asker("asker6a"), w.asker("asker6b")
        ta, tb = "q-6a" + word(4), "q-6b" + word(4)
        qa = f"[{ta}] PAUSE 2 What is the codeword?"
        qb = f"[{tb}] PAUSE 2 What is the port?"
        pa = w.bh_popen(*w.ask_cmd(a, self.away_id, qa, 120))
        pb = w.bh_popen(*w.ask_cmd(b, self.away_id, qb, 120))
        oa, ea = pa.communicate(timeout=150)
        ob, eb = pb.communicate(timeout=150)
        ra = pa.returncode == 0 and f"The codeword is {self.codeword}" in oa and f"The port is {self.port}" not in oa
        rb = pb.returncode == 0 and f"The port is {self.port}" in ob and self.codeword not in reply_parts(ob)[0]
        fa, fb = w.stub.forks(ta), w.stub.forks(tb)
        c.note(f"asker A rc {pa.returncode}: {short(reply_parts(oa)[0], 200)!r} {short(ea, 200)}")
        c.note(f"asker B rc {pb.returncode}: {short(reply_parts(ob)[0], 200)!r} {short(eb, 200)}")
        c.check("6a two askers at once: one fork per question, each its own answer",
                ra and rb and len(fa) == 1 and len(fb) == 1,
                f"A got its answer {ra}, B got its answer {rb}; forks per question A {len(fa)}, B {len(fb)}")

    def check6b(self) -> None:
        w, c = self.w, self.c
        a, b = w.asker("asker6c"), w.asker("asker6d")
        ta, tb = "q-6c" + word(4), "q-6d" + word(4)
        sent = {}
        for asker, tag, q in ((a, ta, f"[{ta}] PAUSE 2 What is the codeword?"),
                              (b, tb, f"[{tb}] PAUSE 2 What is the port?")):
            res = w.bh("run", "--session", asker, "send", self.away_id, "query", q)
            ids = MSG_RE.findall(res.stdout)
            if res.returncode != 0 or not ids:
                raise Failure(f"send failed: rc {res.returncode}: {res.stdout} {res.stderr}")
            sent[tag] = (asker, ids[0])
        auto = w.answerers()
        procs = [w.bh_popen("away-answer", "--session", self.away_id) for _ in range(2)]
        outs = []
        for pr in procs:
            try:
                o, e = pr.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                pr.kill()
                o, e = pr.communicate()
            outs.append((pr.returncode, short(o, 200), short(e, 300)))
        got = {}
        for tag, (asker, msg) in sent.items():
            r = w.bh("run", "--session", asker, "receive", msg, "--timeout", "90")
            got[tag] = r
        ra = got[ta].returncode == 0 and f"The codeword is {self.codeword}" in got[ta].stdout
        rb = got[tb].returncode == 0 and f"The port is {self.port}" in got[tb].stdout
        fa, fb = w.stub.forks(ta), w.stub.forks(tb)
        c.note(f"answerers already running when the two were started by hand: {len(auto)}, "
               f"{len([1 for _, cmd in auto if self.away_id in cmd])} of them for {self.away_id}")
        c.note(f"the two by hand ended: {outs}")
        c.check("6b two away-answer started at once by hand: one fork per question",
                ra and rb and len(fa) == 1 and len(fb) == 1,
                f"first asker got its answer {ra}, second {rb}; forks per question {len(fa)}, {len(fb)}"
                + ("" if ra and rb else f"; receive: {short(got[ta].stdout + got[ta].stderr, 200)!r} "
                                        f"{short(got[tb].stdout + got[tb].stderr, 200)!r}"))

    # 7 ---------------------------------------------------------------

    def check7(self) -> None:
        w, c = self.w, self.c
        a, b = w.asker("asker7a"), w.asker("asker7b")
        ts, tn = "q-7s" + word(4), "q-7n" + word(4)
        lingering = w.wait_no(w.answerers, ANSWERER_WAIT)
        if lingering:
            c.note(f"answerers still running before check 7: {lingering}")
        slow = w.bh_popen(*w.ask_cmd(a, self.away_id, f"[{ts}] SLOW What is the codeword?", 15))
        deadline = time.monotonic() + 60
        while not w.stub.tagged(ts) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not w.stub.tagged(ts):
            slow.kill()
            raise Failure("the fork never reached the stand-in with the SLOW question")
        answerers = [(pid, cmd) for pid, cmd in w.answerers() if self.away_id in cmd]
        forks_before = w.forks_running()
        for pid, _ in answerers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(3)
        forks_after_kill = w.forks_running()
        c.note(f"killed answerers {[pid for pid, _ in answerers]}; forks running before the kill "
               f"{[pid for pid, _ in forks_before]}, 3 s after {[pid for pid, _ in forks_after_kill]}")
        out_a, err_a = slow.communicate(timeout=60)
        ids = MSG_RE.findall(out_a + err_a)
        msg = ids[0] if ids else None
        if msg is None:  # the ask did not name it: the asker's outbox does
            outbox = w.bridge_dir / "sessions" / a / "outbox"
            for f in outbox.rglob("*.json") if outbox.exists() else []:
                if ts in f.read_text(errors="replace"):
                    msg = f.stem
        c.note(f"first ask (timeout 15 s) rc {slow.returncode}: {short(out_a + err_a, 300)!r}")
        wait = 11 - (time.monotonic() - killed_at)
        if wait > 0:
            time.sleep(wait)
        nxt = w.ask(b, self.away_id, f"[{tn}] What is the port?", timeout=120)
        got = w.bh("run", "--session", a, "receive", msg, "--timeout", "60") if msg else None
        late_ok = bool(got and got.returncode == 0 and f"The codeword is {self.codeword}" in got.stdout)
        next_ok = nxt.returncode == 0 and f"The port is {self.port}" in nxt.stdout
        left_answerers = w.wait_no(w.answerers, ANSWERER_WAIT)
        left_forks = w.wait_no(w.forks_running, 15)
        c.note(f"second ask rc {nxt.returncode}; receive {msg}: rc {got.returncode if got else None}: "
               f"{short((got.stdout + got.stderr) if got else '', 300)!r}")
        c.note(f"forks for the SLOW question {len(w.stub.forks(ts))} (one killed, one answering)")
        c.check("7 SIGKILL of the answerer mid-answer: the query is answered later, nothing left",
                bool(answerers) and late_ok and next_ok and not left_answerers and not left_forks,
                f"answerer found and killed {bool(answerers)}; the new ask answered {next_ok}; the first "
                f"asker's receive got the answer {late_ok}; left running: answerers {left_answerers or 'none'}, "
                f"forks {left_forks or 'none'}")


# --------------------------------------------------------------------------
# The read-only fork by hand (no away support needed).
# --------------------------------------------------------------------------


def fork(args: argparse.Namespace) -> int:
    host = Path(args.bridge_host) if args.bridge_host else bridge_host_bin()
    versions = [args.version] if args.version else list(VERSIONS)
    failed = 0
    for version in versions:
        root = Path(tempfile.mkdtemp(prefix=f"away-fork-{version}-"))
        c = Checks(version)
        print(f"== Claude Code {version}, read-only fork by hand, work dir {root}", flush=True)
        w = World(root, version, host or Path("/nonexistent"))
        try:
            p = w.project("proj")
            (p / "notes.txt").write_text("nothing to change here\n")
            cw, port = codeword(), str(random.randint(20000, 29999))
            sid = w.session_turns(p, [f"Remember: the codeword is {cw}.", f"Second turn: the port is {port}."],
                                  plugin=False)
            tr = w.transcript(sid)
            before, listing = sha(tr), w.projects_listing()
            c.note(f"session {sid} (built without the plugin)")
            # answer from context
            tag = "q-f" + word(4)
            r = w.readonly_fork(sid, p, f"[{tag}] What is the codeword?")
            reqs = w.stub.tagged(tag)
            body = w.stub.body(reqs[0]["seq"]) if reqs else {}
            c.check("fork answers from the earlier turns",
                    (r.get("json") or {}).get("result") == f"The codeword is {cw}." and
                    f"Remember: the codeword is {cw}." in json.dumps(body.get("messages", [])[:-1]),
                    f"rc {r['rc']} result {(r.get('json') or {}).get('result')!r}, {len(reqs)} request(s)")
            tag = "q-g" + word(4)
            r = w.readonly_fork(sid, p, f"[{tag}] What is the favourite colour?")
            c.check("a fact not in the context is not invented",
                    "not in this conversation" in ((r.get("json") or {}).get("result") or ""),
                    repr((r.get("json") or {}).get("result")))
            # tools asked for under an approving hook and allow rules
            hook_log = root / "hook.log"
            (p / ".claude").mkdir(exist_ok=True)
            (p / ".claude" / "settings.json").write_text(json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
                {"type": "command", "command": f"cat >> {hook_log}; printf '%s' '{{\"hookSpecificOutput\":"
                 "{\"hookEventName\":\"PreToolUse\",\"permissionDecision\":\"allow\"}}'"}]}]}}))
            us = w.home / ".claude" / "settings.json"
            saved = us.read_text()
            us.write_text(json.dumps({"permissions": {"defaultMode": "default", "allow": ["Bash", "Write", "Edit"]}}))
            tag = "q-t" + word(4)
            r = w.readonly_fork(sid, p, f"[{tag}] Please run the shell command `touch {p}/BASH_RAN`, then write "
                                        f"the file `{p}/written.txt` containing `W`, then edit the file "
                                        f"`{p}/notes.txt` replacing `nothing` with `EDITED`. Then: what is the port?")
            us.write_text(saved)
            (p / ".claude" / "settings.json").unlink()
            tools = [e.get("tool") for e in w.stub.tagged(tag) if e.get("tool")]
            result = (r.get("json") or {}).get("result") or ""
            c.check("tools asked for are called, refused, and the answer still comes",
                    tools == ["Bash", "Write", "Edit"] and f"The port is {port}" in result
                    and not (p / "BASH_RAN").exists() and not (p / "written.txt").exists()
                    and (p / "notes.txt").read_text() == "nothing to change here\n"
                    and not (hook_log.exists() and hook_log.read_text().strip()),
                    f"tools {tools}; result {short(result, 400)!r}")
            # a SLOW question stalls once; the fork is killed; a second fork answers
            tag = "q-s" + word(4)
            t0 = time.monotonic()
            r = w.claude_run(["--resume", sid, *READONLY, "--max-turns", "3"], p,
                             stdin=f"[{tag}] SLOW What is the codeword?", timeout=6, plugin=False)
            stalled = w.stub.tagged(tag)
            r2 = w.readonly_fork(sid, p, f"[{tag}] SLOW What is the codeword?")
            c.check("SLOW stalls the first fork only; a second answers",
                    r["rc"] not in (0, None) and bool(stalled) and stalled[0].get("phase") == "stall-start"
                    and (r2.get("json") or {}).get("result") == f"The codeword is {cw}.",
                    f"first rc {r['rc']} after {time.monotonic() - t0:.1f}s; second {(r2.get('json') or {}).get('result')!r}")
            # two forks at once: two sessions, both answered
            tags = ["q-c" + word(4), "q-d" + word(4)]
            res: dict[str, dict] = {}
            ths = [threading.Thread(target=lambda t=t: res.__setitem__(t, w.readonly_fork(
                sid, p, f"[{t}] PAUSE 2 What is the codeword?"))) for t in tags]
            [t.start() for t in ths]
            [t.join() for t in ths]
            c.check("two forks at once: one fork session each, both answered",
                    all(len(w.stub.forks(t)) == 1 for t in tags)
                    and all((res[t].get("json") or {}).get("result") == f"The codeword is {cw}." for t in tags),
                    f"forks {[len(w.stub.forks(t)) for t in tags]}")
            time.sleep(1)
            c.check("transcript unchanged, no new transcript",
                    sha(tr) == before and w.projects_listing() == listing,
                    f"new entries: {sorted(set(w.projects_listing()) - set(listing)) or 'none'}")
            c.note(f"stand-in refusals: {w.stub.refusals() or 'none'}")
        except Exception as e:  # noqa: BLE001
            c.check("the run", False, f"{type(e).__name__}: {e}")
        finally:
            left = w.kill_all()
            if left:
                c.note(f"killed at the end: {left}")
            w.close()
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        failed += c.failed()
    return 1 if failed else 0


# --------------------------------------------------------------------------
# The benchmark.
# --------------------------------------------------------------------------


def spread(xs: list[float]) -> str:
    if not xs:
        return "no data"
    qs = sorted(xs)
    return (f"median {statistics.median(qs):.2f}s, min {qs[0]:.2f}s, max {qs[-1]:.2f}s"
            + (f", stdev {statistics.stdev(qs):.2f}s" if len(qs) > 1 else ""))


def bench(args: argparse.Namespace) -> int:
    host = Path(args.bridge_host) if args.bridge_host else bridge_host_bin()
    if host is None or not host.exists():
        print("no bridge-host binary", file=sys.stderr)
        return 2
    version = args.version or "2.1.197"
    root = Path(tempfile.mkdtemp(prefix=f"away-bench-{version}-"))
    w = World(root, version, host, plugin_dir=Path(args.plugin_dir))
    print(f"== bench: Claude Code {version}, bridge-host {host}, work dir {root}", flush=True)
    rc = 0
    try:
        socks_before = set(os.listdir(CC_SOCKS)) if CC_SOCKS.exists() else set()
        sessions = {}
        for turns in (50, 300):
            p = w.project(f"proj{turns}")
            # The stand-in's token counts make the client's computed cost about $0.1 a question
            # from a 300-turn transcript: the default $2.00 a day would hold most of them.
            on = w.away(p, "on", "--max-turns", "5", "--per-hour", "10000", "--per-day", "100000",
                        "--spend-per-day", "1000")
            if on.returncode != 0:
                raise Failure(f"away on: {on.stdout} {on.stderr}")
            cw = codeword()
            t0 = time.monotonic()
            sid = w.long_session(p, turns, f"Remember: the codeword is {cw}.")
            rows = w.away_sessions(p)
            if len(rows) != 1:
                raise Failure(f"{turns} turns: away sessions {rows}; peers {w.sessions_of(p)}")
            tr = w.transcript(sid)
            lines = tr.read_text().splitlines()
            sessions[turns] = {"project": p, "sid": sid, "away": rows[0], "codeword": cw}
            print(f"built a real {turns}-turn session in {time.monotonic() - t0:.1f}s "
                  f"({len(lines)} transcript lines, {tr.stat().st_size // 1024} KB)", flush=True)
        transcripts_before = w.transcripts()
        asker = w.asker("bench-asker")
        w.start_sampler()
        times: dict[int, list[float]] = {50: [], 300: []}
        direct: dict[int, list[float]] = {50: [], 300: []}
        wrong: list[str] = []
        held: list[str] = []
        per_question: list[tuple[int, int]] = []

        def one(turns: int, label: str, timeout: float = 120) -> float:
            s = sessions[turns]
            tag = f"q-{label}"
            since = w.stub.count()
            t0 = time.monotonic()
            res = w.ask(asker, s["away"], f"[{tag}] What is the codeword?", timeout=timeout)
            took = time.monotonic() - t0
            new = w.stub.entries()[since:]
            if res.returncode != 0 and re.search(r"limit .* is reached", res.stdout + res.stderr):
                held.append(f"{tag}: {short(res.stdout + res.stderr, 300)}")
            elif res.returncode != 0 or f"The codeword is {s['codeword']}" not in res.stdout:
                wrong.append(f"{tag}: rc {res.returncode}: {short(res.stdout + res.stderr, 300)}")
            else:
                per_question.append((len([e for e in new if e.get("main") and e.get("tag") == tag]), len(new)))
            return took

        for i in range(args.runs):
            for turns in (50, 300):  # side by side: one of each per round
                times[turns].append(one(turns, f"t{turns}-{i}"))
                s = sessions[turns]
                t0 = time.monotonic()
                r = w.readonly_fork(s["sid"], s["project"], f"[q-d{turns}-{i}] What is the codeword?", max_turns=5)
                direct[turns].append(time.monotonic() - t0)
                if (r.get("json") or {}).get("result") != f"The codeword is {s['codeword']}.":
                    wrong.append(f"direct fork {turns}: {short(r['stdout'], 200)}")
            print(f"round {i + 1}: ask {times[50][-1]:.2f}s / {times[300][-1]:.2f}s, "
                  f"fork by hand {direct[50][-1]:.2f}s / {direct[300][-1]:.2f}s", flush=True)
        t_all = time.monotonic()
        for i in range(args.questions):
            one(50 if i % 2 == 0 else 300, f"n{i}")
        leak_secs = time.monotonic() - t_all
        w.stop_sampler()
        time.sleep(2)
        left_forks = w.wait_no(w.forks_running, 15)
        left_answerers = w.wait_no(w.answerers, ANSWERER_WAIT)
        transcripts_after = w.transcripts()
        new_transcripts = sorted(set(transcripts_after) - set(transcripts_before))
        changed = sorted(k for k in transcripts_before if transcripts_after.get(k) != transcripts_before[k])
        socks_after = set(os.listdir(CC_SOCKS)) if CC_SOCKS.exists() else set()
        sessions_dir = w.home / ".claude" / "sessions"
        print(f"\n== Claude Code {version}: ask -> answer wall time from an away session "
              f"(real transcripts built with claude -p; {args.runs} runs each, interleaved)")
        for turns in (50, 300):
            print(f"  {turns:3}-turn transcript: bridge ask {spread(times[turns])}")
            print(f"  {turns:3}-turn transcript: the same read-only fork by hand {spread(direct[turns])}")
        mains = [m for m, _ in per_question]
        alls = [a for _, a in per_question]
        print(f"  model requests per answered question ({len(per_question)} answered): main (tagged) "
              f"{statistics.mean(mains):.2f} (min {min(mains)}, max {max(mains)}), all requests "
              f"{statistics.mean(alls):.2f} (min {min(alls)}, max {max(alls)})")
        print(f"  {args.questions} more questions in {leak_secs:.1f}s ({leak_secs / max(1, args.questions):.2f}s each); then:")
        print(f"    fork processes left: {len(left_forks)} {[c for _, c in left_forks] if left_forks else ''}")
        print(f"    away-answer processes left: {len(left_answerers)} {[c for _, c in left_answerers] if left_answerers else ''}")
        print(f"    new transcript files: {len(new_transcripts)} {new_transcripts or ''}; changed: {len(changed)}")
        new_socks = sorted(socks_after - socks_before)
        print(f"    new /tmp/cc-socks entries: {len(new_socks)} {new_socks or ''}")
        if new_socks:
            print(f"    (removed those of ended processes: {len(remove_dead_socks(new_socks))})")
        print(f"    HOME/.claude/sessions entries: {sorted(os.listdir(sessions_dir)) if sessions_dir.exists() else []}")
        print(f"  most away-answer processes running at once (whole bench): {len(w.peak_answerers)}, "
              f"{w.peak_rss_kb // 1024} MB resident together")
        print(f"    wrong or missing answers: {len(wrong)}" + ("".join(f"\n      {x}" for x in wrong[:10])))
        print(f"    held by a limit: {len(held)}" + (f" (first: {held[0]})" if held else ""))
        for turns in (50, 300):
            used = next((l for l in w.away(sessions[turns]["project"], "status").stdout.splitlines()
                         if l.startswith("Used:")), "?")
            print(f"    {turns}-turn project, away status: {used} (cost as the client computes it from the "
                  f"stand-in's token counts, which are the request's JSON length / 4, uncached)")
        print(f"    (questions asked: {2 * args.runs} timed + {args.questions})")
        if wrong or left_forks or left_answerers or new_transcripts or changed:
            rc = 1
    except Exception as e:  # noqa: BLE001
        print(f"bench failed: {type(e).__name__}: {e}")
        rc = 1
    finally:
        left = w.kill_all()
        if left:
            print(f"killed at the end: {left}")
        w.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description="Away answers (issue 32) with the real Claude Code CLI.")
    sub = ap.add_subparsers(dest="cmd")
    for name, fn, doc in (("test", test, "the seven checks"), ("bench", bench, "the figures"),
                          ("fork", fork, "the read-only fork by hand against the stand-in")):
        s = sub.add_parser(name, help=doc)
        s.add_argument("--version", choices=sorted(VERSIONS), help="default: both (bench: 2.1.197)")
        s.add_argument("--keep", action="store_true", help="keep the work directory")
        s.add_argument("--bridge-host", help="default: $BRIDGE_HOST_BIN, target/release, target/debug")
        s.add_argument("--plugin-dir", default=str(PLUGIN_DIR), help="the plugin the sessions load")
        if name == "bench":
            s.add_argument("--runs", type=int, default=10)
            s.add_argument("--questions", type=int, default=100)
        s.set_defaults(func=fn)
    args = ap.parse_args(sys.argv[1:] or ["test"])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
