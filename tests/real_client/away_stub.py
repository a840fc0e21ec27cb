#!/usr/bin/env python3
"""A stand-in for the Anthropic Messages API for the away-answer tests
(``away.py``). Standard library only (Python 3.11); listens on 127.0.0.1
only and refuses every proxy request for another host.

Its "model" does only what the text it was sent shows, the way a model would:

- A user message without a question mark is acknowledged ("Noted.").
- A question ("... what is the <thing>?") is answered by searching the
  *earlier* messages of the same request for "the <thing> is <value>" (the
  latest mention wins). Nothing is hard-coded: a fact that is not in the
  request's history is answered with "not in this conversation". That is how
  a test proves the answer came from the resumed transcript.
- Tool calls are made only when the question text asks for them, one per
  assistant turn, in the order asked:
    run the shell command `CMD`                    -> Bash {command}
    write the file `PATH` containing `TEXT`        -> Write {file_path, content}
    edit the file `PATH` replacing `OLD` with `NEW` -> Edit {file_path, old_string, new_string}
    read the file `PATH`                           -> Read {file_path}
  After the last one it answers the question; tool results that came back
  as errors are mentioned in the answer ("Note: Bash failed: ...").
- Timing words in the question: ``SLOW`` makes the first request that
  carries that question stall (until the client goes away, at most
  ``--stall-seconds``); later requests with the same question are answered at
  once. ``PAUSE <n>`` waits n seconds before every first-step answer (so
  concurrent answerers overlap).

Requests without tools (Claude Code's helper calls) get a short text.

Every request is logged as one JSON line in ``--log`` (sequence number,
arrival time, path, whether it is a main request, tool names, the client's
session ID from ``metadata.user_id``, the question, its ``[q-...]`` tag, the
step, what was answered, whether it stalled) and, with ``--dump-dir``, its
whole body is written to ``<dump-dir>/<seq>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import select
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TAG_RE = re.compile(r"\[(q-[A-Za-z0-9_-]+)\]")
QUESTION_RE = re.compile(r"what is the ([A-Za-z][A-Za-z0-9 _-]{0,40}?)\s*\?", re.I)
TOOL_RES = [
    ("Bash", re.compile(r"run the shell command `([^`]+)`", re.I),
     lambda m: {"command": m.group(1), "description": "Run the command the user asked for"}),
    ("Write", re.compile(r"write the file `([^`]+)` containing `([^`]*)`", re.I),
     lambda m: {"file_path": m.group(1), "content": m.group(2)}),
    ("Edit", re.compile(r"edit the file `([^`]+)` replacing `([^`]+)` with `([^`]*)`", re.I),
     lambda m: {"file_path": m.group(1), "old_string": m.group(2), "new_string": m.group(3)}),
    ("Read", re.compile(r"read the file `([^`]+)`", re.I),
     lambda m: {"file_path": m.group(1)}),
]
PAUSE_RE = re.compile(r"\bPAUSE (\d+(?:\.\d+)?)\b")


# --------------------------------------------------------------------------
# Reading a request.
# --------------------------------------------------------------------------


def blocks_of(content) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def text_of(content) -> str:
    out = []
    for b in blocks_of(content):
        if b.get("type") == "text":
            out.append(b.get("text", ""))
        elif b.get("type") == "tool_result":
            out.append(text_of(b.get("content", "")))
    return "\n".join(out)


def is_question_message(msg: dict) -> bool:
    """A user message typed by a person: some text that is not a
    system-reminder, and no tool result."""
    if msg.get("role") != "user":
        return False
    blocks = blocks_of(msg.get("content"))
    if any(b.get("type") == "tool_result" for b in blocks):
        return False
    return any(b.get("type") == "text" and b.get("text", "").strip()
               and not b.get("text", "").lstrip().startswith("<system-reminder>") for b in blocks)


def newest_prompt(msgs: list) -> tuple[str, int, int]:
    """(text of the newest typed user message, its index, assistant turns
    since it)."""
    for i in range(len(msgs) - 1, -1, -1):
        if is_question_message(msgs[i]):
            text = "\n".join(b.get("text", "") for b in blocks_of(msgs[i].get("content"))
                             if b.get("type") == "text" and not b.get("text", "").lstrip().startswith("<system-reminder>"))
            return text, i, sum(1 for m in msgs[i + 1:] if m.get("role") == "assistant")
    return "", -1, 0


def tool_errors(msgs: list, start: int) -> list[str]:
    """Tool results after ``start`` that came back as errors: "Tool: text"."""
    names = {}
    for m in msgs[start:]:
        for b in blocks_of(m.get("content")):
            if b.get("type") == "tool_use":
                names[b.get("id")] = b.get("name")
    out = []
    for m in msgs[start:]:
        for b in blocks_of(m.get("content")):
            if b.get("type") == "tool_result" and b.get("is_error"):
                out.append(f"{names.get(b.get('tool_use_id'), '?')} failed: "
                           + " ".join(text_of(b.get("content", "")).split())[:200])
    return out


def client_session(req: dict) -> str | None:
    raw = (req.get("metadata") or {}).get("user_id")
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
        if isinstance(value, dict) and value.get("session_id"):
            return value["session_id"]
    except ValueError:
        pass
    found = re.search(r"session_([0-9a-f-]{36})", raw)
    return found.group(1) if found else None


# --------------------------------------------------------------------------
# The "model".
# --------------------------------------------------------------------------


def answer_question(prompt: str, earlier: str) -> str:
    asked = QUESTION_RE.search(prompt)
    if not asked:
        return "I am not sure what you are asking."
    thing = asked.group(1).strip()
    facts = re.findall(r"\bthe " + re.escape(thing) + r" is ([^\s,;]+)", earlier, re.I)
    facts = [f.rstrip(".!?)'\"") for f in facts]
    if not facts:
        return f"The {thing} is not in this conversation."
    return f"The {thing} is {facts[-1]}."


def decide(req: dict) -> dict:
    """What to answer: {"blocks": [...], "stop": ..., "note": {...}}."""
    msgs = req.get("messages") or []
    prompt, qi, step = newest_prompt(msgs)
    note = {"question": prompt[-600:], "step": step}
    tag = TAG_RE.search(prompt)
    note["tag"] = tag.group(1) if tag else None
    if "?" not in prompt:
        return {"blocks": [{"type": "text", "text": "Noted."}], "stop": "end_turn", "note": note}
    asked = []
    for name, rx, make in TOOL_RES:
        for m in rx.finditer(prompt):
            asked.append((m.start(), name, make(m)))
    asked.sort(key=lambda x: x[0])
    if step < len(asked):
        _, name, tool_input = asked[step]
        note["tool"] = name
        return {"blocks": [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": name,
                            "input": tool_input}], "stop": "tool_use", "note": note}
    earlier = "\n".join(text_of(m.get("content")) for m in msgs[:max(qi, 0)])
    text = answer_question(prompt, earlier)
    errors = tool_errors(msgs, qi + 1) if qi >= 0 else []
    if errors:
        text += "\n" + "\n".join("Note: " + e for e in errors)
    note["answer"] = text
    return {"blocks": [{"type": "text", "text": text}], "stop": "end_turn", "note": note}


# --------------------------------------------------------------------------
# HTTP.
# --------------------------------------------------------------------------


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def response_body(req: dict, blocks: list, stop: str) -> tuple[bytes, str]:
    n_in = max(1, len(json.dumps(req.get("messages", []))) // 4)
    msg = {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
           "model": req.get("model", "stand-in"), "content": [], "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": n_in, "output_tokens": 1, "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 0}}
    if not req.get("stream"):
        msg.update(content=blocks, stop_reason=stop)
        return json.dumps(msg).encode(), "application/json"
    out = [sse("message_start", {"type": "message_start", "message": msg})]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": b["text"]}
        else:
            start = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
        out.append(sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 10}}))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return b"".join(out), "text/event-stream"


class State:
    def __init__(self, log: Path, dump_dir: Path | None, stall_seconds: float):
        self.log = log
        self.dump_dir = dump_dir
        self.stall_seconds = stall_seconds
        self.seq = itertools.count(1)
        self.lock = threading.Lock()
        self.stalled: set[str] = set()
        self.port = 0

    def record(self, entry: dict, body: dict | None = None) -> None:
        with self.lock:
            entry = {"seq": next(self.seq), **entry}
            with self.log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            if self.dump_dir is not None and body is not None:
                (self.dump_dir / f"{entry['seq']:05d}.json").write_text(json.dumps(body, ensure_ascii=False))

    def first_stall(self, key: str) -> bool:
        with self.lock:
            if key in self.stalled:
                return False
            self.stalled.add(key)
            return True


STATE: State


def client_gone(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, ctype: str = "application/json", close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:
        STATE.record({"time": time.time(), "proxy_refused": self.path})
        self.reply(403, b"refused", "text/plain", close=True)

    def handle_any(self) -> None:
        arrived = time.time()
        path = self.path
        absolute = re.match(r"^https?://([^/]*)", path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if absolute:
            if absolute.group(1) not in (f"127.0.0.1:{STATE.port}", f"localhost:{STATE.port}"):
                STATE.record({"time": arrived, "proxy_refused": path})
                return self.reply(403, b"refused", "text/plain", close=True)
            path = path[absolute.end():]
        try:
            req = json.loads(raw) if raw else None
        except ValueError:
            req = None
        bare = path.split("?")[0]
        if self.command == "POST" and bare == "/v1/messages" and isinstance(req, dict):
            return self.messages(req, arrived)
        if bare == "/v1/messages/count_tokens":
            STATE.record({"time": arrived, "path": self.path, "kind": "count_tokens"})
            return self.reply(200, json.dumps({"input_tokens": max(1, len(raw) // 4)}).encode())
        STATE.record({"time": arrived, "path": self.path, "method": self.command, "kind": "other"})
        self.reply(404, json.dumps({"type": "error", "error": {"type": "not_found_error",
                                                                "message": "not in the stand-in"}}).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    def messages(self, req: dict, arrived: float) -> None:
        tools = [t.get("name") for t in req.get("tools") or [] if isinstance(t, dict)]
        entry = {"time": arrived, "path": self.path, "kind": "messages", "main": bool(tools), "tools": tools,
                 "session_id": client_session(req), "n_messages": len(req.get("messages") or [])}
        if tools:
            decision = decide(req)
            entry.update(decision["note"])
            question = decision["note"]["question"]
            if decision["note"]["step"] == 0 and "SLOW" in question and \
                    STATE.first_stall(decision["note"]["tag"] or question):
                entry["stalled"] = True
                STATE.record(dict(entry, phase="stall-start"))
                deadline = time.monotonic() + STATE.stall_seconds
                while time.monotonic() < deadline and not client_gone(self.connection):
                    time.sleep(0.2)
                entry["stall_end"] = "client gone" if client_gone(self.connection) else "timeout"
                entry["phase"] = "stall-end"
            pause = PAUSE_RE.search(question)
            if pause and decision["note"]["step"] == 0:
                time.sleep(float(pause.group(1)))
            blocks, stop = decision["blocks"], decision["stop"]
        else:
            system = json.dumps(req.get("system", ""))
            text = "{}" if ("json" in system.lower() or "output_config" in req) else "OK."
            blocks, stop = [{"type": "text", "text": text}], "end_turn"
        entry["answer_blocks"] = [b.get("text") if b["type"] == "text" else {b["name"]: b["input"]} for b in blocks]
        STATE.record(entry, req)
        body, ctype = response_body(req, blocks, stop)
        try:
            self.reply(200, body, ctype)
        except OSError:
            pass


def watch_parent(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


def main() -> None:
    global STATE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", required=True, help="JSON lines, one per request")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--dump-dir", help="write each request body here")
    ap.add_argument("--stall-seconds", type=float, default=300)
    ap.add_argument("--exit-with-parent", type=int, help="exit when this PID is gone")
    args = ap.parse_args()
    dump = Path(args.dump_dir) if args.dump_dir else None
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
    STATE = State(Path(args.log), dump, args.stall_seconds)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    STATE.port = server.server_address[1]
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, args=(args.exit_with_parent,), daemon=True).start()
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(STATE.port))
    tmp.replace(args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
