#!/usr/bin/env python3
"""Gemini CLI (pinned in .ci/gemini) on a cold start: a fresh HOME and an
empty compile cache, `bridge-host mcp` as its MCP server, offline against a
local stand-in for the Gemini API (`gemini_stub.py`, 127.0.0.1 only, which
is also its proxy, so that nothing leaves the machine). Its "model" reads
the prompt, connects to the session it names, then asks it, with
`wait_for_previous: true` on the ask as Gemini CLI's system prompt says. A
library session in a terminal (`bridge-host run listen`, then `run reply`)
answers.

Checked, each from what happened:

1. the first model request offers every bridge tool (`mcp_bridge_*`);
2. gemini exits 0 and prints the library's answer;
3. the ask was sent with `wait_for_previous: true`, and neither call came
   back as an error;
4. Gemini printed no `unknown format` warning about the tools' schemas;
5. the library's history holds the query from a session whose client is
   `gemini-cli-mcp-client <version>`, and the reply;
6. nothing left 127.0.0.1: the stand-in refused no request meant for
   elsewhere.

Prints `ok <check>` or `FAIL <check>: why` per check and a last line
`gemini client: N passed, M failed`; exits 1 when any check failed.

Usage: python3 gemini_client.py [--keep]
Gemini CLI: GEMINI_BIN, else .ci/gemini/node_modules/.bin/gemini.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SYSTEM_PATH, bridge, bridge_host_bin, workspace  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
QUESTION = "What changed in the v2 API of the library?"
ANSWER = "init() is now setup(); Config lost its verbose field."


def gemini_bin() -> Path:
    given = os.environ.get("GEMINI_BIN")
    return Path(given) if given else REPO / ".ci/gemini/node_modules/.bin/gemini"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    results: list[bool] = []

    def check(name: str, ok: object, why: str = "") -> None:
        results.append(bool(ok))
        print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)

    host = bridge_host_bin()
    with workspace(args.keep, prefix="gemini-client-") as root:
        bridge_dir, lib_cache = root / "bridge", root / "library-cache"
        bridge_dir.mkdir(mode=0o700)
        lib_dir, app_dir = root / "library", root / "app"
        lib_dir.mkdir()
        app_dir.mkdir()

        def lib(*words: str, timeout: float = 60, stdin: str | None = None):
            return subprocess.run(
                [str(host), "run", *words, "--project-dir", str(lib_dir)],
                cwd=lib_dir, input=stdin, capture_output=True, text=True, timeout=timeout,
                env={"PATH": SYSTEM_PATH, "HOME": str(root / "library-home"),
                     "BRIDGE_DIR": str(bridge_dir), "BRIDGE_CACHE_DIR": str(lib_cache)})

        lib_id = lib("start").stdout.strip()
        answered: list[str] = []

        def answer() -> None:
            # The library's terminal: take messages until the query comes
            # (Gemini's `connect` sends a ping first), then answer it.
            deadline = time.monotonic() + 170
            while time.monotonic() < deadline:
                got = lib("listen", "--timeout", "150", timeout=170)
                text = got.stdout
                start = text.find("<peer-message ")
                header = text[start:].split("\n", 1)[0].split() if start >= 0 else []
                field = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in header if "=" in w}
                answered.append(f"listen exit {got.returncode}: {text[-600:]} {got.stderr[-300:]}")
                if got.returncode != 0 and start < 0:
                    return
                if field.get("type") == "query":
                    sent = lib("reply", field["id"], "-", stdin=ANSWER)
                    answered.append(f"reply exit {sent.returncode}: {sent.stderr[-400:]}")
                    return

        terminal = threading.Thread(target=answer, daemon=True)
        terminal.start()
        clients: set[str] = set()
        done = threading.Event()

        def watch_peers() -> None:
            while not done.is_set():
                res = bridge("run", "peers", "--json", bridge_dir=bridge_dir, cache_dir=lib_cache,
                             check=False)
                try:
                    for row in json.loads(res.stdout)["peers"]:
                        if row.get("client"):
                            clients.add(f"{row['sessionId']} {row['client']}")
                except (ValueError, KeyError, TypeError):
                    pass
                time.sleep(0.1)

        watcher = threading.Thread(target=watch_peers, daemon=True)
        watcher.start()

        logs, port_file = root / "model-requests", root / "model.port"
        model = subprocess.Popen(
            [sys.executable, str(HERE / "gemini_stub.py"), "--log-dir", str(logs),
             "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL, stderr=open(root / "model.err", "w"))
        try:
            for _ in range(300):
                if port_file.exists() and port_file.read_text().strip():
                    break
                time.sleep(0.1)
            port = port_file.read_text().strip()
            # A fresh HOME, with only what headless Gemini CLI needs (see
            # docs/mcp.md): the API-key auth type, no usage statistics (an
            # outside lookup), the bridge server trusted (else its tools
            # are left out without a word). Its compile cache is empty.
            home = root / "gemini-home"
            (home / ".gemini").mkdir(parents=True)
            cold_cache = root / "gemini-cache"
            (home / ".gemini" / "settings.json").write_text(json.dumps({
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "privacy": {"usageStatisticsEnabled": False},
                "mcpServers": {"bridge": {"command": str(host), "args": ["mcp"], "trust": True}},
            }))
            env = {
                "PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8",
                "GEMINI_API_KEY": "dummy", "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}",
                "HTTPS_PROXY": f"http://127.0.0.1:{port}", "HTTP_PROXY": f"http://127.0.0.1:{port}",
                "NO_PROXY": "127.0.0.1,localhost",
                "BRIDGE_DIR": str(bridge_dir), "BRIDGE_CACHE_DIR": str(cold_cache),
            }
            gemini = subprocess.run(
                [str(gemini_bin()), "--skip-trust", "-o", "text", "-p",
                 f"connect to session {lib_id} and ask it: {QUESTION}"],
                cwd=app_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                text=True, timeout=240)
        finally:
            done.set()
            model.terminate()
            model.wait(5)
        terminal.join(30)
        watcher.join(10)

        streams = [json.loads(Path(f).read_text())["body"]
                   for f in sorted(glob.glob(str(logs / "*-stream.json")))]
        offered = sorted(d["name"] for t in (streams[0]["request"].get("tools") or [] if streams else [])
                         for d in t.get("functionDeclarations") or [] if d["name"].startswith("mcp_bridge_"))
        tools = ["ask", "away", "check_inbox", "connect", "history", "listen", "peers",
                 "receive", "reply", "send", "status", "thread", "track"]
        check(f"the first model request offers the {len(tools)} bridge tools",
              offered == [f"mcp_bridge_{t}" for t in tools], f"offered: {offered}")
        check("gemini exits 0 and prints the library's answer",
              gemini.returncode == 0 and ANSWER in gemini.stdout,
              f"exit {gemini.returncode}; stdout {gemini.stdout[-1500:]!r}; "
              f"stderr {gemini.stderr[-1500:]!r}; library: {answered}")

        calls = [s["answer"]["functionCall"] for s in streams if "functionCall" in s["answer"]]
        asks = [c for c in calls if c["name"] == "mcp_bridge_ask"]
        check("the ask was sent with wait_for_previous: true",
              asks and asks[0]["args"].get("wait_for_previous") is True, calls)
        results_seen = []
        for s in streams:
            for content in s["request"].get("contents") or []:
                for part in content.get("parts") or []:
                    if isinstance(part, dict) and "functionResponse" in part:
                        results_seen.append(part["functionResponse"])
        errors = [r for r in results_seen if "error" in json.dumps(r.get("response")).lower()[:40]]
        check("connect and ask both came back without an error",
              {r["name"] for r in results_seen} >= {"mcp_bridge_connect", "mcp_bridge_ask"}
              and not errors, json.dumps(errors)[:1500] or results_seen)
        check("Gemini printed no unknown-format warning about the schemas",
              "unknown format" not in gemini.stderr, gemini.stderr[-1500:])

        history = bridge("run", "history", "--json", "--project-dir", str(lib_dir),
                         "--session", lib_id, bridge_dir=bridge_dir, cache_dir=lib_cache,
                         check=False).stdout
        try:
            messages = list(json.loads(history)["messages"])
        except (ValueError, KeyError, TypeError):
            messages = []
        query = [m for m in messages if m.get("type") == "query" and m.get("content") == QUESTION]
        reply = [m for m in messages if m.get("type") == "response" and m.get("from") == lib_id
                 and query and m.get("inReplyTo") == query[0]["id"] and m.get("content") == ANSWER]
        check("the library's history holds Gemini's query and the reply", query and reply,
              history[:1500])
        pinned = json.loads((REPO / ".ci/gemini/package.json").read_text())["dependencies"]["@google/gemini-cli"]
        want = f"gemini-cli-mcp-client {os.environ.get('GEMINI_VERSION', pinned)}"
        sender = query[0].get("from") if query else None
        check(f"the query came from a session listed as {want!r} while Gemini ran",
              f"{sender} {want}" in clients, f"query from {sender}; seen: {sorted(clients)}")

        refused = sorted(os.path.basename(f) for f in glob.glob(str(logs / "*-refused.json")))
        check("nothing left 127.0.0.1: the stand-in refused no request meant for elsewhere",
              not refused, refused)
        lib("stop")

    passed = sum(results)
    print(f"gemini client: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
