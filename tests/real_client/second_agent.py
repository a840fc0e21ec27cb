#!/usr/bin/env python3
"""A real second agent: the Codex CLI (pinned in .ci/codex) asks through
`bridge-host mcp`, and a real Claude Code session (pinned in .ci/claude-code),
idle with the plugin loaded, is woken by the plugin's wake hook and answers
with the plugin's MCP `reply` tool. Each side has its own local stand-in for
its model API (127.0.0.1 only): `model_stub.py` for Claude Code,
`responses_stub.py` for Codex.

Checked, each from what happened:

1. codex exec exits 0 and its final message carries Claude's answer, and
   its first model request offered the bridge's tools: Codex starts its
   turn about a second after `initialize`, answered or not, and its server
   starts with an empty compile cache of its own;
2. the idle Claude session was woken with nobody typing and answered with
   the MCP tool `mcp__plugin_session-bridge_bridge__reply`, with no
   permission prompt on its screen, as the bridge session its hooks
   registered;
3. while Codex ran, its session was listed with client
   `codex-mcp-client <version>`; once Codex exited, it was gone;
4. the library's history holds the query from Codex's session and the reply;
5. neither stand-in refused a request aimed elsewhere (nothing left
   127.0.0.1).

Prints `ok <check>` or `FAIL <check>: why` per check and a last line
`second agent: N passed, M failed`; exits 1 when any check failed.

Usage: python3 second_agent.py [--keep]
Codex: CODEX_BIN (with CODEX_VERSION, the version it names itself with), else
.ci/codex/node_modules/.bin/codex, the version pinned there.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    SYSTEM_PATH,
    Claude,
    Stub,
    bridge,
    bridge_host_bin,
    session_of_project,
    workspace,
)
from model_stub import MCP_REPLY_TOOL, PLAIN_ANSWER  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
QUESTION = "What changed in the v2 API of the library?"


def codex_bin() -> Path:
    given = os.environ.get("CODEX_BIN")
    return Path(given) if given else REPO / ".ci/codex/node_modules/.bin/codex"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    results: list[bool] = []

    def check(name: str, ok: bool, why: str = "") -> None:
        results.append(bool(ok))
        print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)

    host = bridge_host_bin()
    with workspace(args.keep, prefix="second-agent-") as root:
        bridge_dir, cache_dir = root / "bridge", root / "cache"
        bridge_dir.mkdir(mode=0o700)
        cache_dir.mkdir()
        lib_dir, app_dir = root / "library", root / "app"
        lib_dir.mkdir()
        app_dir.mkdir()
        with Stub(root / "library.jsonl", persona="library-mcp") as lib_stub, \
                Claude(lib_dir, lib_stub, bridge_dir=bridge_dir, cache_dir=cache_dir,
                       name="lib") as lib:
            lib.wait_ready(90)
            lib_id = session_of_project(lib_dir, bridge_dir, cache_dir)
            marker = len(lib_stub.entries())

            # Codex, with bridge-host mcp as its MCP server.
            codex_home = root / "codex-home"
            codex_home.mkdir()
            (root / "codex-requests").mkdir()
            # No fixed steps: ask first, and end the turn with the tool's
            # output once it comes, however many requests Codex makes.
            script = {
                "default_call": {"namespace": "mcp__bridge", "name": "ask",
                                 "arguments": {"peer": lib_id, "question": QUESTION,
                                               "timeout_seconds": 150}},
                "default_text": "The library session answered: {last_output}",
            }
            (root / "codex-script.json").write_text(json.dumps(script))
            model = subprocess.Popen(
                [sys.executable, str(HERE / "responses_stub.py"), "--script",
                 str(root / "codex-script.json"), "--log-dir", str(root / "codex-requests"),
                 "--port-file", str(root / "codex-model.port")],
                stdout=subprocess.DEVNULL, stderr=open(root / "codex-model.err", "w"))
            try:
                port_file = root / "codex-model.port"
                for _ in range(100):
                    if port_file.exists() and port_file.read_text().strip():
                        break
                    time.sleep(0.1)
                port = port_file.read_text().strip()
                (codex_home / "config.toml").write_text(f"""
model = "stand-in"
model_provider = "local"
approval_policy = "never"
sandbox_mode = "read-only"

[model_providers.local]
name = "local stand-in"
base_url = "http://127.0.0.1:{port}/v1"
wire_api = "responses"
env_key = "STANDIN_API_KEY"

[mcp_servers.bridge]
command = "{host}"
args = ["mcp"]
env_vars = ["BRIDGE_DIR", "BRIDGE_CACHE_DIR"]
default_tools_approval_mode = "approve"

[features]
plugins = false

[analytics]
enabled = false
""")
                env = {
                    "PATH": SYSTEM_PATH, "HOME": str(root / "codex-user"), "LANG": "C.UTF-8",
                    "CODEX_HOME": str(codex_home), "STANDIN_API_KEY": "dummy",
                    # A first run: a compile cache nothing has used yet.
                    "BRIDGE_DIR": str(bridge_dir), "BRIDGE_CACHE_DIR": str(root / "codex-cache"),
                    # Anything not aimed at 127.0.0.1 goes to the stand-in,
                    # which refuses it and logs it.
                    "HTTPS_PROXY": f"http://127.0.0.1:{port}", "HTTP_PROXY": f"http://127.0.0.1:{port}",
                    "NO_PROXY": "127.0.0.1,localhost",
                }
                (root / "codex-user").mkdir()
                clients: list[str] = []
                polls: list[str] = []
                done = threading.Event()

                def watch_peers() -> None:
                    # Back to back: Codex's session lives only as long as its
                    # one ask, a few seconds on a loaded machine.
                    while not done.is_set():
                        res = bridge("run", "peers", "--json", bridge_dir=bridge_dir,
                                     cache_dir=cache_dir, check=False)
                        try:
                            rows = json.loads(res.stdout)["peers"]
                            polls.append(",".join(sorted(r["sessionId"] for r in rows)))
                            for row in rows:
                                if str(row.get("client", "")).startswith("codex-mcp-client"):
                                    clients.append(f"{row['sessionId']} {row['client']}")
                        except (ValueError, KeyError, TypeError):
                            polls.append(f"unreadable: {res.stdout[:200]!r} {res.stderr[:200]!r}")
                        time.sleep(0.05)

                watcher = threading.Thread(target=watch_peers, daemon=True)
                watcher.start()
                last = root / "codex-last.txt"
                codex = subprocess.run(
                    [str(codex_bin()), "exec", "--skip-git-repo-check", "-o", str(last),
                     "Ask the library session what changed in its v2 API."],
                    cwd=app_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                    text=True, timeout=240)
                done.set()
                watcher.join()
            finally:
                model.terminate()
                model.wait(5)
            final = last.read_text() if last.exists() else ""
            check("codex exec exits 0 and its final message carries Claude's answer",
                  codex.returncode == 0 and PLAIN_ANSWER in final,
                  f"exit {codex.returncode}; final {final!r}; stderr {codex.stderr[-1500:]}")

            first = sorted((root / "codex-requests").glob("*.json"))
            first_tools = []
            for path in first:
                body = json.loads(path.read_text()).get("body")
                if isinstance(body, dict) and "tools" in body:
                    first_tools = [t.get("name") for t in body["tools"]] + [
                        f"{t.get('name')}/{u.get('name')}" for t in body["tools"]
                        for u in t.get("tools") or []]
                    break
            check("Codex's first model request offered the bridge's tools (cold start)",
                  "mcp__bridge/ask" in first_tools, f"first request's tools: {first_tools}")

            # How Claude answered.
            entries = lib_stub.entries()[marker:]
            mcp_replies = [e for e in entries
                           if (e.get("answer") or {}).get("tool") == MCP_REPLY_TOOL]
            bash_calls = [e for e in entries if (e.get("answer") or {}).get("command")]
            check("the idle Claude session was woken and answered with the MCP reply tool",
                  mcp_replies and not bash_calls,
                  f"{len(mcp_replies)} MCP replies, Bash calls {[e['answer']['command'] for e in bash_calls]}")
            prompt = lib.permission_prompt()
            check("no permission prompt appeared", prompt is None, prompt or "")

            codex_sessions = sorted({c.split()[0] for c in clients})
            names = sorted({c.split(" ", 1)[1] for c in clients})
            pinned = json.loads((REPO / ".ci/codex/package.json").read_text())["dependencies"]["@openai/codex"]
            want = f"codex-mcp-client {os.environ.get('CODEX_VERSION', pinned)}"
            check(f"Codex's session was listed as {want!r} while it ran",
                  len(codex_sessions) == 1 and names == [want],
                  f"seen: {sorted(set(clients))}; {len(polls)} polls saw: {sorted(set(polls))[:8]}")
            # `codex exec` returns without waiting for its MCP server to
            # finish: the server stops its session when its input closes,
            # which on a loaded machine ends a moment after Codex did.
            exited = time.monotonic()
            while True:
                peers = bridge("run", "peers", "--json", bridge_dir=bridge_dir, cache_dir=cache_dir).stdout
                listed = {p["sessionId"] for p in json.loads(peers)["peers"]}
                if not (set(codex_sessions) & listed) or time.monotonic() - exited > 15:
                    break
                time.sleep(0.1)
            check("Codex's session is stopped once Codex exits",
                  codex_sessions and not (set(codex_sessions) & listed),
                  f"peers {time.monotonic() - exited:.1f} s after Codex exited: {sorted(listed)}")

            history = bridge("run", "history", "--json", "--project-dir", str(lib_dir),
                             "--session", lib_id, bridge_dir=bridge_dir, cache_dir=cache_dir,
                             check=False).stdout
            try:
                messages = list(json.loads(history)["messages"])
            except (ValueError, KeyError, TypeError):
                messages = []
            query = [m for m in messages if m.get("type") == "query" and m.get("content") == QUESTION
                     and m.get("from") in codex_sessions]
            reply = [m for m in messages if m.get("type") == "response" and m.get("from") == lib_id
                     and query and m.get("inReplyTo") == query[0]["id"]]
            check("the library's history holds Codex's query and the reply from the hooks' session",
                  query and reply, history[:1500])

            refused = lib_stub.proxy_refusals()
            codex_refused = sorted(p.name for p in (root / "codex-requests").glob("*-refused.json"))
            check("nothing left 127.0.0.1: neither stand-in refused a request meant for elsewhere",
                  not refused and not codex_refused, f"{refused} {codex_refused}")
            lib.exit()

    passed = sum(results)
    print(f"second agent: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
