#!/usr/bin/env python3
"""Gemini CLI (pinned in .ci/gemini), headless, with the bridge's MCP server
and its AfterAgent hook (`bridge-host hook gemini-after-agent`) in
settings.json, offline against a local stand-in for the Gemini API
(`gemini_stub.py`, 127.0.0.1 only, also its proxy). The stand-in holds its
answer to the first model request until the test has written to the Gemini
session's mailbox, so the first turn is still running when the messages
arrive.

Run 1, a question: a terminal session `ask`s the Gemini session while its
turn runs for something else ("say hello"). Checked:

1. at the end of that turn the hook handed the question over: the next
   model request's newest user text is the guest's tool-wake rendering
   (a peer's message, the reply tool with the query's message_id, the
   question between the fence lines, no `bridge-host run`);
2. the "model" called the bridge's reply tool with that message_id;
3. the asker's `ask` printed the answer, which quotes the question;
4. three model requests in all: the turn, the handed-over question, the
   turn's end after the reply (where the hook handed nothing over);
5. the asker's `track` says the hook took the question (`tool-wake`) and
   that it was seen: at the end of the answering turn the hook found its
   ID in Gemini's chat recording (`transcript_path`).

Run 2, nothing to do: a peer's ping, the pong to the Gemini session's own
ping and a peer's session-ended notice wait in the mailbox. Checked: one
model request (no extra turn), no "Agent execution blocked", and the peer's
ping was answered.

Both runs: gemini exits 0, and nothing left 127.0.0.1.

Prints `ok <check>` or `FAIL <check>: why` per check and a last line
`gemini hook: N passed, M failed`; exits 1 when any check failed.

Usage: python3 gemini_hook.py [--keep]
Gemini CLI: GEMINI_BIN, else .ci/gemini/node_modules/.bin/gemini.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SYSTEM_PATH, bridge_host_bin, workspace  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
QUESTION = "Which config field did v2 remove?"
CLIENT = "gemini-cli-mcp-client"
PEER_LINE = ("session-bridge: a message from a peer agent session arrived for this session "
             "(it is not from the user).")


def gemini_bin() -> Path:
    given = os.environ.get("GEMINI_BIN")
    return Path(given) if given else REPO / ".ci/gemini/node_modules/.bin/gemini"


def texts(content: dict) -> str:
    return "".join(p.get("text", "") for p in content.get("parts", []) if isinstance(p, dict))


class Run:
    """One headless Gemini CLI run in its own folder, with a terminal
    `bridge-host` for the peers."""

    def __init__(self, root: Path, name: str, host: Path):
        self.root, self.host = root / name, host
        self.bridge_dir = self.root / "bridge"
        self.bridge_dir.mkdir(parents=True, mode=0o700)
        self.cache = self.root / "terminal-cache"
        self.logs = self.root / "model-requests"

    def term(self, project: str, *words: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`bridge-host run <words>` in the terminal of project `project`."""
        folder = self.root / project
        folder.mkdir(exist_ok=True)
        return subprocess.run(
            [str(self.host), "run", *words], cwd=folder, capture_output=True, text=True,
            timeout=timeout, env=self.term_env())

    def term_env(self) -> dict:
        return {"PATH": SYSTEM_PATH, "HOME": str(self.root / "terminal-home"),
                "BRIDGE_DIR": str(self.bridge_dir), "BRIDGE_CACHE_DIR": str(self.cache)}

    def inbox(self, session: str) -> list[dict]:
        found = []
        for path in glob.glob(str(self.bridge_dir / "sessions" / session / "inbox" / "*.json")):
            try:
                found.append(json.loads(Path(path).read_text()))
            except (OSError, ValueError):
                pass
        return found

    def gemini(self, prompt: str, while_held: Callable[[str], None]) -> subprocess.CompletedProcess:
        """Runs Gemini CLI on `prompt`; once its bridge session is listed,
        `while_held(session)` runs before the stand-in answers the first
        model request."""
        port_file, gate = self.root / "model.port", self.root / "model.go"
        model = subprocess.Popen(
            [sys.executable, str(HERE / "gemini_stub.py"), "--log-dir", str(self.logs),
             "--port-file", str(port_file), "--hold", str(gate)],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "model.err", "w"))
        gemini = None
        try:
            for _ in range(300):
                if port_file.exists() and port_file.read_text().strip():
                    break
                time.sleep(0.1)
            port = port_file.read_text().strip()
            home, app = self.root / "gemini-home", self.root / "app"
            (home / ".gemini").mkdir(parents=True)
            app.mkdir()
            # Headless Gemini CLI's offline settings (docs/mcp.md), then the
            # bridge as a user installs it: `bridge-host setup gemini` (the
            # server, the AfterAgent hook, and the policy file that lets the
            # bridge's tools run unasked, so that `gemini -p` offers them).
            # Nothing is added by hand.
            settings = home / ".gemini" / "settings.json"
            settings.write_text(json.dumps({
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "privacy": {"usageStatisticsEnabled": False},
            }))
            setup = subprocess.run(
                [str(self.host), "setup", "gemini"], capture_output=True, text=True, timeout=60,
                env={"PATH": SYSTEM_PATH, "HOME": str(home),
                     "XDG_DATA_HOME": str(home / ".local/share")})
            if setup.returncode != 0:
                raise RuntimeError(f"bridge-host setup gemini failed: {setup.stderr}")
            written = json.loads(settings.read_text())
            if "gemini-after-agent" not in json.dumps(written.get("hooks", {})):
                raise RuntimeError(f"bridge-host setup gemini wrote no AfterAgent hook: {written}")
            if "trust" in json.dumps(written["mcpServers"]["bridge"]):
                raise RuntimeError(f"bridge-host setup gemini trusted the whole server: {written}")
            policy = home / ".gemini" / "policies" / "session-bridge.toml"
            if not policy.is_file():
                raise RuntimeError(f"bridge-host setup gemini wrote no policy file: {setup.stdout}")
            env = {
                "PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8",
                "GEMINI_API_KEY": "dummy", "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}",
                "HTTPS_PROXY": f"http://127.0.0.1:{port}", "HTTP_PROXY": f"http://127.0.0.1:{port}",
                "NO_PROXY": "127.0.0.1,localhost",
                "BRIDGE_DIR": str(self.bridge_dir), "BRIDGE_CACHE_DIR": str(self.root / "gemini-cache"),
            }
            gemini = subprocess.Popen(
                [str(gemini_bin()), "--skip-trust", "-o", "text", "-p", prompt],
                cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            session = None
            deadline = time.monotonic() + 90
            while session is None and time.monotonic() < deadline and gemini.poll() is None:
                listed = self.term("terminal", "peers", "--json")
                try:
                    session = next((row["sessionId"] for row in json.loads(listed.stdout)["peers"]
                                    if str(row.get("client", "")).startswith(CLIENT)), None)
                except (ValueError, KeyError, TypeError):
                    pass
                time.sleep(0.1)
            if session is not None:
                while_held(session)
            gate.write_text("go")
            out, err = gemini.communicate(timeout=180)
            return subprocess.CompletedProcess(gemini.args, gemini.returncode, out, err)
        finally:
            if gemini is not None and gemini.poll() is None:
                gemini.kill()
                gemini.wait(10)
            model.terminate()
            model.wait(5)

    def streams(self) -> list[dict]:
        return [json.loads(Path(f).read_text())["body"]
                for f in sorted(glob.glob(str(self.logs / "*-stream.json")))]

    def refused(self) -> list[str]:
        return sorted(os.path.basename(f) for f in glob.glob(str(self.logs / "*-refused.json")))


def wait_for(what: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    results: list[bool] = []

    def check(name: str, ok: object, why: object = "") -> None:
        results.append(bool(ok))
        print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)

    host = bridge_host_bin()
    with workspace(args.keep, prefix="gemini-hook-") as root:
        # Run 1: a question arrives while the turn runs.
        one = Run(root, "question", host)
        one.term("library", "start")
        asked: dict = {}

        def ask(session: str) -> None:
            asked["proc"] = subprocess.Popen(
                [str(host), "run", "ask", session, QUESTION, "--timeout", "150"],
                cwd=one.root / "library", env=one.term_env(), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            asked["session"] = session
            wait_for(lambda: any(m.get("type") == "query" for m in one.inbox(session)), 30)

        gemini = one.gemini("say hello", ask)
        ask_out, ask_err = asked["proc"].communicate(timeout=60) if "proc" in asked else ("", "")
        streams = one.streams()
        check("gemini exits 0 (run 1)", gemini.returncode == 0,
              f"exit {gemini.returncode}; stderr {gemini.stderr[-1500:]!r}")
        handed = ""
        if len(streams) > 1:
            users = [texts(c) for c in streams[1]["request"].get("contents") or []
                     if c.get("role") == "user" and texts(c).strip()]
            handed = users[-1] if users else ""
        check("the hook handed the question over as the next prompt, in the tools' words",
              handed.startswith(PEER_LINE + "\n") and f"\n{QUESTION}\n" in handed
              and "the reply tool with message_id msg-" in handed
              and "bridge-host run" not in handed, handed[:1500] or streams[:1])
        calls = [s["answer"]["functionCall"] for s in streams if "functionCall" in s["answer"]]
        replies = [c for c in calls if c["name"] == "mcp_bridge_reply"]
        handed_id = handed.split("the reply tool with message_id ")[-1].split()[0] if handed else None
        check("the model answered with the reply tool and the message_id it read",
              len(replies) == 1 and replies[0]["args"].get("message_id") == handed_id,
              calls)
        check("the asker got the answer, which quotes the question",
              asked.get("proc") is not None and asked["proc"].returncode == 0
              and f"The stand-in model read your question: {QUESTION}" in ask_out,
              f"ask: {ask_out[-800:]!r} {ask_err[-800:]!r}")
        check("three model requests: the turn, the question, the turn's end after the reply",
              len(streams) == 3 and gemini.stderr.count("Agent execution blocked") == 1,
              f"{len(streams)} requests; stderr {gemini.stderr[-1500:]!r}")
        tracked = one.term("library", "track", handed_id or "-", "--json")
        try:
            steps = [(e["stage"], e.get("taker")) for e in json.loads(tracked.stdout)["events"]]
        except (ValueError, KeyError, TypeError):
            steps = []
        check("the asker's track says the hook took the question and the model saw it",
              ("taken", "tool-wake") in steps and any(stage == "seen" for stage, _ in steps),
              tracked.stdout + tracked.stderr)
        check("nothing left 127.0.0.1 (run 1)", not one.refused(), one.refused())
        one.term("library", "stop")

        # Run 2: only things the model has nothing to do with.
        two = Run(root, "nothing", host)
        pinger = two.term("pinger", "start").stdout.strip()
        ender = two.term("ender", "start").stdout.strip()
        state: dict = {}

        def nothing(session: str) -> None:
            state["session"] = session
            state["ping"] = two.term("pinger", "connect", session)
            # The Gemini session pings `ender`, which answers (a pong for
            # the Gemini session) and then ends (a session-ended notice).
            two.term("app", "connect", ender, "--session", session)
            two.term("ender", "listen", "--timeout", "10")
            two.term("ender", "stop")
            wait_for(lambda: len(two.inbox(session)) >= 3, 10)
            state["pending"] = sorted(f"{m.get('type')} from {m.get('from')}"
                                      for m in two.inbox(session))

        gemini = two.gemini("say hello", nothing)
        streams = two.streams()
        session = state.get("session")
        check("gemini exits 0 (run 2)", gemini.returncode == 0,
              f"exit {gemini.returncode}; stderr {gemini.stderr[-1500:]!r}")
        want = sorted([f"ping from {pinger}", f"ping from {ender}", f"session-ended from {ender}"])
        check("a ping, a pong and a session-ended notice were pending at the turn's end",
              state.get("pending") == want, state.get("pending"))
        check("they made no extra turn: one model request, nothing blocked",
              len(streams) == 1 and "Agent execution blocked" not in gemini.stderr,
              f"{len(streams)} requests; stderr {gemini.stderr[-1500:]!r}")
        check("the peer's ping was answered",
              any(m.get("type") == "ping" and m.get("from") == session
                  for m in two.inbox(pinger)), two.inbox(pinger))
        check("nothing left 127.0.0.1 (run 2)", not two.refused(), two.refused())
        two.term("pinger", "stop")

    passed = sum(results)
    print(f"gemini hook: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
