#!/usr/bin/env python3
"""The plugin in the real Claude Code: two interactive sessions, a library
and an app, each in tmux with a throwaway HOME and the plugin loaded, each
against its own local model stub (``model_stub.py``, 127.0.0.1 only). The
users type only what README tells them to type; no allow rule is added.

Checked, each from what happened (the stubs' request logs, the bridge
directory, the screens and the process table):

0. a session never prompted is reachable: a terminal's ask wakes it (the
   SessionStart wake hook) and it answers;
1. connect wakes nobody: neither the library (the ping) nor the app (the
   answer to its ping) gets a model turn for it;
2. an ask is answered by the library while it is idle, woken with nobody
   typing, and with no permission prompt;
3. a clarification loop completes: the library asks back, the app answers,
   the library gives the final answer;
4. the app's exit wakes nobody;
5. after both sessions end, no bridge session and no process is left.

Prints one line per check ("ok" or "FAIL", computed), figures, and a last
line "N passed, N failed"; exits 1 when any check failed.

Usage: python3 scenario.py [--keep] [--timeout S]
The Claude Code version: see harness.py (CLAUDE_CODE_BIN, CLAUDE_CODE_VERSION).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    PLUGIN_DIR,
    Claude,
    HarnessError,
    Stub,
    bridge,
    bridge_host_bin,
    session_of_project,
    workspace,
)
from model_stub import CLARIFYING_QUESTION, PLAIN_ANSWER  # noqa: E402

# How long a session is watched for a wake-up that must not come. A wake
# hook takes a message within milliseconds of its arrival, and a woken
# Claude Code asks its model within a second or two.
QUIET_SECONDS = 8


class Checks:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def summary(self) -> int:
        passed = sum(ok for _, ok in self.results)
        failed = len(self.results) - passed
        print(f"real client: {passed} passed, {failed} failed", flush=True)
        return 0 if failed == 0 and passed > 0 else 1


def main_turns(stub: Stub) -> list[dict]:
    """The main agent's requests, in order."""
    return stub.find(main=True)


def json_names(path: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if n.endswith(".json"))
    except FileNotFoundError:
        return []


def sessions(bridge_dir: Path) -> list[str]:
    try:
        return sorted(os.listdir(bridge_dir / "sessions"))
    except FileNotFoundError:
        return []


def bridge_processes(bridge_dir: Path) -> list[str]:
    """Command lines of processes whose environment names this bridge
    directory: hooks, listeners, anything the sessions started."""
    found = []
    needle = f"BRIDGE_DIR={bridge_dir}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if needle not in environ.split(b"\0"):
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except OSError:
            continue
    return found


def watch_for_prompts(*sessions_: Claude) -> str | None:
    """The first permission prompt on any screen, if one is up."""
    for cc in sessions_:
        shown = cc.permission_prompt()
        if shown:
            return f"{cc.project_dir.name}: {shown}"
    return None


def wait_turn_result(stub: Stub, since: int, needle: str, timeout: float, watched: list[Claude]) -> dict:
    """The first main-agent request after ``since`` whose newest user text
    contains ``needle``; fails at once if a permission prompt comes up."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in main_turns(stub)[since:]:
            if needle in entry.get("newest_user_text", ""):
                return entry
        prompt = watch_for_prompts(*watched)
        if prompt:
            raise HarnessError(f"a permission prompt stalls the session:\n{prompt}")
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for a turn with {needle!r}")
        time.sleep(0.1)


def idle(cc: Claude, timeout: float) -> None:
    cc.wait_for(cc.prompt_ready, timeout, f"{cc.project_dir.name}'s prompt")


def scenario(args: argparse.Namespace) -> int:
    checks = Checks()
    if bridge_host_bin() is None:
        raise HarnessError("no bridge-host binary: set BRIDGE_HOST_BIN or build it")
    t = args.timeout
    with workspace(args.keep) as root:
        bridge_dir, cache_dir = root / "bridge", root / "cache"
        lib_dir, app_dir = root / "my-library", root / "my-app"
        lib_dir.mkdir()
        app_dir.mkdir()
        with Stub(root / "library.jsonl", persona="library") as lib_stub, \
                Stub(root / "app.jsonl", persona="app") as app_stub, \
                Claude(lib_dir, lib_stub, bridge_dir=bridge_dir, cache_dir=cache_dir,
                       plugin_dir=args.plugin_dir, name="lib") as lib, \
                Claude(app_dir, app_stub, bridge_dir=bridge_dir, cache_dir=cache_dir,
                       plugin_dir=args.plugin_dir, name="app") as app:
            watched = [lib, app]
            print(f"claude {lib.version} ({lib.binary}); bridge-host {bridge_host_bin()}; work dir {root}",
                  flush=True)
            lib_ready = lib.wait_ready(t)
            app_ready = app.wait_ready(t)
            print(f"figure: launch to prompt: library {lib_ready:.2f} s, app {app_ready:.2f} s", flush=True)

            # 0. A session never prompted is reachable (the SessionStart wake
            #    hook): a terminal user asks it before anyone typed in it.
            lib_id = session_of_project(lib_dir, bridge_dir, cache_dir)
            terminal = root / "terminal"
            terminal.mkdir()
            bridge("run", "start", "--project-dir", str(terminal), bridge_dir=bridge_dir, cache_dir=cache_dir)
            asked = bridge("run", "ask", lib_id, "are you there?", "--timeout", str(int(t)),
                           "--project-dir", str(terminal), bridge_dir=bridge_dir, cache_dir=cache_dir,
                           timeout=t + 10, check=False)
            checks.check("a session never prompted answers a terminal's ask (SessionStart wake hook)",
                         asked.returncode == 0 and PLAIN_ANSWER in asked.stdout,
                         (asked.stdout or asked.stderr).strip().splitlines()[0][:160] if (asked.stdout or asked.stderr) else "")
            idle(lib, t)
            bridge("run", "stop", "--project-dir", str(terminal), bridge_dir=bridge_dir, cache_dir=cache_dir)

            # The library's user types /session-bridge:start and reads the ID.
            before_start = len(main_turns(lib_stub))
            lib.type_line("/session-bridge:start")
            done = lib.wait_for(
                lambda: [e for e in main_turns(lib_stub)[before_start:]
                         if e["answer"].get("rule") == "rule_a_tool_result"],
                t, "the library's start result")[0]
            ids = re.findall(r"\b[a-z0-9]{6}\b", done["answer"].get("text", ""))
            checks.check("/session-bridge:start prints the library's bridge ID", lib_id in ids,
                         f"{lib_id} in {done['answer'].get('text', '')!r}")
            idle(lib, t)
            app_id = session_of_project(app_dir, bridge_dir, cache_dir)

            # 1. connect wakes nobody.
            lib_turns = len(main_turns(lib_stub))
            app_turns_before = len(main_turns(app_stub))
            app.type_line(f"/session-bridge:connect {lib_id}")
            connected = wait_turn_result(app_stub, app_turns_before, "Connected to 'my-library'", t, watched)
            checks.check("connect runs without a permission prompt", True,
                         connected["newest_user_text"].strip().splitlines()[0][:120])
            idle(app, t)
            app_turns = len(main_turns(app_stub))
            lib_read = bridge_dir / "sessions" / lib_id / "inbox" / "read"
            app_read = bridge_dir / "sessions" / app_id / "inbox" / "read"
            lib.wait_for(lambda: json_names(lib_read) and json_names(app_read), t,
                         "the ping and its answer to be taken")
            time.sleep(QUIET_SECONDS)
            checks.check("connect wakes nobody: the library gets no turn for the ping",
                         len(main_turns(lib_stub)) == lib_turns,
                         f"{len(main_turns(lib_stub)) - lib_turns} new turns")
            checks.check("connect wakes nobody: the app gets no turn for the answer to its ping",
                         len(main_turns(app_stub)) == app_turns,
                         f"{len(main_turns(app_stub)) - app_turns} new turns")
            checks.check("the ping and its answer are filed as read, nothing left pending",
                         not json_names(bridge_dir / "sessions" / lib_id / "inbox")
                         and not json_names(bridge_dir / "sessions" / app_id / "inbox"))

            # 2. An ask, answered by the idle library with nobody typing.
            lib_turns = len(main_turns(lib_stub))
            app_turns = len(main_turns(app_stub))
            asked_at = time.monotonic()
            app.type_line("/session-bridge:ask what changed in v2?")
            woken = wait_turn_result(lib_stub, lib_turns, "Query from ", t, watched)
            checks.check("the idle library is woken by the ask, with nobody typing",
                         "what changed in v2?" in woken["newest_user_text"],
                         woken["newest_user_text"].strip().splitlines()[0][:160])
            checks.check("the library answers with the command the wake-up gives",
                         (woken["answer"].get("command") or "").startswith("bridge-host run reply msg-"),
                         repr(woken["answer"].get("command")))
            replied = wait_turn_result(app_stub, app_turns, PLAIN_ANSWER, t, watched)
            answered_in = time.monotonic() - asked_at
            checks.check("the app's ask gets the library's answer, no permission prompt anywhere",
                         "Reply from " in replied["newest_user_text"],
                         f"{answered_in:.1f} s from typing the ask to the reply")
            print(f"figure: ask typed to reply in the app's context: {answered_in:.2f} s", flush=True)
            idle(app, t)
            idle(lib, t)

            # 3. A clarification loop.
            lib_turns = len(main_turns(lib_stub))
            app_turns = len(main_turns(app_stub))
            app.type_line("/session-bridge:ask which config format should I use?")
            first = wait_turn_result(lib_stub, lib_turns, "which config format", t, watched)
            asked_back = wait_turn_result(app_stub, app_turns, CLARIFYING_QUESTION, t, watched)
            checks.check("the library asks back, and the app answers with the command the reply gives",
                         (asked_back["answer"].get("command") or "").startswith(f"bridge-host run ask {lib_id} "),
                         repr(asked_back["answer"].get("command")))
            second = wait_turn_result(lib_stub, lib_turns + 1, "The v2 API.", t, watched)
            final = wait_turn_result(app_stub, app_turns + 1, PLAIN_ANSWER, t, watched)
            checks.check("the clarification loop completes with the final answer in the app",
                         first is not second and "Reply from " in final["newest_user_text"])
            idle(app, t)
            idle(lib, t)

            # 4. The app's exit wakes nobody.
            lib_turns = len(main_turns(lib_stub))
            app_status = app.exit(t)
            checks.check("the app exits cleanly", app_status == 0,
                         f"status {app_status} in {app.exit_seconds or 0:.2f} s; left running: {app.leftovers or 'nothing'}")
            lib_inbox = bridge_dir / "sessions" / lib_id / "inbox"
            lib.wait_for(lambda: json_names(lib_inbox), t, "the app's session-ended notice")
            time.sleep(QUIET_SECONDS)
            checks.check("the app's exit wakes nobody", len(main_turns(lib_stub)) == lib_turns,
                         f"{len(main_turns(lib_stub)) - lib_turns} new turns")
            checks.check("SessionEnd removed the app's bridge session", app_id not in sessions(bridge_dir),
                         f"sessions: {sessions(bridge_dir)}")

            # 5. The library ends too: nothing is left.
            lib_status = lib.exit(t)
            checks.check("the library exits cleanly", lib_status == 0,
                         f"status {lib_status} in {lib.exit_seconds or 0:.2f} s; left running: {lib.leftovers or 'nothing'}")
            checks.check("SessionEnd leaves no bridge session", sessions(bridge_dir) == [],
                         f"sessions: {sessions(bridge_dir)}")
            left = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                left = bridge_processes(bridge_dir)
                if not left:
                    break
                time.sleep(0.2)
            checks.check("SessionEnd leaves no process behind", not left and not lib.leftovers
                         and not app.leftovers, f"{left or 'none'}")
            refused = lib_stub.proxy_refusals() + app_stub.proxy_refusals()
            print(f"note: outside hosts Claude Code tried through the proxy (refused): {sorted(set(refused)) or 'none'}")
    return checks.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--timeout", type=float, default=90, help="seconds for each step")
    parser.add_argument("--plugin-dir", type=Path, default=PLUGIN_DIR,
                        help="the plugin to load (default: this repository's plugin/)")
    args = parser.parse_args()
    try:
        return scenario(args)
    except HarnessError as err:
        print(f"FAIL {err}", flush=True)
        print("real client: 0 passed, 1 failed", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
