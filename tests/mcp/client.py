#!/usr/bin/env python3
"""An independent MCP client against `bridge-host mcp`.

It starts the server as a subprocess, through the official Python MCP SDK's
stdio client (`pip install mcp==2.3.0`) or, for what the SDK will not send
(malformed lines, a client that vanishes mid-call), through a raw JSON-lines
pipe, and checks what a client sees: the handshake and tool list,
registration (client name, project from roots or the working directory),
asking and answering between MCP sessions and terminals, progress,
cancellation, disconnection, bad input, and when a delivery is committed.

Every world is throwaway: a BRIDGE_DIR (mode 0700), a HOME and a
BRIDGE_CACHE_DIR under one temporary directory, removed at the end.
The binary is $BRIDGE_HOST_BIN.

Prints `ok <name>` or `FAIL <name>: <why>` per check and, last,
`mcp client: N passed, M failed`; exits nonzero on any failure.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
import mcp.types as types

BIN = os.path.abspath(os.environ["BRIDGE_HOST_BIN"]) if os.environ.get("BRIDGE_HOST_BIN") else ""
TOOLS = {
    "peers": [],
    "connect": ["peer"],
    "send": ["peer", "type", "content"],
    "ask": ["peer", "question"],
    "reply": ["message_id", "answer"],
    "check_inbox": [],
    "listen": [],
    "receive": ["message_id"],
    "status": [],
    "track": ["message_id"],
    "thread": ["message_id"],
    "history": [],
    "away": ["action"],
}
INVALID_PARAMS = -32602

PASSED = 0
FAILED = 0


def check(name, ok, why=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok {name}", flush=True)
    else:
        FAILED += 1
        why = " ".join(str(why).split())
        if len(why) > 600:
            why = why[:600] + "..."
        print(f"FAIL {name}: {why}", flush=True)
    return ok


def short(value, n=300):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[:n] + "..."


class World:
    """One throwaway bridge: its directory, home, compile cache, projects."""

    def __init__(self):
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="bridge-mcp-client-"))
        self.bridge = os.path.join(self.root, "bridge")
        os.makedirs(self.bridge)
        os.chmod(self.bridge, 0o700)
        self.home = os.path.join(self.root, "home")
        os.makedirs(self.home)
        self.cache = os.path.join(self.root, "cache")
        os.makedirs(self.cache)

    def project(self, name):
        path = os.path.join(self.root, "projects", name)
        os.makedirs(path, exist_ok=True)
        return path

    def env(self):
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "BRIDGE_DIR": self.bridge,
            "BRIDGE_CACHE_DIR": self.cache,
        }

    # ----- the terminal side -----

    def cli(self, project, *args, timeout=30, stdin=None):
        """`bridge-host run ARGS --project-dir PROJECT`, from PROJECT."""
        out = subprocess.run(
            [BIN, "run", *args, "--project-dir", project],
            cwd=project,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        return out.returncode, out.stdout, out.stderr

    def cli_json(self, project, *args, timeout=30):
        rc, out, err = self.cli(project, *args, "--json", timeout=timeout)
        if rc != 0:
            raise AssertionError(f"bridge-host run {' '.join(args)} --json: exit {rc}: {err}")
        return json.loads(out)

    async def acli(self, project, *args, timeout=90):
        """The same, without blocking the event loop (for waiting verbs)."""
        proc = await asyncio.create_subprocess_exec(
            BIN, "run", *args, "--project-dir", project,
            cwd=project, env=self.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out.decode(), err.decode()

    def start(self, project):
        rc, out, err = self.cli(project, "start")
        if rc != 0:
            raise AssertionError(f"bridge-host run start: exit {rc}: {err}")
        return out.strip()

    def peers(self, project):
        return {p["sessionId"]: p for p in self.cli_json(project, "peers")["peers"]}

    # ----- the MCP side -----

    def params(self, cwd, extra_args=()):
        return StdioServerParameters(command=BIN, args=["mcp", *extra_args], env=self.env(), cwd=cwd)

    @contextlib.asynccontextmanager
    async def session(self, cwd, roots=None, client_info=None):
        """An initialized MCP session with a server started in `cwd`;
        `roots`, if given, are the directories its roots/list answers."""
        kwargs = {}
        if roots is not None:
            async def list_roots(_context):
                return types.ListRootsResult(
                    roots=[types.Root(uri=f"file://{r}", name=os.path.basename(r)) for r in roots]
                )
            kwargs["list_roots_callback"] = list_roots
        if client_info is not None:
            kwargs["client_info"] = client_info
        errlog = open(os.path.join(self.root, "server-stderr.log"), "a")
        try:
            async with stdio_client(self.params(cwd), errlog=errlog) as (read, write):
                async with ClientSession(read, write, **kwargs) as session:
                    session.init = await asyncio.wait_for(session.initialize(), 20)
                    yield session
        finally:
            errlog.close()

    def cleanup(self):
        # A server still exiting may write as the tree goes; try again.
        for _ in range(5):
            shutil.rmtree(self.root, ignore_errors=True)
            if not os.path.exists(self.root):
                return
            time.sleep(0.5)


async def tool(session, name, args=None, timeout=30, **kw):
    return await asyncio.wait_for(session.call_tool(name, args or {}, **kw), timeout)


async def session_id(session):
    status = await tool(session, "status")
    assert not status.is_error, f"status failed: {text_of(status)}"
    return status.structured_content["session"]["sessionId"]


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def first_text(result):
    return result.content[0].text if result.content else ""


def peer_block(text):
    """The content between the fences of the first <peer-message> block."""
    start = text.find("<peer-message ")
    if start < 0:
        return None
    line_end = text.index("\n", start)
    header = text[start:line_end]
    fence = header.split("fence=")[1].split()[0].rstrip(">")
    close = f"</peer-message fence={fence}>"
    end = text.index(close, line_end)
    return text[line_end + 1:end].rstrip("\n")


def header_field(text, field):
    start = text.find("<peer-message ")
    if start < 0:
        return None
    header = text[start:text.index("\n", start)]
    for word in header.split(" "):
        if word.startswith(field + "="):
            return word.split("=", 1)[1].rstrip(">")
    return None


async def until(predicate, timeout=5.0, every=0.1):
    """Polls `predicate` (sync or async) until it is truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


# ---------------------------------------------------------------- cases


async def case_initialize(w):
    proj = w.project("init")
    async with w.session(proj) as s:
        info = s.init.server_info
        check("initialize: server name is session-bridge", info.name == "session-bridge", info)
        caps = s.init.capabilities
        check("initialize: tools capability", caps.tools is not None, caps)
        listed = (await asyncio.wait_for(s.list_tools(), 10)).tools
        names = sorted(t.name for t in listed)
        check(f"tools/list: exactly the {len(TOOLS)} tools", names == sorted(TOOLS), names)
        for t in listed:
            if t.name not in TOOLS:
                continue
            schema = t.input_schema or {}
            good = (
                bool((t.description or "").strip())
                and schema.get("type") == "object"
                and isinstance(schema.get("properties", {}), dict)
                and sorted(schema.get("required", [])) == sorted(TOOLS[t.name])
                and all(r in schema.get("properties", {}) for r in TOOLS[t.name])
            )
            check(f"tools/list: {t.name} has a description and requires {TOOLS[t.name] or 'nothing'}",
                  good, f"description={t.description!r} schema={json.dumps(schema)}")
            # Gemini CLI validates with Ajv, which prints `unknown format
            # "uint32" ignored` on every call to a tool whose schema has one.
            formats = [f for f in json.dumps(schema).split('"format": ')[1:]]
            check(f"tools/list: {t.name}'s schema uses no format a validator does not know",
                  not formats, json.dumps(schema))
            check(f"tools/list: {t.name}'s schema does not forbid extra arguments",
                  schema.get("additionalProperties", True) is not False, json.dumps(schema))


async def case_registration(w):
    root = w.project("rooted")
    elsewhere = w.project("launched-here")
    info = types.Implementation(name="independent-client", version="9.8.7")
    async with w.session(elsewhere, roots=[root], client_info=info) as s:
        me = await until(lambda: next(
            (p for p in w.peers(root).values() if p.get("projectPath") == root), None), 8)
        check("registration: the session is listed by the CLI after initialize", me is not None,
              w.peers(root))
        if me:
            check("registration: client is clientInfo name and version",
                  me.get("client") == "independent-client 9.8.7", me)
            check("registration: project from the first file:// root", me.get("projectPath") == root, me)
            status = await tool(s, "status")
            check("registration: status names the same session",
                  status.structured_content["session"]["sessionId"] == me["sessionId"],
                  status.structured_content)
    cwd = w.project("no-roots-cwd")
    async with w.session(cwd) as s2:
        found = await until(lambda: next(
            (p for p in w.peers(cwd).values() if p.get("projectPath") == cwd), None), 8)
        check("registration: a client without roots gets its working directory", found is not None,
              w.peers(cwd))
        if found:
            check("registration: the default clientInfo is the client", found.get("client") == "mcp 0.1.0", found)
    # Both connections closed: both sessions stopped.
    left = await until(lambda: not [p for p in w.peers(cwd).values()
                                    if p.get("projectPath") in (root, cwd)], 8)
    check("registration: closing the connection stops the session", left, w.peers(cwd))


async def case_mcp_to_mcp(w):
    pa, pb = w.project("mcp-a"), w.project("mcp-b")
    async with w.session(pa) as a, w.session(pb) as b:
        ida, idb = await session_id(a), await session_id(b)

        async def answer():
            got = await tool(a, "listen", {"timeout_seconds": 30}, timeout=40)
            qid = got.structured_content["message"]["id"]
            rep = await tool(a, "reply", {"message_id": qid, "answer": "bar replaced foo in v2"})
            return got, rep

        answering = asyncio.create_task(answer())
        asked = await tool(b, "ask", {"peer": ida, "question": "what replaced foo?", "timeout_seconds": 30},
                           timeout=40)
        got, rep = await asyncio.wait_for(answering, 10)
        msg = got.structured_content["message"]
        check("mcp<->mcp: listen delivers the query with its fenced words",
              not got.is_error and peer_block(first_text(got)) == "what replaced foo?"
              and msg["from"] == idb and msg["type"] == "query", text_of(got))
        check("mcp<->mcp: reply answers with a message id",
              not rep.is_error and first_text(rep).strip().startswith("msg-"), text_of(rep))
        text = first_text(asked)
        check("mcp<->mcp: ask returns the reply text, fenced",
              not asked.is_error and text.startswith(f"Reply from {ida}")
              and peer_block(text) == "bar replaced foo in v2", text)
        sc = asked.structured_content or {}
        flat = json.dumps(sc)
        check("mcp<->mcp: ask structured_content carries the reply",
              "bar replaced foo in v2" in flat and msg["id"] in flat, flat)
        th = await tool(b, "thread", {"message_id": msg["id"]})
        tt = text_of(th) + json.dumps(th.structured_content)
        check("mcp<->mcp: thread shows the query and the reply",
              not th.is_error and "what replaced foo?" in tt and "bar replaced foo in v2" in tt, tt)
        tr = await tool(b, "track", {"message_id": msg["id"]})
        check("mcp<->mcp: track on the query says answered",
              not tr.is_error and (tr.structured_content or {}).get("stage") == "answered",
              f"{text_of(tr)} {tr.structured_content}")


async def case_terminal(w):
    pm, pt = w.project("mcp-side"), w.project("terminal-side")
    term = w.start(pt)
    async with w.session(pm) as m:
        mid = await session_id(m)

        # A terminal asks the MCP session.
        asking = asyncio.create_task(w.acli(pt, "ask", mid, "which port?", "--timeout", "60", timeout=70))
        got = await tool(m, "listen", {"timeout_seconds": 30}, timeout=40)
        msg = (got.structured_content or {}).get("message", {})
        check("terminal->mcp: the MCP session's listen gets the terminal's query",
              not got.is_error and msg.get("from") == term and peer_block(first_text(got)) == "which port?",
              text_of(got))
        rep = await tool(m, "reply", {"message_id": msg.get("id", "msg-000000000000"), "answer": "port 8443"})
        check("terminal->mcp: reply succeeds", not rep.is_error, text_of(rep))
        rc, out, err = await asyncio.wait_for(asking, 30)
        check("terminal->mcp: the terminal's ask prints the MCP reply",
              rc == 0 and out.startswith(f"Reply from {mid}") and peer_block(out) == "port 8443",
              f"exit {rc}: {out} {err}")

        # The MCP session asks the terminal.
        async def terminal_answers():
            rc, out, err = await w.acli(pt, "listen", "--timeout", "60", timeout=70)
            qid = header_field(out, "id")
            rrc, rout, rerr = await w.acli(pt, "reply", qid or "msg-000000000000", "use TLS 1.3")
            return rc, out, err, rrc, rout, rerr

        answering = asyncio.create_task(terminal_answers())
        asked = await tool(m, "ask", {"peer": term, "question": "which TLS?", "timeout_seconds": 60}, timeout=70)
        rc, out, err, rrc, rout, rerr = await asyncio.wait_for(answering, 30)
        check("mcp->terminal: the terminal's listen prints the MCP query",
              rc == 0 and out.startswith(f"Query from {mid}") and peer_block(out) == "which TLS?"
              and "bridge-host run reply" in out, f"exit {rc}: {out} {err}")
        check("mcp->terminal: the terminal's reply prints its id", rrc == 0 and rout.strip().startswith("msg-"),
              f"exit {rrc}: {rout} {rerr}")
        text = first_text(asked)
        check("mcp->terminal: the MCP ask returns the terminal's answer",
              not asked.is_error and text.startswith(f"Reply from {term}") and peer_block(text) == "use TLS 1.3"
              and "the ask tool" in text, text)


async def case_progress(w):
    pm, pt = w.project("progress-mcp"), w.project("progress-silent")
    silent = w.start(pt)
    async with w.session(pm) as m:
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total))

        started = time.monotonic()
        res = await tool(m, "ask", {"peer": silent, "question": "anyone?", "timeout_seconds": 4},
                         timeout=20, progress_callback=on_progress)
        took = time.monotonic() - started
        progresses = [p for p, _ in seen]
        check("progress: an unanswered ask sends at least 2 progress notifications", len(seen) >= 2, seen)
        check("progress: progress increases", all(a < b for a, b in zip(progresses, progresses[1:])), seen)
        check("progress: total is the timeout", seen and all(t == 4 for _, t in seen), seen)
        check("progress: the ask ends at its timeout", 3.5 <= took <= 10, f"took {took:.1f}s")
        t = text_of(res)
        check("progress: the timed-out ask says so and that the query stays queued",
              "msg-" in t and ("receive" in t or "track" in t), f"is_error={res.is_error} {t}")


async def case_cancel(w):
    pm, pt = w.project("cancel-mcp"), w.project("cancel-peer")
    peer = w.start(pt)
    async with w.session(pm) as m:
        seen = []

        async def on_progress(progress, total, message):
            seen.append(progress)

        asking = asyncio.create_task(m.call_tool(
            "ask", {"peer": peer, "question": "slow question", "timeout_seconds": 120},
            progress_callback=on_progress))
        await asyncio.sleep(2.2)
        check("cancel: the ask is still waiting before the cancel", not asking.done(),
              asking.result() if asking.done() and not asking.exception() else asking)
        began = time.monotonic()
        asking.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asking, 5)
        status = await tool(m, "status", timeout=10)
        check("cancel: the server keeps serving (status)", not status.is_error and
              time.monotonic() - began < 10, text_of(status))
        hist = await tool(m, "history", {"peer": peer})
        flat = json.dumps(hist.structured_content)
        qid = None
        for message in (hist.structured_content or {}).get("messages", []):
            if message.get("content") == "slow question":
                qid = message.get("id")
        check("cancel: history lists the cancelled query", qid is not None, flat)
        qid = qid or "msg-000000000000"
        tr = await tool(m, "track", {"message_id": qid})
        check("cancel: track says the cancelled query is queued, not lost",
              not tr.is_error and (tr.structured_content or {}).get("stage") == "queued",
              f"{text_of(tr)} {tr.structured_content}")
        rc, out, err = w.cli(pt, "check-inbox")
        check("cancel: the peer can still take the query",
              rc == 0 and header_field(out, "id") == qid and peer_block(out) == "slow question",
              f"exit {rc}: {out} {err}")
        rc, out, err = w.cli(pt, "reply", qid, "late answer")
        check("cancel: the peer replies", rc == 0, f"exit {rc}: {out} {err}")
        began = time.monotonic()
        got = await tool(m, "receive", {"message_id": qid, "timeout_seconds": 15}, timeout=25)
        took = time.monotonic() - began
        check("cancel: receive gets the answer to the cancelled ask",
              not got.is_error and peer_block(first_text(got)) == "late answer", text_of(got))
        # The reply was already in the inbox: a cancelled wait must not have
        # claimed it (a claim that is never committed holds it for the lease).
        check("cancel: the waiting reply is not held by the cancelled ask (receive is immediate)",
              took < 3, f"receive took {took:.1f}s for a reply already in the inbox")


class Raw:
    """A hand-driven JSON-lines connection to `bridge-host mcp`."""

    def __init__(self, w, cwd):
        self.err = open(os.path.join(w.root, "raw-server-stderr.log"), "ab")
        self.proc = subprocess.Popen(
            [BIN, "mcp"], cwd=cwd, env=w.env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
        )
        self.lines = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.reader = self.loop.run_in_executor(None, self._read)
        self.next_id = 100

    def _read(self):
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            for line in self.proc.stdout:
                self.loop.call_soon_threadsafe(self.lines.put_nowait, line)
        with contextlib.suppress(RuntimeError):  # the loop may be gone
            self.loop.call_soon_threadsafe(self.lines.put_nowait, None)

    def write(self, data):
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b"\n"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    async def response(self, rid, timeout=15):
        """The response to request `rid`; other messages are skipped (and kept)."""
        deadline = time.monotonic() + timeout
        self.others = getattr(self, "others", [])
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no response to {rid} within {timeout}s")
            try:
                line = await asyncio.wait_for(self.lines.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no response to {rid} within {timeout}s") from None
            if line is None:
                raise AssertionError(f"the server closed its output before answering {rid}")
            try:
                msg = json.loads(line)
            except ValueError:
                self.others.append(line)
                continue
            if msg.get("id") == rid and ("result" in msg or "error" in msg):
                return msg
            self.others.append(msg)

    async def request(self, method, params=None, timeout=15):
        self.next_id += 1
        rid = self.next_id
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.write(msg)
        return await self.response(rid, timeout)

    async def initialize(self):
        init = await self.request("initialize", {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw-client", "version": "1"},
        })
        self.write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return init

    async def call(self, name, args, timeout=15):
        return await self.request("tools/call", {"name": name, "arguments": args}, timeout)

    async def exited(self, timeout):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.proc.poll()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                f.close()
        self.err.close()


def raw_status_ok(resp):
    result = resp.get("result") or {}
    return "result" in resp and not result.get("isError") and "sessionId" in json.dumps(result)


async def case_disconnect(w):
    pg, pt = w.project("vanishing"), w.project("vanishing-peer")
    peer = w.start(pt)
    raw = Raw(w, pg)
    try:
        await raw.initialize()
        st = await raw.call("status", {})
        gone_id = st["result"]["structuredContent"]["session"]["sessionId"]
        rid = raw.next_id = raw.next_id + 1
        raw.write({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                   "params": {"name": "ask", "arguments": {"peer": peer, "question": "are you there?",
                                                           "timeout_seconds": 60}}})
        await asyncio.sleep(1.5)
        check("disconnect: the ask is waiting", raw.proc.poll() is None, "the server exited early")
        # The client vanishes: both ends of its pipes close.
        began = time.monotonic()
        raw.proc.stdin.close()
        raw.proc.stdout.close()
        code = await raw.exited(6)
        check("disconnect: the server exits within a few seconds of the client vanishing",
              code is not None, f"still running after {time.monotonic() - began:.1f}s")
        gone = await until(lambda: gone_id not in w.peers(pt), 5)
        check("disconnect: the session is stopped (gone from peers)", gone, w.peers(pt))
        rc, out, err = w.cli(pt, "check-inbox")
        check("disconnect: the peer's inbox still holds the query",
              rc == 0 and header_field(out, "from") == gone_id and peer_block(out) == "are you there?",
              f"exit {rc}: {out} {err}")
        rc2, out2, err2 = w.cli(pt, "check-inbox")
        st = w.cli_json(pt, "status")
        if os.environ.get("MCP_CLIENT_VERBOSE"):
            print("# first:", repr(out), "\n# second:", repr(out2), "\n# status:", st)
        ended = [m for m in st.get("ended") or []
                 if m.get("from") == gone_id and m.get("type") == "session-ended"]
        check("disconnect: the peer is told the session ended (status lists it)", ended,
              f"status={st} next check-inbox={out2!r} {err2}")
    finally:
        raw.close()

    # SIGTERM stops the session too.
    raw = Raw(w, w.project("terminated"))
    try:
        await raw.initialize()
        st = await raw.call("status", {})
        sid = st["result"]["structuredContent"]["session"]["sessionId"]
        raw.proc.send_signal(signal.SIGTERM)
        code = await raw.exited(6)
        stopped = await until(lambda: sid not in w.peers(pt), 4)
        why = "still running 6s after SIGTERM"
        if code is None:
            raw.proc.stdin.close()
            if await raw.exited(3) is not None:
                why += f" (session {'stopped' if stopped else 'not stopped'}); it exited once its stdin was closed"
        check("sigterm: the server exits while the client keeps its stdin open", code is not None, why)
        check("sigterm: the session is stopped", stopped, w.peers(pt))
    finally:
        raw.close()

    # SIGTERM and, at once, SIGKILL, as Codex 0.171.0 ends its servers: the
    # server cannot stop its session itself, and its reaper does.
    raw = Raw(w, w.project("killed"))
    try:
        await raw.initialize()
        st = await raw.call("status", {})
        sid = st["result"]["structuredContent"]["session"]["sessionId"]
        raw.proc.send_signal(signal.SIGTERM)
        raw.proc.kill()
        await raw.exited(6)
        stopped = await until(lambda: sid not in w.peers(pt), 10)
        check("killed: a server killed outright still has its session stopped", stopped, w.peers(pt))
    finally:
        raw.close()


async def case_early_sigterm(w):
    """SIGTERM the moment `initialize` is answered, while the session is
    still registering (what `gemini mcp list` does): no session is left
    behind, every time."""
    pt = w.project("early-peer")
    mine = w.start(pt)
    left = []
    # The signal lands at different points of the registration: before it
    # starts, while the guest's `start` runs, and after.
    for i, delay in enumerate([0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12]):
        raw = Raw(w, w.project(f"early-{i}"))
        try:
            await raw.initialize()
            await asyncio.sleep(delay)
            raw.proc.send_signal(signal.SIGTERM)
            code = await raw.exited(6)
            if code is None:
                left.append(f"run {i}: still running 6s after SIGTERM")
        finally:
            raw.close()
        others = [sid for sid in w.peers(pt) if sid != mine]
        if others:
            left.append(f"run {i}: session(s) {others} left registered")
    check("early sigterm: a server stopped while registering leaves no session behind",
          not left, "; ".join(left))


async def case_raw_bad_input(w):
    raw = Raw(w, w.project("raw-bad"))
    try:
        init = await raw.initialize()
        check("raw: initialize by hand", init.get("result", {}).get("serverInfo", {}).get("name") == "session-bridge",
              init)
        raw.write(b"this is {not json\n")
        resp = await raw.call("status", {})
        check("raw: a garbage line leaves the server serving", raw_status_ok(resp), resp)
        raw.write(b'{"hello": "world", "n": [1, 2, 3]}\n')
        resp = await raw.call("status", {})
        check("raw: a JSON line that is not JSON-RPC leaves the server serving", raw_status_ok(resp), resp)
        raw.write(b'[]\n{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call"}\n\xff\xfe\x00\n')
        resp = await raw.call("status", {})
        check("raw: odd ids, an empty batch and invalid UTF-8 leave the server serving", raw_status_ok(resp), resp)
        # A line past the transport's 16 MiB limit is dropped whole; the
        # request in it (id 999) is never answered, the next one is.
        huge = json.dumps({"jsonrpc": "2.0", "id": 999, "method": "tools/call",
                           "params": {"name": "status", "arguments": {"pad": "x" * (17 * 1024 * 1024)}}})
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
            None, raw.write, huge.encode() + b"\n"), 30)
        resp = await raw.call("status", {}, timeout=30)
        check("raw: a 17 MiB line is dropped and the server serves on", raw_status_ok(resp), short(resp))
        check("raw: the dropped line's request is not answered",
              not any(isinstance(m, dict) and m.get("id") == 999 for m in raw.others), short(raw.others))
        resp = await raw.request("no/such/method", {})
        check("raw: an unknown method is a JSON-RPC error", "error" in resp, resp)
        # Cancellation by hand: the server answers -32800 or nothing, then serves on.
        raw.next_id += 1
        rid = raw.next_id
        raw.write({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                   "params": {"name": "listen", "arguments": {"timeout_seconds": 60}}})
        await asyncio.sleep(1.0)
        raw.write({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": rid, "reason": "test"}})
        try:
            answer = await raw.response(rid, timeout=3)
        except AssertionError:
            answer = None
        check("raw: a cancelled listen ends with -32800 or no answer",
              answer is None or answer.get("error", {}).get("code") == -32800, answer)
        resp = await raw.call("status", {})
        check("raw: the server serves after a cancelled listen", raw_status_ok(resp), resp)
    finally:
        raw.close()


async def expect_invalid_params(s, name, label, args):
    """A call whose arguments do not fit the tool's schema is refused in
    serde's words: as a JSON-RPC invalid-params error, or (rmcp 3.11 and MCP
    2025-11-25, SEP-1303) as a tool result with isError set. Returns the words."""
    check_name = f"bad input: {label} is refused with serde's words"
    try:
        res = await tool(s, name, args)
    except MCPError as e:
        check(check_name, e.code == INVALID_PARAMS, f"JSON-RPC error code {e.code}: {e.message}")
        return e.message
    words = text_of(res)
    check(check_name, res.is_error and "failed to deserialize parameters" in words,
          f"is_error={res.is_error}: {words}")
    return words


async def still_serves(s, label):
    st = await tool(s, "status")
    check(f"bad input: serves after {label}", not st.is_error and st.structured_content, text_of(st))


def outside_bridge(w):
    """Every path under the world's root except the bridge directory and logs."""
    seen = {}
    for top, dirs, files in os.walk(w.root):
        if os.path.abspath(top).startswith(w.bridge):
            continue
        for f in files:
            if not f.endswith(".log"):
                p = os.path.join(top, f)
                seen[p] = os.path.getsize(p)
        for d in dirs:
            seen[os.path.join(top, d) + "/"] = 0
    seen.pop(w.bridge + "/", None)
    return seen


async def case_bad_input(w):
    proj = w.project("bad-input")
    other = w.project("bad-input-peer")
    peer = w.start(other)
    async with w.session(proj) as s:
        await session_id(s)
        before = outside_bridge(w)
        try:
            res = await tool(s, "no_such_tool", {})
            check("bad input: an unknown tool is an error", res.is_error, text_of(res))
        except MCPError as e:
            check("bad input: an unknown tool is an error", e.code in (INVALID_PARAMS, -32601), e.code)
        await still_serves(s, "an unknown tool")

        msg = await expect_invalid_params(s, "ask", "a missing question", {"peer": peer})
        if msg is not None:
            check("bad input: the missing-argument error names it", "question" in msg, msg)
        await still_serves(s, "a missing argument")

        msg = await expect_invalid_params(s, "listen", "timeout_seconds \"soon\"", {"timeout_seconds": "soon"})
        if msg is not None:
            check("bad input: the wrong-type error is serde's", "invalid type" in msg or "expected" in msg, msg)
        await still_serves(s, "a wrongly typed argument")

        # A tool without arguments declares none (its schema does not forbid
        # extras), so an extra one may be ignored; it must not break anything.
        try:
            res = await tool(s, "status", {"colour": "blue"})
            ok = res.is_error or bool(res.structured_content)
            why = text_of(res)
        except MCPError as e:
            ok, why = e.code == INVALID_PARAMS, f"code {e.code}: {e.message}"
        check("bad input: an argument for a tool that takes none is refused or ignored", ok, why)
        # An argument the tool does not declare is ignored (docs/mcp.md says
        # why): the call runs as it would without it.
        res = await tool(s, "reply", {"message_id": "msg-aaaaaaaaaaaa", "answer": "x", "urgent": True})
        t = text_of(res)
        check("bad input: an unknown extra argument is ignored, and the call runs",
              "failed to deserialize" not in t and "unknown field" not in t
              and "msg-aaaaaaaaaaaa" in t, t)
        await still_serves(s, "an unknown argument")

        await expect_invalid_params(s, "send", "an unknown message type",
                                    {"peer": peer, "type": "shout", "content": "x"})
        await expect_invalid_params(s, "listen", "a negative timeout", {"timeout_seconds": -1})
        await still_serves(s, "bad enum and range values")

        for name, args in [
            ("ask", {"peer": "../../etc", "question": "x", "timeout_seconds": 1}),
            ("send", {"peer": "../../etc", "type": "query", "content": "x"}),
            ("connect", {"peer": "/etc/passwd"}),
            ("track", {"message_id": "msg-../../x"}),
            ("thread", {"message_id": "msg-../../x"}),
            ("reply", {"message_id": "msg-../../x", "answer": "x"}),
            ("receive", {"message_id": "msg-../../x", "timeout_seconds": 1}),
            ("send", {"peer": peer, "type": "response", "content": "x", "in_reply_to": "msg-../../x"}),
        ]:
            res = await tool(s, name, args)
            check(f"bad input: hostile id in {name} {json.dumps(args)} is a tool error",
                  res.is_error and "invalid" in text_of(res).lower(), text_of(res))
        await still_serves(s, "hostile ids")
        after = outside_bridge(w)
        check("bad input: hostile ids wrote nothing outside the bridge", after == before,
              sorted(set(after) ^ set(before)))
        rc, out, err = w.cli(other, "check-inbox")
        check("bad input: the peer received none of the hostile calls' messages",
              rc == 0 and "No new messages." in out, out)

        big = "x" * (2 * 1024 * 1024)
        res = await tool(s, "send", {"peer": peer, "type": "query", "content": big}, timeout=60)
        t = text_of(res)
        check("bad input: 2 MiB content is a tool error naming the limit",
              res.is_error and ("MiB" in t or "1048576" in t or "bytes" in t), short(t))
        res = await tool(s, "ask", {"peer": peer, "question": big, "timeout_seconds": 1}, timeout=60)
        check("bad input: a 2 MiB question is a tool error too", res.is_error, short(text_of(res)))
        await still_serves(s, "2 MiB content")
        rc, out, err = w.cli(other, "check-inbox")
        check("bad input: nothing of the 2 MiB was delivered", rc == 0 and "No new messages." in out, short(out))

        res = await tool(s, "send", {"peer": "zzzzzz", "type": "query", "content": "hello?"})
        rc, out, err = w.cli(other, "send", "zzzzzz", "query", "hello?")
        t = text_of(res).strip()
        cli_words = err.strip().splitlines()[0] if err.strip() else ""
        # The same words up to the hint, which names each caller's own way
        # ("bridge-host run peers" / "the peers tool").
        core = cli_words.removeprefix("bridge-host: ").split(";")[0].strip()
        check("bad input: a send to a session that does not exist is a tool error in the CLI's words",
              res.is_error and rc != 0 and core and core in t, f"mcp={t!r} cli={cli_words!r}")
        await still_serves(s, "a send to nobody")


async def case_extra_arguments(w):
    """Every tool, called with the arguments a real client adds: Gemini CLI
    adds a boolean `wait_for_previous` to every schema and passes it on
    when the model chains calls. Each call gives the same answer it gives
    without the extra ones."""
    pa, pb = w.project("extra-a"), w.project("extra-b")
    peer = w.start(pb)
    extra = {"wait_for_previous": True, "_meta_note": {"from": "a client"}, "x-trace": [1, 2]}
    async with w.session(pa) as s:
        await session_id(s)
        rc, out, _ = w.cli(pb, "send", await session_id(s), "query", "first question")
        qid = out.strip()
        sent = await tool(s, "send", {"peer": peer, "type": "query", "content": "hello", **extra})
        calls = [
            ("peers", {}),
            ("connect", {"peer": peer}),
            ("status", {}),
            ("check_inbox", {}),
            ("reply", {"message_id": qid, "answer": "an answer"}),
            ("listen", {"timeout_seconds": 1}),
            ("track", {"message_id": qid}),
            ("thread", {"message_id": qid}),
            ("history", {"limit": 3}),
            ("away", {"action": "status"}),
            ("receive", {"message_id": "msg-aaaaaaaaaaaa", "timeout_seconds": 1}),
            ("ask", {"peer": "zzzzzz", "question": "anyone?", "timeout_seconds": 1}),
        ]
        check("extra arguments: send runs with them", not sent.is_error, text_of(sent))
        seen = {"send"}
        for name, args in calls:
            res = await tool(s, name, {**args, **extra}, timeout=30)
            t = text_of(res)
            seen.add(name)
            check(f"extra arguments: {name} is not refused for them",
                  "failed to deserialize" not in t and "unknown field" not in t
                  and "wait_for_previous" not in t, t)
        check("extra arguments: every tool was called", seen == set(TOOLS), sorted(set(TOOLS) - seen))
        rc, out, _ = w.cli(pb, "check-inbox")
        check("extra arguments: the peer got the message sent with them",
              peer_block(out) == "hello", out)
        rc, out, _ = w.cli(pb, "receive", qid, "--timeout", "5")
        check("extra arguments: the reply sent with them reached the asker",
              "an answer" in out, out)


async def case_busy(w):
    """A client with 1,000 calls waiting: the calls past the bound are
    refused at once, saying why, and the server keeps reading its input:
    ping, tools/list, a cancellation and the end of input are answered."""
    proj = w.project("busy")
    raw = Raw(w, proj)
    try:
        await raw.initialize()
        st = await raw.call("status", {})
        sid = st["result"]["structuredContent"]["session"]["sessionId"]
        first = raw.next_id + 1
        lines = b"".join(
            json.dumps({"jsonrpc": "2.0", "id": first + i, "method": "tools/call",
                        "params": {"name": "listen", "arguments": {}}}).encode() + b"\n"
            for i in range(1000))
        raw.next_id = first + 999
        await asyncio.get_running_loop().run_in_executor(None, raw.write, lines)
        # Every call past the bound is answered at once, with a reason.
        refused, waiting = [], set(range(first, first + 1000))
        deadline = time.monotonic() + 60
        while len(refused) < 1000 - 32 and time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(raw.lines.get(), 5)
            except asyncio.TimeoutError:
                break
            if line is None:
                break
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if msg.get("id") in waiting:
                    refused.append(msg)
                    waiting.discard(msg["id"])
        words = [json.dumps(m) for m in refused]
        check("busy: the calls past the bound are answered, as tool errors",
              len(refused) == 1000 - 32 and all(m.get("result", {}).get("isError") for m in refused),
              f"{len(refused)} answered; first: {words[:1]}")
        check("busy: the refusal says how many run and what to do",
              refused and "32 calls" in words[0] and "cancel" in words[0], words[:1])
        ping = await raw.request("ping", {}, timeout=20)
        check("busy: ping is answered with 32 calls waiting", "result" in ping, ping)
        tools = await raw.request("tools/list", {}, timeout=20)
        check("busy: tools/list is answered", len(tools.get("result", {}).get("tools", [])) == len(TOOLS),
              short(tools))
        one = min(waiting)
        raw.write({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": one, "reason": "test"}})
        # The cancelled call's place is free again once its wait has ended
        # (at its next one-second slice): a new call runs.
        st = None
        for _ in range(20):
            st = await raw.call("status", {}, timeout=20)
            if raw_status_ok(st):
                break
            await asyncio.sleep(0.5)
        check("busy: after a cancellation, a new call runs", raw_status_ok(st), short(st))
        check("busy: the session is listed while connected", sid in w.peers(proj), w.peers(proj))
        raw.proc.stdin.close()
        code = await raw.exited(20)
        check("busy: end of input ends the server, calls waiting or not", code is not None,
              "still running 20 s after its input closed")
        gone = await until(lambda: sid not in w.peers(proj), 10)
        check("busy: the session is stopped at end of input", gone, w.peers(proj))
    finally:
        raw.close()


async def case_commit(w):
    pm, ps = w.project("commit-mcp"), w.project("commit-sender")
    sender = w.start(ps)
    async with w.session(pm) as m:
        mid = await session_id(m)
        rc, out, err = w.cli(ps, "send", mid, "query", "commit me")
        qid = out.strip()
        check("commit: the terminal sends a query to the MCP session", rc == 0 and qid.startswith("msg-"), err)
        before = w.cli_json(ps, "track", qid)
        check("commit: before check_inbox the query is queued", before.get("stage") == "queued", before)
        got = await tool(m, "check_inbox")
        check("commit: check_inbox delivers it",
              not got.is_error and header_field(first_text(got), "id") == qid
              and peer_block(first_text(got)) == "commit me", text_of(got))
        after = await until(lambda: (lambda t: t if t.get("stage") == "taken" else None)(
            w.cli_json(ps, "track", qid)), 5)
        check("commit: the sender's track says taken", after is not None, w.cli_json(ps, "track", qid))
        if after:
            taken = [e for e in after.get("events", []) if e.get("stage") == "taken"]
            check("commit: taken by the MCP session, through MCP",
                  taken and taken[-1].get("by") == mid and taken[-1].get("taker") == "mcp", after)
        again = await tool(m, "check_inbox")
        check("commit: a committed delivery is not delivered again",
              "No new messages." in first_text(again), text_of(again))


CASES = [
    ("initialize", case_initialize, 30),
    ("registration", case_registration, 40),
    ("mcp-to-mcp", case_mcp_to_mcp, 60),
    ("terminal", case_terminal, 120),
    ("progress", case_progress, 30),
    ("cancel", case_cancel, 60),
    ("disconnect", case_disconnect, 40),
    ("early-sigterm", case_early_sigterm, 60),
    ("raw", case_raw_bad_input, 40),
    ("bad-input", case_bad_input, 120),
    ("extra-arguments", case_extra_arguments, 90),
    ("busy", case_busy, 120),
    ("commit", case_commit, 40),
]


async def main(selected):
    for name, case, limit in CASES:
        if selected and name not in selected:
            continue
        w = World()
        began = time.monotonic()
        try:
            await asyncio.wait_for(case(w), limit)
        except asyncio.TimeoutError:
            check(f"{name}: finishes within {limit}s", False, "timed out")
        except Exception as e:  # a check that could not run is a failure
            check(f"{name}: runs to the end", False, f"{type(e).__name__}: {e}")
        finally:
            if os.environ.get("MCP_CLIENT_VERBOSE"):
                print(f"# {name} took {time.monotonic() - began:.1f}s", flush=True)
            if os.environ.get("MCP_CLIENT_KEEP"):
                print(f"# kept {w.root}", flush=True)
            else:
                w.cleanup()


if __name__ == "__main__":
    if not BIN or not os.path.exists(BIN):
        print(f"FAIL setup: BRIDGE_HOST_BIN is not a file: {BIN!r}")
        print("mcp client: 0 passed, 1 failed")
        sys.exit(2)
    asyncio.run(main(set(sys.argv[1:])))
    print(f"mcp client: {PASSED} passed, {FAILED} failed", flush=True)
    sys.exit(1 if FAILED else 0)
