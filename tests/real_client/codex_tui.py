#!/usr/bin/env python3
"""The real Codex TUI (pinned in .ci/codex) in tmux, with the bridge's Codex
hooks and MCP server installed in a throwaway CODEX_HOME, against a local
stand-in for the Responses API (`responses_stub.py --read`: its "model"
acts only on what each request shows).

A. Woken while idle. Codex is opened in a project and given one prompt (its
   SessionStart hook registers the thread's bridge session at the first
   turn), then left alone. A terminal peer in another project runs
   `bridge-host run ask <codex session> <question>`, the question holding
   backticks, `$` and quotes, passed as one argument; the waker queues the
   message into the thread with `codex queue`, Codex starts a turn with
   nobody typing, answers with the MCP `reply` tool (no approval prompt on
   screen), and the ask prints the answer. Repeated --runs times (default
   3); prints the median and p90 of message sent -> Codex's first model
   request, and of ask -> answer.
B. Codex asks an idle Claude Code session (the plugin loaded, woken by its
   wake hook, answering with the plugin's MCP reply tool): a prompt typed
   into the TUI -> Codex's `ask` tool -> the answer shown on Codex's screen.
C. Nothing wakes Codex for nothing: a peer's `connect` (a ping) and a peer's
   session-ended notice cause no model request; the notice is shown with the
   next real message.
D. (--closed, about 80 s more) The TUI quits: a query that comes while the
   daemon keeps the thread loaded is answered headless; when the daemon
   unloads the thread (about 60 s after the TUI left), SessionEnd stops the
   thread's session and its waker, and a peer's ask is refused at once.
E. (run right after B) The reverse of B: a prompt typed into that Claude
   Code session gives the exact command `bridge-host run ask <codex
   session> '<question>'`; Claude Code's model runs it with its Bash tool
   (the plugin's hook approves it), the waker wakes the idle Codex with
   nobody typing, Codex answers with its MCP `reply` tool, and Claude
   Code's model relays the answer on its screen. Repeated --runs times;
   prints the median of prompt entered -> answer shown. No permission
   prompt in either client, and the reply wakes nobody.
Over the whole run, every request a stand-in model received (Codex's, and
Claude Code's in B and E) is accounted for: a typed prompt's turn, a wake for
a query this script sent (each query wakes once), a tool call's follow-up, or
a side request the client makes on its own (a title). A second wake for the
same message, or bridge text that names no pending query, is a wake-up for
nothing; the script prints `measure: wake-ups for nothing: N` and fails
unless N is 0 (1 with --spurious, which causes one on purpose to show the
count can fail), or if any request is unexplained.

Every network request stays on 127.0.0.1: when run as root with `unshare`,
the script runs itself in a network namespace of its own with only `lo`;
everywhere, HTTPS_PROXY/HTTP_PROXY point at the stand-ins, which refuse and
log whatever is aimed elsewhere.

Prints `ok <check>` or `FAIL <check>: why` per check, `measure <what>: ...`
lines, and a last line `codex tui: N passed, M failed`; exits 1 when a check
failed.

Usage: python3 codex_tui.py [--runs N] [--closed] [--spurious] [--keep] [--no-netns]
  (`--runs 20 --closed` gives the figures docs/codex.md reports)
Codex: CODEX_BIN (a path), else .ci/codex/node_modules/.bin/codex.
bridge-host: BRIDGE_HOST_BIN, else target/release or target/debug.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    RUN_MARKER,
    SYSTEM_PATH,
    Claude,
    HarnessError,
    Stub,
    bridge_host_bin,
    kill_pids,
    pid_alive,
    session_of_project,
    workspace,
)
from model_stub import MCP_REPLY_TOOL, PLAIN_ANSWER  # noqa: E402
from responses_stub import answer_to  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NETNS_VAR = "CODEX_TUI_IN_NETNS"

# What Codex shows when it asks before running a tool or a command.
APPROVAL_RE = re.compile(r"Allow the \S+ MCP server to run tool|Would you like to run the following command"
                         r"|Hooks need review")
# Codex is running a turn.
BUSY_RE = re.compile(r"esc to interrupt")
# The first line of the bridge's text in a woken turn: Codex's (queued by the
# waker) and Claude Code's (from its wake hook).
BRIDGE_TEXT_RE = re.compile(r"session-bridge: a (?:message from a peer agent session arrived"
                            r"|peer session sent this session a message)")
# A peer's words in the bridge's text, fenced; the id is the message's.
FENCED_RE = re.compile(r"<peer-message id=(?P<id>msg-[a-z0-9]+) [^\n]*?fence=(?P<fence>\S+?)[ >][^\n]*\n"
                       r"(?P<text>.*?)\n?</peer-message fence=(?P=fence)>", re.S)
# How the bridge's own lines name the query to answer (the reply tool's
# message_id, or the reply command).
NAMED_QUERY_RE = re.compile(r"(?:message_id|run reply) (msg-[a-z0-9]+)")


def codex_bin() -> Path:
    given = os.environ.get("CODEX_BIN")
    return Path(given) if given else REPO / ".ci/codex/node_modules/.bin/codex"


# --------------------------------------------------------------------------
# A network of our own.
# --------------------------------------------------------------------------


def reexec_in_netns(argv: list[str]) -> None:
    """As root, with `unshare`: run this script again in a new network
    namespace where only `lo` is up (never returns when it could). Else
    return, and the proxies alone keep requests local."""
    if os.environ.get(NETNS_VAR) or os.geteuid() != 0 or not shutil.which("unshare") \
            or not shutil.which("ip"):
        return
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return
    sys.stdout.flush()
    os.execvpe("unshare", ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                           sys.executable, *argv], {**os.environ, NETNS_VAR: "1"})


# --------------------------------------------------------------------------
# The stand-in for the Responses API.
# --------------------------------------------------------------------------


class Standin:
    """`responses_stub.py --read` in its own process, logging each request
    (with the time it came) to `log_dir`."""

    def __init__(self, root: Path):
        self.log_dir = root / "codex-requests"
        self.port_file = root / "codex-model.port"
        self.err = root / "codex-model.err"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> "Standin":
        self.log_dir.mkdir()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "responses_stub.py"), "--read", "--log-dir", str(self.log_dir),
             "--port-file", str(self.port_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.err, "w"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError("the Responses stand-in did not start")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def records(self, kind: str = "responses") -> list[dict]:
        out = []
        for path in sorted(self.log_dir.glob(f"*-{kind}.json")):
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(path.read_text()))
        return sorted(out, key=lambda r: r["n"])

    def refused(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.records("refused")]


def input_items(record: dict) -> list[dict]:
    body = record.get("body")
    items = body.get("input") if isinstance(body, dict) else None
    return items if isinstance(items, list) else []


def newest_user_text(record: dict) -> str:
    for item in reversed(input_items(record)):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return "".join(c.get("text", "") for c in content or [] if isinstance(c, dict))
    return ""


def is_title_request(record: dict) -> bool:
    return "Generate a concise, single-line task title" in json.dumps(input_items(record)[-1:])


# --------------------------------------------------------------------------
# CODEX_HOME.
# --------------------------------------------------------------------------


def base_config(codex_home: Path, port: int, projects: list[Path]) -> None:
    """config.toml for the stand-in model, offline, the projects trusted."""
    trusted = "".join(f'\n[projects."{p}"]\ntrust_level = "trusted"\n' for p in projects)
    (codex_home / "config.toml").write_text(f"""model = "stand-in"
model_provider = "local"
check_for_update_on_startup = false

[model_providers.local]
name = "local stand-in"
base_url = "http://127.0.0.1:{port}/v1"
wire_api = "responses"
env_key = "STANDIN_API_KEY"

[features]
plugins = false

[analytics]
enabled = false
{trusted}""")


def install_bridge(codex_home: Path, host: Path, home: Path) -> None:
    """The bridge into Codex as a user installs it: `bridge-host setup
    codex`, which adds the MCP server, the hooks and their trust to
    $CODEX_HOME/config.toml (docs/codex.md)."""
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), "CODEX_HOME": str(codex_home),
           "XDG_DATA_HOME": str(home / ".local/share")}
    res = subprocess.run([str(host), "setup", "codex"], env=env, capture_output=True,
                         text=True, timeout=60)
    if res.returncode != 0:
        raise HarnessError(f"bridge-host setup codex failed ({res.returncode}): {res.stderr.strip()}")
    config = (codex_home / "config.toml").read_text()
    for needed in ("[mcp_servers.bridge]", "codex-session-start", "[hooks.state."):
        if needed not in config:
            raise HarnessError(f"bridge-host setup codex wrote no {needed}:\n{config}")


# --------------------------------------------------------------------------
# The Codex TUI in tmux.
# --------------------------------------------------------------------------


class CodexTUI:
    """One interactive Codex, in a tmux server of its own."""

    def __init__(self, project: Path, env: dict[str, str], name: str):
        self.project = project
        self.env = env
        self.socket = f"codex-tui-{name}-{os.getpid()}"
        self.codex_home = Path(env["CODEX_HOME"])
        self.seen_approval: list[str] = []
        self._watching = False
        self._watcher: threading.Thread | None = None

    def tmux(self, *args: str, check: bool = True) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=10)
        if check and res.returncode != 0:
            raise HarnessError(f"tmux {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def start(self) -> "CodexTUI":
        env_args = [f"{k}={v}" for k, v in self.env.items()]
        self.tmux("new-session", "-d", "-s", "main", "-x", "200", "-y", "50", "-c", str(self.project),
                  "env", "-i", *env_args, str(codex_bin()),
                  ";", "set-option", "-w", "-t", "main", "remain-on-exit", "on")
        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        # Any approval prompt, however briefly it showed.
        while self._watching:
            found = APPROVAL_RE.search(self.capture())
            if found and found.group(0) not in self.seen_approval:
                self.seen_approval.append(found.group(0))
            time.sleep(0.1)

    def capture(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "main", check=False)

    def busy(self) -> bool:
        return bool(BUSY_RE.search(self.capture()))

    def type_line(self, line: str) -> float:
        """Types `line`, then Enter on its own (Codex takes text and Enter sent
        together as a paste); the time Enter was sent."""
        self.tmux("send-keys", "-t", "main", "-l", line)
        wait_for(lambda: line[-20:] in self.capture(), 10, "the typed text on screen")
        time.sleep(0.5)
        sent = time.time()
        self.tmux("send-keys", "-t", "main", "Enter")
        return sent

    def exited(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "main", "#{pane_dead}", check=False).strip() == "1"

    def thread_id(self) -> str | None:
        """The thread the TUI opened (Codex names a file after it)."""
        folder = self.codex_home / "tui-thread-reference-capabilities"
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        return names[0] if len(names) == 1 else None

    def processes(self) -> list[int]:
        """Codex, its daemon, hooks, waker and MCP server: every process
        whose environment names this CODEX_HOME, this run's marker, or this
        run's bridge directory (the MCP server gets only BRIDGE_DIR)."""
        needles = {f"CODEX_HOME={self.codex_home}".encode(),
                   f"{RUN_MARKER}={self.env[RUN_MARKER]}".encode(),
                   f"BRIDGE_DIR={self.env['BRIDGE_DIR']}".encode()}
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if needles & set((entry / "environ").read_bytes().split(b"\0")):
                        out.append(int(entry.name))
        return out

    def stop(self) -> None:
        self._watching = False
        for _ in range(3):
            pids = [p for p in self.processes() if pid_alive(p)]
            if not pids:
                break
            kill_pids(pids)
            time.sleep(0.1)
        self.tmux("kill-server", check=False)
        socket_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (socket_dir / self.socket).unlink(missing_ok=True)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def figures(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s, p90 {percentile(values, 90):.2f} s, "
            f"min {min(values):.2f} s, max {max(values):.2f} s over {len(values)} runs")


# --------------------------------------------------------------------------
# Every model request, accounted for.
# --------------------------------------------------------------------------


class Expected:
    """What this script did that should reach a model: the lines it typed
    into each client ("codex", "claude"), and the queries it sent to each,
    with the time it saw each answer (a wake after that is for nothing)."""

    def __init__(self) -> None:
        self.typed: dict[str, list[str]] = {"codex": [], "claude": []}
        self.queries: dict[tuple[str, str], float | None] = {}
        self.woke: set[tuple[str, str]] = set()  # the queries that woke their client

    def query(self, client: str, question: str) -> str:
        self.queries[(client, question)] = None
        return question

    def answered(self, client: str, question: str) -> None:
        self.queries[(client, question)] = time.time()

    def pending(self, client: str, question: str, at: float) -> bool:
        if (client, question) not in self.queries:
            return False
        done = self.queries[(client, question)]
        return done is None or at < done


def named_queries(text: str) -> dict[str, str]:
    """The queries the bridge's text names (message ID -> the peer's words).
    Only the bridge's own lines count: the fenced words are the peer's."""
    fenced = {m.group("id"): m.group("text") for m in FENCED_RE.finditer(text)}
    outside = FENCED_RE.sub("", text)
    return {mid: fenced.get(mid, "") for mid in NAMED_QUERY_RE.findall(outside)}


class Wakes:
    """Judges the turns a client's bridge text started: each names queries,
    and is a wake for a query only if one of them was sent by this script,
    has not woken the client before, and was not answered yet."""

    def __init__(self, client: str, expected: Expected):
        self.client = client
        self.expected = expected
        self.seen: dict[str, str] = {}  # message ID -> the request it woke

    def judge(self, label: str, text: str, at: float) -> tuple[str, str]:
        named = named_queries(text)
        fresh = [mid for mid, words in named.items()
                 if mid not in self.seen and self.expected.pending(self.client, words, at)]
        why = "; ".join(self._why_not(mid, words, at) for mid, words in named.items()) or "names no query"
        for mid in named:
            self.seen.setdefault(mid, label)
        self.expected.woke |= {(self.client, named[mid]) for mid in fresh}
        if fresh:
            return "wake", ", ".join(fresh)
        return "for nothing", why

    def _why_not(self, mid: str, words: str, at: float) -> str:
        if mid in self.seen:
            return f"{mid} already woke it ({self.seen[mid]})"
        if (self.client, words) not in self.expected.queries:
            return f"{mid} is no query this script sent: {words[:80]!r}"
        if not self.expected.pending(self.client, words, at):
            return f"{mid} was answered before"
        return f"{mid} ok"


def turn_metadata(record: dict) -> dict:
    """Codex's x-codex-turn-metadata header: which thread made the request
    (thread_source "user", or "thread_title" for the title side request), what
    started its turn (turn_trigger "user" typed, "queue" queued) and turn_id."""
    headers = {k.lower(): v for k, v in (record.get("headers") or {}).items()}
    with contextlib.suppress(ValueError, TypeError):
        return json.loads(headers.get("x-codex-turn-metadata", "{}"))
    return {}


def codex_kinds(records: list[dict], expected: Expected) -> list[tuple[dict, str, str]]:
    """Each Codex request with its kind and why (shapes seen in 0.171.0)."""
    typed, turns, wakes = list(expected.typed["codex"]), set(), Wakes("codex", expected)
    out = []
    for record in records:
        meta, items, text = turn_metadata(record), input_items(record), newest_user_text(record)
        newest = items[-1] if items and isinstance(items[-1], dict) else {}
        label = f"Codex request {record['n']}"
        if meta.get("thread_source") == "thread_title" and is_title_request(record):
            kind, why = "side", "thread title"
        elif meta.get("thread_source") != "user":
            kind, why = "unexplained", f"thread_source {meta.get('thread_source')!r}"
        elif newest.get("type") == "function_call_output":
            # The model called a tool; this request carries its output.
            kind, why = (("follow-up", "") if meta.get("turn_id") in turns
                         else ("unexplained", "a tool's output, but no earlier request in its turn"))
        elif newest.get("role") != "user":
            kind, why = "unexplained", f"newest item {newest.get('type')!r}"
        elif meta.get("turn_trigger") == "user" and text in typed:
            typed.remove(text)
            kind, why = "typed", text
        elif meta.get("turn_trigger") == "queue" and BRIDGE_TEXT_RE.search(text):
            kind, why = wakes.judge(label, text, record["time"])
        else:
            kind, why = "unexplained", f"turn_trigger {meta.get('turn_trigger')!r}"
        turns.add(meta.get("turn_id"))
        out.append((record, kind, why if kind != "unexplained" else f"{why}: {text[:200]!r}"))
    return out


def claude_kinds(entries: list[dict], expected: Expected) -> list[tuple[dict, str, str]]:
    """Each Claude Code request for a model answer (model_stub's log), with
    its kind and why. Its main agent is told apart from helpers by the stub
    (the tools offered); a tool's result is what its rule a answers."""
    typed, wakes = list(expected.typed["claude"]), Wakes("claude", expected)
    out = []
    for entry in entries:
        if entry.get("method") != "POST" or entry.get("path", "").split("?")[0] != "/v1/messages":
            continue  # token counts, start-up lookups: no model answer
        text, rule = entry.get("newest_user_text", ""), (entry.get("answer") or {}).get("rule")
        line = next((t for t in typed if t in text), None)
        if not entry.get("main"):
            kind, why = "side", str(entry.get("helper"))
        elif rule == "rule_a_tool_result":
            kind, why = "follow-up", ""
        elif line is not None:
            typed.remove(line)
            kind, why = "typed", line
        elif BRIDGE_TEXT_RE.search(text):
            kind, why = wakes.judge(f"Claude Code request {entry['seq']}", text, entry.get("time", 0))
        else:
            kind, why = "unexplained", f"rule {rule}: {text[-200:]!r}"
        out.append((entry, kind, why))
    return out


KINDS = ("typed", "wake", "follow-up", "side", "for nothing", "unexplained")


def tally(name: str, kinds: list[tuple[dict, str, str]]) -> None:
    counts = {k: sum(1 for _, kind, _ in kinds if kind == k) for k in KINDS}
    print(f"measure: {name} model requests: {len(kinds)} = "
          + ", ".join(f"{counts[k]} {k}" for k in KINDS), flush=True)


def account(check, args, model: Standin, claude_log: Path, expected: Expected) -> None:
    """The figure the issue asks for: wake-ups for nothing over the whole
    run, from every request the stand-ins logged."""
    codex = codex_kinds(model.records(), expected)
    claude = claude_kinds(Stub(claude_log).entries(), expected)
    tally("Codex", codex)
    tally("Claude Code", claude)
    both = [(f"Codex request {r['n']}", kind, why) for r, kind, why in codex] + \
           [(f"Claude Code request {e['seq']}", kind, why) for e, kind, why in claude]
    nothing = [f"{label}: {why}" for label, kind, why in both if kind == "for nothing"]
    unexplained = [f"{label}: {why}" for label, kind, why in both if kind == "unexplained"]
    print(f"measure: wake-ups for nothing: {len(nothing)}", flush=True)
    for line in nothing + unexplained:
        print(f"info:   {line}")
    want = 1 if args.spurious else 0
    check(f"wake-ups for nothing over the whole run: {want}"
          + (" (the one --spurious caused)" if args.spurious else ""),
          len(nothing) == want, f"{len(nothing)}: " + " | ".join(nothing))
    check("every model request is accounted for (0 unexplained)", not unexplained, " | ".join(unexplained))
    unwoken = [f"{client}: {q!r}" for client, q in expected.queries if (client, q) not in expected.woke]
    check("each query this script sent woke its client once", not unwoken,
          "never woke: " + " | ".join(unwoken))


def wait_quiet(model: Standin, quiet: float = 3, limit: float = 30) -> None:
    """Until the stand-in has had no request for `quiet` seconds, so that a
    late stray wake still lands in the count."""
    deadline = time.monotonic() + limit
    seen, since = len(model.records()), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        if len(model.records()) != seen:
            seen, since = len(model.records()), time.monotonic()


def wake_for_nothing(tui: CodexTUI, model: Standin, thread: str) -> None:
    """--spurious: queues the bridge's text of A's first query, answered long
    ago, into the thread again, as a waker that fired twice would. The count
    must then be exactly 1."""
    text = next(t for t in map(newest_user_text, model.records()) if BRIDGE_TEXT_RE.search(t))
    before = len(model.records())
    res = subprocess.run([str(codex_bin()), "queue", "--thread", thread, "--message", text],
                         env=tui.env, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise HarnessError(f"codex queue failed ({res.returncode}): {res.stderr[-500:]}")
    wait_for(lambda: any(newest_user_text(r) == text for r in model.records()[before:]), 30,
             "the turn the spurious wake started")
    wait_for(lambda: not tui.busy(), 30, "the spurious turn to end")
    print("info: --spurious: queued A's first (answered) query into the thread again", flush=True)


# --------------------------------------------------------------------------
# The scenarios.
# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="wake runs in scenario A, and asks in E")
    parser.add_argument("--closed", action="store_true",
                        help="also scenario D: what happens once the TUI has quit (about 80 s)")
    parser.add_argument("--spurious", action="store_true",
                        help="self-check: cause one wake-up for nothing after A; the count must be 1")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-netns", action="store_true")
    args = parser.parse_args()
    if not args.no_netns:
        reexec_in_netns(sys.argv)
    results: list[bool] = []

    def check(name: str, ok: Any, why: str = "") -> bool:
        results.append(bool(ok))
        print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)
        return bool(ok)

    host = bridge_host_bin()
    if host is None:
        raise HarnessError("no bridge-host binary: set BRIDGE_HOST_BIN")
    print(f"network: {'a namespace of its own (lo only)' if os.environ.get(NETNS_VAR) else 'proxies only'}"
          f"; codex: {subprocess.run([str(codex_bin()), '--version'], capture_output=True, text=True).stdout.strip()}",
          flush=True)
    with workspace(args.keep, prefix="codex-tui-") as root, Standin(root) as model:
        bridge_dir, term_cache = root / "bridge", root / "terminal-cache"
        bridge_dir.mkdir(mode=0o700)
        codex_proj, peer_proj, peer2_proj, lib_proj = (root / n for n in ("app", "peer", "peer2", "library"))
        for d in (codex_proj, peer_proj, peer2_proj, lib_proj):
            d.mkdir()
        codex_home, codex_user = root / "codex-home", root / "codex-user"
        codex_home.mkdir()
        codex_user.mkdir()
        base_config(codex_home, model.port, [codex_proj])
        install_bridge(codex_home, host, codex_user)
        proxy = f"http://127.0.0.1:{model.port}"
        env = {
            # `codex` on PATH, as an npm install puts it: the waker runs
            # `codex queue` from the daemon's environment.
            "PATH": f"{codex_bin().parent}:{SYSTEM_PATH}",
            "HOME": str(codex_user), "LANG": "C.UTF-8", "TERM": "xterm-256color",
            "CODEX_HOME": str(codex_home), "STANDIN_API_KEY": "dummy",
            "BRIDGE_DIR": str(bridge_dir),
            "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "http_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            RUN_MARKER: f"codex-tui-{os.getpid()}",
        }
        term_home = root / "terminal-home"
        term_home.mkdir()

        def terminal(project: Path, *argv: str, timeout: float = 150) -> subprocess.CompletedProcess:
            """bridge-host from a terminal in `project`."""
            return subprocess.run(
                [str(host), *argv], cwd=project, capture_output=True, text=True, timeout=timeout,
                env={"PATH": SYSTEM_PATH, "HOME": str(term_home), "BRIDGE_DIR": str(bridge_dir),
                     "BRIDGE_CACHE_DIR": str(term_cache)})

        tui = CodexTUI(codex_proj, env, "a")
        expected = Expected()
        try:
            scenarios(args, check, root, model, tui, terminal, bridge_dir, term_cache, lib_proj,
                      codex_proj, peer_proj, peer2_proj, expected)
        except (HarnessError, subprocess.TimeoutExpired) as err:
            check("the scenario ran to its end", False, f"{err}\n--- Codex's screen ---\n{tui.capture()}")
        finally:
            tui.stop()
        # After stop: nothing more can reach the stand-ins.
        account(check, args, model, root / "library.jsonl", expected)
        refused = model.refused()
        # With a namespace of its own nothing can leave; with proxies only,
        # Codex's own start-up lookups (raw.githubusercontent.com) come to the
        # stand-in and are refused.
        print(f"info: requests the stand-in refused (aimed elsewhere): {refused or 'none'}")
        if args.keep:
            print(f"kept: {root}")
    passed = sum(results)
    print(f"codex tui: {passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


def scenarios(args, check, root, model, tui, terminal, bridge_dir, term_cache, lib_proj,
              codex_proj, peer_proj, peer2_proj, expected) -> None:
    tui.start()
    wait_for(lambda: tui.thread_id(), 60, "Codex to open its thread")
    wait_for(lambda: "›" in tui.capture() and not APPROVAL_RE.search(tui.capture()), 30,
             "Codex's prompt")
    thread = tui.thread_id()

    # Its first turn: SessionStart registers the thread's session.
    expected.typed["codex"].append("hello")
    tui.type_line("hello")
    wait_for(lambda: "Hello from the stand-in model." in tui.capture(), 60, "the first answer")
    codex_sid = session_of_project(codex_proj, bridge_dir, term_cache)
    check("the first turn registered the thread's bridge session", codex_sid, "")
    wait_for(lambda: not tui.busy(), 30, "the first turn to end")
    print(f"info: Codex thread {thread}, bridge session {codex_sid}", flush=True)

    # A. Woken while idle, by a terminal peer's ask.
    for project in (peer_proj, peer2_proj):
        started = terminal(project, "run", "start")
        if started.returncode != 0:
            raise HarnessError(f"run start in {project}: {started.stderr}")
    wakes, answers, failures = [], [], []
    for i in range(1, args.runs + 1):
        time.sleep(1.0)
        if tui.busy():
            failures.append(f"run {i}: Codex was not idle")
            break
        before = len(model.records())
        question = f"Run {i}: does `cargo test` still read $HOME and \"HOME\" or 'home'?"
        expected.query("codex", question)
        sent = time.time()
        ask = terminal(peer_proj, "run", "ask", codex_sid, question, "--timeout", "120")
        answered = time.time()
        expected.answered("codex", question)
        new = model.records()[before:]
        woken = [r for r in new if question in newest_user_text(r) and not is_title_request(r)]
        if ask.returncode != 0 or answer_to(question) not in ask.stdout:
            failures.append(f"run {i}: ask exit {ask.returncode}, stdout {ask.stdout!r}, "
                            f"stderr {ask.stderr[-800:]!r}")
            continue
        if not woken:
            failures.append(f"run {i}: no model request shows the question")
            continue
        wakes.append(woken[0]["time"] - sent)
        answers.append(answered - sent)
        # The turn ends with a model request that reads the reply tool's
        # output; wait for it and for Codex to be idle again.
        wait_for(lambda: any("function_call_output" in json.dumps(input_items(r)[-1:])
                             for r in model.records()[before:]), 30, "the reply tool's output")
        wait_for(lambda: not tui.busy(), 30, "the turn to end")
    check(f"A: {args.runs} ask(s) from a terminal woke the idle Codex, which answered with the MCP reply "
          "tool, and each ask printed the answer", not failures and len(wakes) == args.runs,
          "; ".join(failures))
    screen = tui.capture()
    check("A: the woken turns show the bridge's text, with nobody typing",
          "a message from a peer agent session arrived" in screen, screen[-1500:])
    calls = [json.loads(item.get("arguments") or "{}")
             for r in model.records() for item in input_items(r)
             if isinstance(item, dict) and item.get("type") == "function_call" and item.get("name") == "reply"]
    outputs = [json.dumps(item.get("output"))
               for r in model.records() for item in input_items(r)
               if isinstance(item, dict) and item.get("type") == "function_call_output"]
    check("A: no approval prompt appeared, and the reply tool's results say it was sent",
          not tui.seen_approval and calls and not any(re.search(r"approv|rejected|denied", o, re.I)
                                                      for o in outputs),
          f"prompts seen {tui.seen_approval}; outputs {outputs[-3:]}")
    if wakes:
        print(f"measure A: message sent (ask started) -> idle Codex's first model request: {figures(wakes)}")
        print(f"measure A: ask started -> answer printed: {figures(answers)}", flush=True)
    if args.spurious:
        wake_for_nothing(tui, model, thread)

    # C. Nothing wakes it for nothing.
    time.sleep(2)
    before = len(model.records())
    ping = terminal(peer2_proj, "run", "connect", codex_sid)
    ended = terminal(peer_proj, "run", "stop")
    time.sleep(8)
    extra = model.records()[before:]
    check("C: a peer's connect (ping) got through, and the asker's session stopped",
          ping.returncode == 0 and ended.returncode == 0,
          f"connect {ping.returncode} {ping.stdout!r} {ping.stderr[-500:]!r}; stop {ended.returncode} "
          f"{ended.stdout!r} {ended.stderr[-500:]!r}")
    check("C: the ping and the session-ended notice caused no model request (0 extra)",
          not extra, f"{len(extra)} requests: {[newest_user_text(r)[:300] for r in extra]}")
    # The next real message still wakes it, and carries the notice.
    before = len(model.records())
    question = expected.query("codex", "After the quiet: is the waker still there?")
    ask = terminal(peer2_proj, "run", "ask", codex_sid, question, "--timeout", "120")
    expected.answered("codex", question)
    woken = [newest_user_text(r) for r in model.records()[before:]
             if question in newest_user_text(r) and not is_title_request(r)]
    check("C: the next query still wakes Codex and is answered",
          ask.returncode == 0 and answer_to(question) in ask.stdout and woken,
          f"exit {ask.returncode} {ask.stdout!r} {ask.stderr[-500:]!r}")
    check("C: it shows the peer's session-ended notice along with it",
          woken and "ended its session" in woken[0], woken[0][:1500] if woken else "")
    wait_for(lambda: not tui.busy(), 30, "the turn to end")

    # B. Codex asks an idle Claude Code session.
    cache_dir = root / "claude-cache"
    with Stub(root / "library.jsonl", persona="library-mcp") as lib_stub, \
            Claude(lib_proj, lib_stub, bridge_dir=bridge_dir, cache_dir=cache_dir, name="lib") as lib:
        lib.wait_ready(90)
        lib_id = session_of_project(lib_proj, bridge_dir, cache_dir)
        marker = len(lib_stub.entries())
        before = len(model.records())
        question = expected.query("claude", "What changed in the v2 API of the library?")
        expected.typed["codex"].append(f"Ask session {lib_id}: {question}")
        typed = tui.type_line(expected.typed["codex"][-1])
        wait_for(lambda: PLAIN_ANSWER in tui.capture(), 150, "Claude's answer on Codex's screen")
        shown = time.time()
        expected.answered("claude", question)
        wait_for(lambda: not tui.busy(), 30, "the turn to end")
        entries = lib_stub.entries()[marker:]
        mcp_replies = [e for e in entries if (e.get("answer") or {}).get("tool") == MCP_REPLY_TOOL]
        check("B: the idle Claude session was woken and answered with the MCP reply tool, unprompted",
              mcp_replies and lib.permission_prompt() is None,
              f"{len(mcp_replies)} MCP replies; prompt {lib.permission_prompt()}")
        asks = [item for r in model.records()[before:] for item in input_items(r)
                if isinstance(item, dict) and item.get("type") == "function_call" and item.get("name") == "ask"]
        check("B: Codex asked with its MCP ask tool, and its screen shows Claude's answer",
              asks and PLAIN_ANSWER in tui.capture(), f"ask calls {asks}")
        print(f"measure B: Codex prompt entered -> Claude's answer shown in Codex: {shown - typed:.2f} s",
              flush=True)
        # The reply went to the ask tool; it must not also wake Codex.
        settled = len(model.records())
        time.sleep(5)
        check("B: the reply did not also wake Codex (0 extra model requests)",
              len(model.records()) == settled,
              f"{[newest_user_text(r)[:200] for r in model.records()[settled:]]}")
        claude_asks_codex(args, check, model, tui, lib, lib_stub, codex_sid, expected)
        check("no approval prompt appeared in Codex at any point", not tui.seen_approval,
              f"{tui.seen_approval}")
        lib.exit()
    if args.closed:
        closed(check, tui, terminal, bridge_dir, term_cache, codex_sid, peer2_proj, expected)
    wait_quiet(model)


class PromptWatch:
    """Notes any permission prompt Claude Code shows, however briefly, while
    it runs (a `with` block)."""

    def __init__(self, claude: Claude):
        self.claude = claude
        self.seen: list[str] = []
        self._on = False
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while self._on:
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                prompt = self.claude.permission_prompt()
                if prompt and prompt not in self.seen:
                    self.seen.append(prompt)
            time.sleep(0.1)

    def __enter__(self) -> "PromptWatch":
        self._on = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._on = False
        if self._thread:
            self._thread.join(2)


def claude_asks_codex(args, check, model, tui, lib, lib_stub, codex_sid, expected) -> None:
    """E: a prompt typed into the (idle) Claude Code session asks the idle
    Codex, giving the exact command to run; Claude Code's model runs it with
    its Bash tool, Codex is woken with nobody typing and answers with its
    MCP reply tool, and Claude Code shows the answer."""
    times, failures = [], []
    with PromptWatch(lib) as watch:
        for i in range(1, args.runs + 1):
            lib.wait_for(lib.prompt_ready, 30, "Claude Code's empty prompt")
            wait_for(lambda: not tui.busy(), 30, "Codex to be idle")
            before, marker = len(model.records()), len(lib_stub.entries())
            question = expected.query("codex", f'E run {i}: does the build read $HOME or "HOME"?')
            answer = answer_to(question)
            # What Claude Code's model says once `ask` printed the answer.
            relayed = f"The peer answered: {answer}"
            command = f"bridge-host run ask {codex_sid} '{question}'"
            expected.typed["claude"].append(f"Ask the Codex session {codex_sid}. Run exactly: `{command}`")
            lib.type_line(expected.typed["claude"][-1])
            typed = time.time()
            try:
                lib.wait_for(lambda: relayed in lib.capture(), 120, "Codex's answer on Claude's screen",
                             interval=0.05)
            except HarnessError as err:
                failures.append(f"run {i}: {err}\n--- Claude's screen ---\n{lib.capture()[-2500:]}")
                break
            shown = time.time()
            expected.answered("codex", question)
            wait_for(lambda: not tui.busy(), 30, "Codex's turn to end")
            lib.wait_for(lib.prompt_ready, 30, "Claude Code's turn to end")
            # Claude Code's model: ran the command the prompt gave, with its
            # Bash tool, and read the answer in what it printed.
            entries = [e for e in lib_stub.entries()[marker:] if e.get("main")]
            ran = [e for e in entries if (e.get("answer") or {}).get("rule") == "rule_c_run_exactly"
                   and (e.get("answer") or {}).get("command") == command]
            read = [e for e in entries if (e.get("answer") or {}).get("rule") == "rule_a_tool_result"
                    and answer in e.get("newest_user_text", "")]
            # Codex: a turn that starts with the bridge's text (queued by the
            # waker, not typed), then a reply tool call with the message's ID.
            new = model.records()[before:]
            woken = [newest_user_text(r) for r in new if question in newest_user_text(r)
                     and not is_title_request(r)]
            replies = [json.loads(item.get("arguments") or "{}") for r in new for item in input_items(r)
                       if isinstance(item, dict) and item.get("type") == "function_call"
                       and item.get("name") == "reply"]
            ids = re.findall(r"message_id (msg-[a-z0-9]+)", woken[0]) if woken else []
            problems = []
            if not ran:
                problems.append("Claude's model ran no `" + command + "`")
            if not read:
                problems.append("no Bash result showed Claude's model the answer")
            if not woken or not woken[0].startswith("session-bridge: a message from a peer agent session"):
                problems.append(f"Codex was not woken by the bridge's text: {woken[:1]!r}")
            if not any(c.get("message_id") in ids and c.get("answer") == answer for c in replies):
                problems.append(f"no reply tool call answered {ids}: {replies}")
            if problems:
                failures.append(f"run {i}: " + "; ".join(problems))
                continue
            times.append(shown - typed)
    check(f"E: {args.runs} prompt(s) typed into Claude Code asked the idle Codex with the command they "
          "gave, Codex was woken with nobody typing and answered with its MCP reply tool, and Claude "
          "Code showed the answer", not failures and len(times) == args.runs, "; ".join(failures))
    check("E: no permission prompt appeared in Claude Code", not watch.seen, f"{watch.seen}")
    # The reply went to Claude's `ask`; it must not also wake Claude.
    settled = len(lib_stub.entries())
    time.sleep(3)
    late = [e.get("newest_user_text", "")[:200] for e in lib_stub.entries()[settled:] if e.get("main")]
    check("E: the reply did not also wake Claude Code (0 extra model requests)", not late, f"{late}")
    if times:
        print(f"measure E: prompt entered in Claude Code -> Codex's answer shown in Claude Code: "
              f"{figures(times)}", flush=True)


def closed(check, tui, terminal, bridge_dir, term_cache, codex_sid, peer2_proj, expected) -> None:
    """D: after the TUI quits."""
    tui.type_line("/quit")
    wait_for(tui.exited, 30, "the TUI to exit")
    quit_at = time.monotonic()
    time.sleep(2)
    question = expected.query("codex", "Asked after the TUI quit: who answers?")
    sent = time.monotonic()
    ask = terminal(peer2_proj, "run", "ask", codex_sid, question, "--timeout", "60")
    expected.answered("codex", question)
    check("D: 2 s after the TUI quit, a query is answered headless by the daemon",
          ask.returncode == 0 and answer_to(question) in ask.stdout,
          f"exit {ask.returncode} {ask.stdout!r} {ask.stderr[-500:]!r}")
    print(f"measure D: ask -> answer with the TUI closed: {time.monotonic() - sent:.2f} s", flush=True)

    def listed() -> bool:
        res = terminal(peer2_proj, "run", "peers", "--json")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return codex_sid in {p["sessionId"] for p in json.loads(res.stdout)["peers"]}
        return True

    with contextlib.suppress(HarnessError):
        wait_for(lambda: not listed(), 150, "the thread's session to end", interval=0.5)
    gone = not listed()
    check("D: the thread's session ends when the daemon unloads the thread (SessionEnd)", gone,
          f"still listed {time.monotonic() - quit_at:.0f} s after the TUI quit")
    if gone:
        print(f"measure D: TUI quit -> its bridge session ended: {time.monotonic() - quit_at:.0f} s",
              flush=True)
    wakers = [p for p in tui.processes() if pid_alive(p)
              and b"codex-wake" in Path(f"/proc/{p}/cmdline").read_bytes()]
    check("D: the thread's waker is gone with its session", not wakers, f"waker pids {wakers}")
    sent = time.monotonic()
    late = terminal(peer2_proj, "run", "ask", codex_sid, "Anyone there?", "--timeout", "20")
    took = time.monotonic() - sent
    check("D: an ask to the ended session is refused at once, saying so",
          late.returncode != 0 and took < 10,
          f"exit {late.returncode} after {took:.1f} s: {late.stdout!r} {late.stderr[-300:]!r}")
    print(f"info: D: the late ask said: {(late.stderr or late.stdout).strip()[:300]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
