#!/usr/bin/env python3
"""The answer catalogue in the real Claude Code: answers that a shell would
mangle on a command line reach the asker byte for byte, unattended.

One library Claude Code session runs in tmux with a throwaway HOME, the
plugin loaded (no allow rule: ``permissions.defaultMode`` "default" and
nothing else) and a local stand-in for the model API (``model_stub.py``,
127.0.0.1 only). Nobody types in it. A terminal asks it, with
``bridge-host run ask <library> "... catalogue item N ..." --json``, for each
item of ``model_stub.CATALOGUE`` in turn (backticks and a fenced code block;
``$HOME``, ``$(...)`` and ``!``; quotes and backslashes; lines reading
``EOF`` and ``ANSWER``; CRLF; non-ASCII text; a 100 KB diff). The stand-in
answers each the way the text it was sent shows, filling in the placeholder
with the item and nothing more:

* path ``bash``: the command block, its ``<answer>`` line replaced by the
  item, run with the Bash tool;
* path ``mcp``: the bridge's MCP reply tool (loaded with ToolSearch first
  where Claude Code defers MCP tools, as 2.1.332 does).

Checked for each item, from what happened: the reply ``ask --json`` printed
and the reply stored in the asker's mailbox are the item byte for byte; the
stand-in answered by the path under test (and the text it was sent offered
that path); no permission prompt came up. Then: no allow rule was added,
and Claude Code exits cleanly.

Prints one "ok"/"FAIL" line per check, "figure:" lines (seconds from the ask
started to the reply printed, per item), and a last line
"catalogue: N passed, N failed"; exits 1 when any check failed.

Usage:
  python3 catalogue.py --path bash|mcp   # one Claude Code: see harness.py
                                         # (CLAUDE_CODE_BIN, CLAUDE_CODE_VERSION)
  python3 catalogue.py                   # both paths on both pinned versions:
                                         # .ci/claude-code and .ci/claude-code-next
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    PLUGIN_DIR,
    REPO,
    SYSTEM_PATH,
    Claude,
    HarnessError,
    Stub,
    bridge,
    bridge_host_bin,
    claude_bin,
    run,
    session_of_project,
    workspace,
)
from model_stub import CATALOGUE, BRIDGE_REPLY_TOOL_RE  # noqa: E402

PINNED = {"2.1.197": REPO / ".ci" / "claude-code", "2.1.332": REPO / ".ci" / "claude-code-next"}
PATHS = ("mcp", "bash")
# The items whose times the summary gives: the 100 KB diff, and a short
# answer that is not the first (the first wakes a session never prompted).
LARGE_ITEM, SHORT_ITEM = 7, 2
LABEL = "catalogue"


class Checks:
    def __init__(self) -> None:
        self.results: list[bool] = []
        self.prefix = ""

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append(bool(ok))
        print(f"{'ok  ' if ok else 'FAIL'} {self.prefix}{name}" + (f": {detail}" if detail else ""), flush=True)
        return bool(ok)

    def summary(self) -> int:
        passed = sum(self.results)
        failed = len(self.results) - passed
        print(f"{LABEL}: {passed} passed, {failed} failed", flush=True)
        return 0 if failed == 0 and passed > 0 else 1


def first_difference(got: bytes, want: bytes) -> str:
    if got == want:
        return "identical"
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (f"{len(got)} bytes, want {len(want)}; first difference at byte {at}: "
            f"got {got[max(0, at - 20):at + 20]!r}, want {want[max(0, at - 20):at + 20]!r}")


def responses_in(value: object) -> list[dict]:
    """The response messages anywhere in a JSON value (``ask --json`` prints
    one object; its reply may be nested)."""
    found: list[dict] = []
    if isinstance(value, dict):
        if value.get("type") == "response" and isinstance(value.get("content"), str):
            found.append(value)
        for v in value.values():
            found += responses_in(v)
    elif isinstance(value, list):
        for v in value:
            found += responses_in(v)
    return found


def stored_replies(bridge_dir: Path, session: str) -> dict[str, bytes]:
    """The asker's stored messages (its inbox, taken or not), each file's
    ``content`` as UTF-8 bytes, by message id: what the bridge wrote, not
    what any text shows."""
    out: dict[str, bytes] = {}
    inbox = bridge_dir / "sessions" / session / "inbox"
    for path in list(inbox.glob("*.json")) + list(inbox.glob("*/*.json")):
        try:
            message = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(message, dict) and isinstance(message.get("content"), str) and message.get("id"):
            out[message["id"]] = message["content"].encode("utf-8", "surrogatepass")
    return out


class PromptWatch:
    """Polls the screen in the background and keeps every permission prompt
    it sees, answering each with Escape (no), so that one failure does not
    stall the items after it."""

    def __init__(self, cc: Claude) -> None:
        self.cc = cc
        self.seen: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                shown = self.cc.permission_prompt()
                if shown:
                    self.seen.append((time.monotonic(), shown))
                    self.cc.answer_permission(False)
            except (HarnessError, subprocess.SubprocessError, OSError):
                pass
            self.stop.wait(0.1)

    def since(self, t0: float) -> list[str]:
        return [s for t, s in self.seen if t >= t0]

    def __enter__(self) -> "PromptWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def ask(host: Path, lib_id: str, question: str, terminal: Path, bridge_dir: Path, cache_dir: Path,
        timeout: float, gave_up: Callable[[], str | None]) -> tuple[int | None, bytes, bytes, float, str | None]:
    """``bridge-host run ask`` from a terminal: (exit status, stdout and
    stderr as raw bytes, seconds it took, why it was stopped). It is stopped
    early when ``gave_up()`` says why: the library's turn ended with no
    reply sent, so none will come."""
    env = {"PATH": SYSTEM_PATH, "HOME": str(bridge_dir.parent / "terminal-home"),
           "BRIDGE_DIR": str(bridge_dir), "BRIDGE_CACHE_DIR": str(cache_dir)}
    t0 = time.monotonic()
    proc = subprocess.Popen([str(host), "run", "ask", lib_id, question, "--json", "--timeout", str(int(timeout)),
                             "--project-dir", str(terminal)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()), daemon=True)
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    stopped = None
    while proc.poll() is None:
        why = gave_up()
        if why:
            stopped = why
            proc.kill()
            break
        if time.monotonic() - t0 > timeout + 20:
            stopped = "no answer in time"
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    took = time.monotonic() - t0
    for r in readers:
        r.join(5)
    return proc.returncode, out.get("out", b""), out.get("err", b""), took, stopped


def warm_up_mcp(checks: Checks, stub: Stub, lib: Claude, host: Path, lib_id: str, terminal: Path,
                bridge_dir: Path, cache_dir: Path, t: float, prompts: "PromptWatch") -> bool:
    """Waits until the library's MCP server is connected, as its woken turns
    show it: Claude Code connects MCP servers in the background, and a turn
    that starts before the bridge's server answered is offered no bridge
    tool (on a loaded machine that took seconds; issue 29). Asks a warm-up
    question (not one of the checked items) until a woken turn answers it
    with the bridge's reply tool. Returns whether ToolSearch was called."""
    deadline = time.monotonic() + t
    t0 = time.monotonic()
    searched = False
    tries = 0
    while True:
        tries += 1
        since = len(stub.entries())
        status, _, stderr, _, stopped = ask(host, lib_id, "Please answer with catalogue item 2.", terminal,
                                            bridge_dir, cache_dir, t, lambda: None)
        try:
            lib.wait_for(lambda: [e for e in stub.entries()[since:] if e.get("main")
                                  and e["answer"].get("type") == "text"], t, "the end of the warm-up turn")
        except HarnessError:
            pass
        actions = [e["answer"] for e in stub.entries()[since:]
                   if e.get("main") and e["answer"].get("type") == "tool_use"]
        searched |= any(a.get("tool") == "ToolSearch" for a in actions)
        if any(BRIDGE_REPLY_TOOL_RE.match(a.get("tool") or "") for a in actions):
            break
        if status != 0 or time.monotonic() > deadline:
            checks.check("warm-up: a woken turn is offered the bridge's reply tool", False,
                         f"after {tries} tries; exit {status}; stopped: {stopped}; "
                         f"stderr {stderr.decode(errors='replace')[-300:]!r}")
            return searched
        time.sleep(1)
    shown = prompts.since(t0)
    checks.check("warm-up: no permission prompt", not shown, "\n".join(shown)[-800:])
    print(f"figure: {lib.version} mcp: the reply tool reached at warm-up try {tries}, "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    return searched


def one_run(checks: Checks, path: str, binary: Path, args: argparse.Namespace) -> dict:
    """The catalogue through one Claude Code session, answered by ``path``.
    Returns the figures."""
    host = bridge_host_bin()
    if host is None:
        raise HarnessError("no bridge-host binary: set BRIDGE_HOST_BIN or build it")
    figures: dict = {}
    t = args.timeout
    items = [n for n in sorted(CATALOGUE) if not args.items or n in args.items]
    with workspace(args.keep, prefix=f"catalogue-{path}-") as root:
        bridge_dir, cache_dir = root / "bridge", root / "cache"
        lib_dir, terminal = root / "my-library", root / "terminal"
        lib_dir.mkdir()
        terminal.mkdir()
        started = time.monotonic()
        # The guest compiled into the cache first, as it is on any machine
        # that ran bridge-host before: else the hooks and the MCP server all
        # compile it at launch (seconds in a debug build), and a session woken
        # before its MCP server answers is offered no MCP tool on that turn.
        bridge("run", "peers", bridge_dir=root / "warm-up", cache_dir=cache_dir)
        with Stub(root / "library.jsonl", persona=f"catalogue-{path}",
                  dump_dir=root / "requests" if args.keep else None) as stub, \
                Claude(lib_dir, stub, bridge_dir=bridge_dir, cache_dir=cache_dir, plugin_dir=args.plugin_dir,
                       binary=binary, name=f"cat-{path}") as lib:
            checks.prefix = f"[{lib.version} {path}] "
            print(f"== claude {lib.version} ({lib.binary}), path {path}; bridge-host {host}; work dir {root}",
                  flush=True)
            figures["version"] = lib.version
            lib.wait_ready(t)
            lib_id = session_of_project(lib_dir, bridge_dir, cache_dir)
            asker = bridge("run", "start", "--project-dir", str(terminal), bridge_dir=bridge_dir,
                           cache_dir=cache_dir).stdout.strip().split()[-1]
            settings = json.loads((lib.home / ".claude" / "settings.json").read_text())
            checks.check("no allow rule: the library's settings have none",
                         not (settings.get("permissions") or {}).get("allow")
                         and not any(p.get("allowedTools") for p in
                                     json.loads((lib.home / ".claude.json").read_text())["projects"].values()),
                         json.dumps(settings))
            tool_search_used = False
            with PromptWatch(lib) as prompts:
                if path == "mcp":
                    tool_search_used |= warm_up_mcp(checks, stub, lib, host, lib_id, terminal, bridge_dir,
                                                    cache_dir, t, prompts)
                for number in items:
                    what, want = CATALOGUE[number]
                    want_bytes = want.encode("utf-8")
                    since = len(stub.entries())
                    t0 = time.monotonic()
                    ended: list[float] = []

                    def gave_up(since: int = since) -> str | None:
                        # The library's turn ended (its model's last answer
                        # was text) and, 3 s later, still no reply.
                        turns = [e for e in stub.entries()[since:] if e.get("main")]
                        if not turns or turns[-1]["answer"].get("type") != "text":
                            return None
                        ended.append(time.monotonic())
                        if time.monotonic() - ended[0] < 3:
                            return None
                        return f"the library's turn ended with no reply; it last saw: {turns[-1]['newest_user_text'][-400:]!r}"

                    status, stdout, stderr, took, stopped = ask(
                        host, lib_id, f"Please answer with catalogue item {number}.", terminal, bridge_dir,
                        cache_dir, t, gave_up)
                    figures[number] = took
                    try:
                        printed = responses_in(json.loads(stdout))
                    except ValueError:
                        printed = []
                    got = printed[-1]["content"].encode("utf-8", "surrogatepass") if printed else b""
                    stored = stored_replies(bridge_dir, asker).get(printed[-1].get("id")) if printed else None
                    entries = [e for e in stub.entries()[since:] if e.get("main")]
                    actions = [e["answer"] for e in entries if e["answer"].get("type") == "tool_use"]
                    bash_replies = [a for a in actions if (a.get("command") or "").startswith("bridge-host run reply ")]
                    mcp_replies = [a for a in actions if BRIDGE_REPLY_TOOL_RE.match(a.get("tool") or "")]
                    searches = [a for a in actions if a.get("tool") == "ToolSearch"]
                    tool_search_used |= bool(searches)
                    woken = next((e for e in entries if "Query from " in e["newest_user_text"]), {})
                    woke = woken.get("newest_user_text", "")
                    shown = prompts.since(t0)
                    label = f"item {number} ({what}, {len(want_bytes)} bytes)"
                    checks.check(f"{label}: the reply ask --json printed is the item byte for byte",
                                 status == 0 and got == want_bytes,
                                 f"{took:.2f} s" if got == want_bytes else
                                 (f"stopped: {stopped}" if stopped else
                                  f"exit {status}; {first_difference(got, want_bytes)}; "
                                  f"stderr {stderr.decode(errors='replace')[-300:]!r}"))
                    checks.check(f"{label}: the reply stored in the asker's mailbox is the item byte for byte",
                                 stored == want_bytes,
                                 "" if stored == want_bytes else
                                 (first_difference(stored, want_bytes) if stored is not None else "not found"))
                    if path == "bash":
                        offered = "answer in place of <answer>:\nbridge-host run reply msg-" in woke
                        ok = offered and len(bash_replies) == 1 and not mcp_replies
                        detail = f"{len(bash_replies)} Bash replies, {len(mcp_replies)} MCP replies"
                    else:
                        offered = "the reply tool of the bridge's MCP server (message_id msg-" in woke
                        ok = (offered and len(mcp_replies) == 1 and not bash_replies
                              and mcp_replies[0]["input"].get("answer") == want)
                        detail = (f"{len(mcp_replies)} MCP replies, {len(bash_replies)} Bash replies, "
                                  f"{len(searches)} ToolSearch calls; the reply tool in the wake-up's "
                                  f"request: {woken.get('bridge_reply_tool')}")
                    checks.check(f"{label}: woken with nobody typing, answered by the {path} path the text offers",
                                 ok, detail if ok else f"{detail}; text: {woke[-600:]!r}")
                    checks.check(f"{label}: no permission prompt", not shown, "\n".join(shown)[-800:])
                    print(f"figure: {lib.version} {path} item {number} ({len(want_bytes)} bytes): "
                          f"ask started to reply printed {took:.2f} s", flush=True)
                    # The turn ends (the stand-in says it is done) before the
                    # next ask, so each wake-up is a turn of its own.
                    try:
                        lib.wait_for(lambda: [e for e in stub.entries()[since:] if e.get("main")
                                              and e["answer"].get("type") == "text"], t, "the end of the turn")
                    except HarnessError as err:
                        checks.check(f"{label}: the library's turn ends", False, str(err))
            if path == "mcp":
                print(f"note: {lib.version} mcp: ToolSearch {'was' if tool_search_used else 'was not'} "
                      f"called to load the reply tool", flush=True)
            status = lib.exit(t)
            checks.check("the library exits cleanly", status == 0,
                         f"status {status} in {lib.exit_seconds or 0:.2f} s; left running: "
                         f"{lib.leftovers or 'nothing'}")
            refused = stub.proxy_refusals()
            checks.check("nothing left 127.0.0.1 (no proxy request refused)", not refused, f"{refused}")
        figures["total"] = time.monotonic() - started
        print(f"figure: {figures['version']} {path}: whole run {figures['total']:.1f} s", flush=True)
    return figures


def pinned_binary(version: str) -> Path:
    """The Claude Code pinned in .ci/claude-code or .ci/claude-code-next,
    installed with ``npm ci`` there when missing."""
    prefix = PINNED[version]
    binary = prefix / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        run(["npm", "ci", "--prefix", str(prefix), "--no-fund", "--no-audit", "--loglevel=error"],
            timeout=600, stdout=sys.stderr)
    return binary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=PATHS,
                        help="one run by this path, with the Claude Code harness.py picks "
                             "(default: both paths on both pinned versions)")
    parser.add_argument("--items", type=lambda s: {int(n) for n in s.split(",")},
                        help="only these items, e.g. 1,5,7 (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (and dump requests)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds for each step")
    parser.add_argument("--plugin-dir", type=Path, default=PLUGIN_DIR,
                        help="the plugin to load (default: this repository's plugin/)")
    args = parser.parse_args()
    checks = Checks()
    started = time.monotonic()
    if args.path:
        runs = [(args.path, None)]
    else:
        for name in ("CLAUDE_CODE_BIN", "CLAUDE_CODE_VERSION"):
            if os.environ.get(name):
                print(f"note: {name} is ignored: the catalogue runs the pinned versions (give --path to use it)")
        runs = [(path, version) for version in PINNED for path in PATHS]
    figures = []
    for path, version in runs:
        try:
            binary = pinned_binary(version) if version else claude_bin()
            figures.append((path, one_run(checks, path, binary, args)))
        except (HarnessError, subprocess.SubprocessError) as err:
            checks.check(f"the catalogue runs by the {path} path on {version or 'the chosen version'}",
                         False, str(err))
    checks.prefix = ""
    for path, fig in figures:
        parts = [f"{len(CATALOGUE[n][1].encode())} bytes (item {n}) {fig[n]:.2f} s"
                 for n in (LARGE_ITEM, SHORT_ITEM) if n in fig]
        print(f"figure: {fig['version']} {path}: " + ", ".join(parts + [f"whole run {fig['total']:.1f} s"]),
              flush=True)
    print(f"figure: catalogue total {time.monotonic() - started:.1f} s", flush=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
