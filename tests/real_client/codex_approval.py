#!/usr/bin/env python3
"""Per-tool approval in the real Codex CLI (pinned in .ci/codex): after
`bridge-host setup codex`, `codex exec` runs the bridge's ordinary MCP tools
without asking, and does not run `away` unasked.

One throwaway CODEX_HOME and HOME; `bridge-host setup codex` installs the
bridge into it, on top of a config.toml that points the model provider at a
local stand-in for the Responses API (`responses_stub.py`, 127.0.0.1 only;
HTTPS_PROXY/HTTP_PROXY point at it too, and as root with `unshare` the
script runs in a network namespace of its own with only `lo`). Its "model"
acts only on what each request shows: the prompt lists bridge tools to run,
one at a time, with their arguments; it calls the next one when the request
offers it in the `mcp__bridge` namespace, and ends the turn saying what each
returned. The prompt asks for `send` (a query to a terminal peer's session,
carrying a fresh token), then `away` with action "on".

Checked, each from what happened:

1. setup wrote, for [mcp_servers.bridge], default_tools_approval_mode =
   "approve" and tools.away.approval_mode = "prompt" (read back with
   tomllib);
2. the ordinary tool ran: the terminal peer's `bridge-host run check-inbox`
   holds the token, sent from another session, and the `send` output the
   stand-in received is the message's ID, no approval text;
3. `away` did not run: `bridge-host run away status --json` in Codex's
   project is the same before and after (away answers still off), and the
   output the stand-in received for the `away` call says approval is
   required.

Prints `ok   <check>: <detail>` or `FAIL <check>: <detail>` per check and a
last line `codex approval: N passed, M failed`; exits 1 when any failed.
Every process it started is ended before it returns.

Usage: python3 codex_approval.py [--without-override] [--keep] [--no-netns]
  --without-override  self-check: delete the `tools` override from
                      [mcp_servers.bridge] after setup; check 3 must FAIL
                      (Codex then runs `away` unasked)
Codex: CODEX_BIN (a path), else .ci/codex/node_modules/.bin/codex.
bridge-host: BRIDGE_HOST_BIN, else target/release or target/debug.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from codex_tui import NETNS_VAR, codex_bin, reexec_in_netns  # noqa: E402
from harness import RUN_MARKER, SYSTEM_PATH, bridge_host_bin, kill_pids, pid_alive, workspace  # noqa: E402
from responses_stub import output_text  # noqa: E402

NAMESPACE = "mcp__bridge"
# A line of the prompt the stand-in's model acts on: "1. `send` with {...}".
STEP_RE = re.compile(r"^\d+\. `(?P<tool>[a-z_]+)` with (?P<args>\{.*\})$", re.M)
# What Codex tells the model when a tool needs a person's approval and none
# can be asked (codex exec).
APPROVAL_RE = re.compile(r"requires approval", re.I)


def short(text: Any, limit: int = 240) -> str:
    """`text` for a one-line report: repr'd, at most `limit` characters."""
    said = repr(text)
    return said if len(said) <= limit else said[: limit - 3] + "..."


# --------------------------------------------------------------------------
# The stand-in (`--standin`: this script, in a process of its own).
# --------------------------------------------------------------------------


def standin_main(argv: list[str]) -> None:
    """responses_stub.py in --read mode, its "model" also following a list
    of bridge tools to run, as the newest user message gives it."""
    import responses_stub as stub

    plain_read = stub.read_and_act

    def read_and_act(body: dict, items: list) -> dict:
        words = stub.newest_user_text(items)
        steps = [(m.group("tool"), m.group("args")) for m in STEP_RE.finditer(words)]
        if not steps:
            return plain_read(body, items)
        # What this turn did so far: the calls and outputs after the prompt.
        start = max((i for i, it in enumerate(items) if isinstance(it, dict)
                     and it.get("role") == "user"), default=-1) + 1
        done = [it for it in items[start:] if isinstance(it, dict) and it.get("type") == "function_call"]
        outputs = {it.get("call_id"): stub.output_text(it.get("output")) for it in items[start:]
                   if isinstance(it, dict) and it.get("type") == "function_call_output"}
        if len(done) < len(steps):
            tool, args = steps[len(done)]
            if not stub.offered(body, NAMESPACE, tool):
                return {"text": f"The bridge tool {tool} is not offered, so I stopped."}
            return {"call": {"namespace": NAMESPACE, "name": tool, "arguments": json.loads(args)}}
        said = "; ".join(f"{c.get('name')} said: {outputs.get(c.get('call_id'), '(nothing)')}" for c in done)
        return {"text": f"Done. {said}"}

    stub.read_and_act = read_and_act
    sys.argv = [str(HERE / "responses_stub.py"), "--read", *argv]
    stub.main()


class Standin:
    """The stand-in as a child process, logging every request to `log_dir`."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.log_dir = root / "codex-requests"
        self.port_file = root / "codex-model.port"
        self.err = root / "codex-model.err"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> "Standin":
        self.log_dir.mkdir()
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--standin", "--log-dir", str(self.log_dir),
                 "--port-file", str(self.port_file)],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 15
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the Responses stand-in did not start: {self.err.read_text()[-800:]}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def records(self, kind: str = "responses") -> list[dict]:
        out = []
        for path in self.log_dir.glob(f"*-{kind}.json"):
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(path.read_text()))
        return sorted(out, key=lambda r: r["n"])

    def refused(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.records("refused")]

    def tool_calls(self) -> list[dict]:
        """Each function call the model made, by call_id, with the output
        Codex sent back for it ("output" absent when none came)."""
        calls: dict[str, dict] = {}
        for record in self.records():
            body = record.get("body")
            items = body.get("input") if isinstance(body, dict) else None
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "function_call":
                    calls.setdefault(item.get("call_id"), {"name": item.get("name"),
                                                           "namespace": item.get("namespace"),
                                                           "arguments": item.get("arguments")})
                elif item.get("type") == "function_call_output" and item.get("call_id") in calls:
                    calls[item["call_id"]]["output"] = output_text(item.get("output"))
        return list(calls.values())


# --------------------------------------------------------------------------
# CODEX_HOME.
# --------------------------------------------------------------------------


def base_config(codex_home: Path, port: int) -> None:
    """config.toml before setup: the stand-in as the model, offline, no
    approval policy of our own, and not full access (which skips MCP
    approval altogether)."""
    (codex_home / "config.toml").write_text(f"""model = "stand-in"
model_provider = "local"
sandbox_mode = "read-only"
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
""")


def without_override(text: str) -> tuple[str, list[str]]:
    """config.toml's text with the `tools` override of [mcp_servers.bridge]
    taken out, in either form TOML allows (`tools = {...}` in the server's
    table, or `[mcp_servers.bridge.tools...]` tables), and the lines taken."""
    out, removed, table = [], [], ""
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    for line in text.splitlines(keepends=True):
        found = header.match(line)
        if found:
            table = re.sub(r"\s+", "", found.group(1)).replace('"', "")
        in_override = table.startswith("mcp_servers.bridge.tools")
        inline = table == "mcp_servers.bridge" and re.match(r"^\s*tools\s*=", line)
        if in_override or inline:
            removed.append(line.rstrip("\n"))
        else:
            out.append(line)
    return "".join(out), removed


# --------------------------------------------------------------------------
# Processes.
# --------------------------------------------------------------------------


def processes_of_run(needles: set[bytes]) -> list[int]:
    """Every process whose environment holds one of `needles` (Codex, its
    hooks, the MCP server and what they started), this one aside."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needles & set((entry / "environ").read_bytes().split(b"\0")) and pid_alive(int(entry.name)):
                    out.append(int(entry.name))
    return out


def end_processes(needles: set[bytes], grace: float) -> list[int]:
    """Waits up to `grace` seconds for the run's processes to end by
    themselves, then kills those left; returns the ones it killed."""
    deadline = time.monotonic() + grace
    while processes_of_run(needles) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed: list[int] = []
    for _ in range(5):
        left = processes_of_run(needles)
        if not left:
            break
        killed += [p for p in left if p not in killed]
        kill_pids(left)
        time.sleep(0.1)
    return killed


# --------------------------------------------------------------------------
# The test.
# --------------------------------------------------------------------------


def main() -> int:
    if sys.argv[1:2] == ["--standin"]:
        standin_main(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--without-override", action="store_true",
                        help="self-check: delete the tools override after setup (check 3 must FAIL)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-netns", action="store_true")
    args = parser.parse_args()
    if not args.no_netns:
        reexec_in_netns(sys.argv)
    began = time.monotonic()
    results: list[bool] = []

    def check(name: str, ok: Any, detail: str) -> None:
        results.append(bool(ok))
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    host = bridge_host_bin()
    codex = codex_bin()
    if host is None or not os.access(codex, os.X_OK):
        check("prerequisites", False, f"bridge-host {host}, codex {codex}: set BRIDGE_HOST_BIN / CODEX_BIN")
        print(f"codex approval: 0 passed, {len(results)} failed")
        return 1
    print(f"info: network: {'a namespace of its own (lo only)' if os.environ.get(NETNS_VAR) else 'proxies only'}"
          f"; bridge-host {host}; codex {codex}"
          + ("; --without-override" if args.without_override else ""), flush=True)

    with workspace(args.keep, prefix="codex-approval-") as root:
        bridge_dir = root / "bridge"
        bridge_dir.mkdir(mode=0o700)
        app, peer = root / "app", root / "peer"
        codex_home, codex_user, term_home = root / "codex-home", root / "codex-user", root / "terminal-home"
        for d in (app, peer, codex_home, codex_user, term_home):
            d.mkdir()
        marker = f"codex-approval-{os.getpid()}"
        needles = {f"CODEX_HOME={codex_home}".encode(), f"BRIDGE_DIR={bridge_dir}".encode(),
                   f"{RUN_MARKER}={marker}".encode()}

        def terminal(project: Path, *argv: str) -> subprocess.CompletedProcess:
            """bridge-host from a terminal in `project`."""
            return subprocess.run(
                [str(host), *argv], cwd=project, capture_output=True, text=True, timeout=60,
                env={"PATH": SYSTEM_PATH, "HOME": str(term_home), "BRIDGE_DIR": str(bridge_dir),
                     "BRIDGE_CACHE_DIR": str(root / "terminal-cache"), RUN_MARKER: marker})

        quiet_env = {"PATH": SYSTEM_PATH, "HOME": str(root / "standin-home"), RUN_MARKER: marker}
        model = Standin(root, quiet_env)
        try:
            with model:
                run(args, check, root, host, codex, model, terminal, bridge_dir, app, peer,
                    codex_home, codex_user, marker)
        except Exception as err:  # noqa: BLE001 - reported as a failed check
            check("the scenario ran to its end", False, f"{type(err).__name__}: {err}")
        finally:
            with contextlib.suppress(Exception):
                terminal(peer, "run", "stop")
            killed = end_processes(needles, grace=5)
            if killed:
                print(f"info: killed {len(killed)} process(es) left after the run", flush=True)
            left = processes_of_run(needles)
            if left:
                print(f"info: still running after kill: {left}", flush=True)
        if args.keep:
            print(f"info: kept {root}")
    passed = sum(results)
    print(f"info: took {time.monotonic() - began:.1f} s", flush=True)
    print(f"codex approval: {passed} passed, {len(results) - passed} failed")
    return 0 if results and passed == len(results) else 1


def run(args, check, root, host, codex, model, terminal, bridge_dir, app, peer, codex_home,
        codex_user, marker) -> None:
    # 1. What setup writes.
    base_config(codex_home, model.port)
    setup = subprocess.run(
        [str(host), "setup", "codex"], capture_output=True, text=True, timeout=60,
        env={"PATH": SYSTEM_PATH, "HOME": str(codex_user), "CODEX_HOME": str(codex_home),
             "XDG_DATA_HOME": str(codex_user / ".local/share")})
    config_file = codex_home / "config.toml"
    written = config_file.read_text()
    try:
        server = tomllib.loads(written).get("mcp_servers", {}).get("bridge", {})
    except tomllib.TOMLDecodeError as err:
        server = {}
        print(f"info: config.toml does not parse: {err}")
    default_mode = server.get("default_tools_approval_mode")
    tools = server.get("tools")
    away_mode = (tools or {}).get("away", {}).get("approval_mode") if isinstance(tools, dict) else None
    check("1 setup wrote the approval modes",
          setup.returncode == 0 and default_mode == "approve" and away_mode == "prompt",
          f"setup exit {setup.returncode}; [mcp_servers.bridge] default_tools_approval_mode={default_mode!r}, "
          f"tools={json.dumps(tools)}"
          + ("" if setup.returncode == 0 else f"; stderr {setup.stderr.strip()[-500:]!r}"))
    if setup.returncode != 0 or not server:
        raise RuntimeError("no [mcp_servers.bridge] to test")
    if args.without_override:
        text, removed = without_override(written)
        config_file.write_text(text)
        left = tomllib.loads(text)["mcp_servers"]["bridge"].get("tools")
        print(f"info: --without-override: removed {removed} from config.toml; tools now {left!r}", flush=True)

    # A terminal peer to send to, and the away settings before.
    started = terminal(peer, "run", "start")
    peer_id = started.stdout.strip()
    if started.returncode != 0 or not re.fullmatch(r"[a-z0-9]{6}", peer_id):
        raise RuntimeError(f"run start in the peer's project: {started.returncode} {started.stdout!r} "
                           f"{started.stderr[-500:]!r}")
    away_before = terminal(app, "run", "away", "status", "--json")
    token = f"approval-check-{secrets.token_hex(6)}"
    prompt = ("Run these bridge tools in order, one at a time:\n"
              f"1. `send` with {json.dumps({'peer': peer_id, 'type': 'query', 'content': token})}\n"
              f"2. `away` with {json.dumps({'action': 'on'})}\n"
              "Then say what each returned.")

    proxy = f"http://127.0.0.1:{model.port}"
    env = {
        "PATH": SYSTEM_PATH, "HOME": str(codex_user), "LANG": "C.UTF-8",
        "CODEX_HOME": str(codex_home), "STANDIN_API_KEY": "dummy",
        "BRIDGE_DIR": str(bridge_dir), "BRIDGE_CACHE_DIR": str(root / "codex-cache"),
        "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "https_proxy": proxy, "http_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        RUN_MARKER: marker,
    }
    last = root / "codex-last.txt"
    t0 = time.monotonic()
    try:
        ran = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "-o", str(last), prompt],
                             cwd=app, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=150)
        exit_text = f"exit {ran.returncode}"
        stderr = ran.stderr
    except subprocess.TimeoutExpired as err:
        exit_text, stderr = "timed out after 150 s", (err.stderr or b"").decode(errors="replace")
    print(f"info: codex exec {exit_text} after {time.monotonic() - t0:.1f} s; final message: "
          f"{short(last.read_text().strip() if last.exists() else '', 160)}", flush=True)

    records = model.records()
    first = records[0].get("body") if records else None
    offered = sorted(t.get("name") for tool in (first.get("tools") or [] if isinstance(first, dict) else [])
                     if tool.get("name") == NAMESPACE for t in tool.get("tools") or [])
    print(f"info: {len(records)} model requests; the first offered {NAMESPACE} tools {offered}", flush=True)
    calls = model.tool_calls()
    by_name = {c["name"]: c for c in calls if c.get("namespace") in (NAMESPACE, None)}
    if not calls:
        print(f"info: the model made no tool call; codex stderr: {stderr[-1500:]}", flush=True)

    # 2. The ordinary tool ran.
    send = by_name.get("send", {})
    send_out = send.get("output")
    inbox = terminal(peer, "run", "check-inbox", "--json")
    got: dict = {}
    if inbox.returncode == 0:
        with contextlib.suppress(ValueError, AttributeError):
            got = json.loads(inbox.stdout).get("message") or {}
    delivered = got.get("content") == token and got.get("from") not in (None, peer_id)
    sent_id = got.get("id")
    check("2 the ordinary tool ran unasked",
          delivered and send_out is not None and sent_id and sent_id in send_out
          and not APPROVAL_RE.search(send_out),
          f"send's output to the model {short(send_out)}; the peer's inbox: "
          + (f"{got.get('type')} {sent_id} from session {got.get('from')} with the token"
             if delivered else f"{inbox.stdout.strip()[:400]!r} {inbox.stderr.strip()[-300:]!r}"))

    # 3. away did not run.
    away_after = terminal(app, "run", "away", "status", "--json")
    try:
        before, after = json.loads(away_before.stdout), json.loads(away_after.stdout)
    except ValueError:
        before, after = None, None
    unchanged = before is not None and before == after and before.get("enabled") is False
    away = by_name.get("away", {})
    away_out = away.get("output")
    check("3 the away tool did not run unasked",
          unchanged and away_out is not None and APPROVAL_RE.search(away_out),
          f"away status enabled {None if before is None else before.get('enabled')} before, "
          f"{None if after is None else after.get('enabled')} after"
          f"{'' if unchanged else ' (changed)' if before is not None else f': {away_before.stderr[-300:]!r}'}; "
          f"away's output to the model {short(away_out)}"
          + ("" if away else f"; the model called {[c['name'] for c in calls]}"))
    refused = model.refused()
    print(f"info: requests the stand-in refused (aimed elsewhere): {refused or 'none'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
