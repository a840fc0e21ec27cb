#!/usr/bin/env python3
"""Scriptable stand-in for the OpenAI Responses API, as used by the Codex CLI.

Standard library only. Listens on 127.0.0.1 and answers `POST /v1/responses`
(stream: true) with SSE events. Everything else is refused and logged, except
`GET /v1/models`, which gets an empty list.

Usage:
  responses_stub.py [--port N] [--script FILE | --read] [--log-dir DIR] [--port-file FILE]

  --port 0 (default) picks a free port; the chosen port is printed as
  "PORT <n>" on stdout and written to --port-file if given.
  --script defaults to $CODEX_MODEL_SCRIPT.

Script (JSON):
  {
    "steps": [                       # consumed one per /v1/responses request
      {"call": {"namespace": "mcp__bridge", "name": "ask",
                "arguments": {"peer": "p", "question": "q"}}},
      {"text": "The tool said: {last_output}"},
      {"delay": 5, "call": {...}}    # "delay": seconds to wait before answering
    ],
    "default_call": {...},           # optional: like "call" above
    "default_text": "Tool output: {last_output}"
  }

When the steps run out (or no script is given), the default applies: if the
newest input item is a function_call_output, answer with default_text
(placeholder {last_output} = that output, as text); otherwise emit
default_call if configured, else a plain text answer.

Placeholders in text: {last_output} (text of the newest function_call_output
in the input), {last_output_raw} (its JSON), {request_no}.

--read: no script; the "model" acts only on what the request shows, as a
model would (see read_and_act):
  - the newest input item is a tool's output: it ends the turn saying what
    the tool said;
  - the newest user message shows a peer's query and "Answer with: the reply
    tool with message_id <ID>": it calls `reply` in the namespace
    `mcp__bridge` (when the request offers it) with that message_id and
    answer_to(<the question inside the peer-message fence>);
  - the newest user message says "Ask session <6-char id>: <question>": it
    calls `ask` in `mcp__bridge` with that peer and question;
  - anything else: a plain answer.

Codex's side request for a thread title never consumes a scripted step
and is answered with a short title.
"""
import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"n": 0, "step": 0}
CFG = {"script": {}, "log_dir": None, "read": False}

# What Codex sends for the side request that names a new thread.
TITLE_REQUEST = "Generate a concise, single-line task title"
# What the bridge shows a woken Codex thread for a peer's query (a tool
# wake: "Query from <peer> "<project>". Answer with: the reply tool with
# message_id msg-…"), and the fenced text of the peer's message.
REPLY_WITH_TOOL_RE = re.compile(
    r"Query from [^\n]*? Answer with: the reply tool with message_id (?P<id>msg-[a-z0-9]+)\b")
PEER_TEXT_RE = re.compile(
    r"<peer-message [^\n]*?fence=(\S+?)[ >][^\n]*\n(.*?)\n?</peer-message fence=\1>", re.S)
# A user's request to ask another session (what the tests type).
ASK_RE = re.compile(r"^Ask session (?P<peer>[a-z0-9]{6}): (?P<question>.+)$", re.S)
PLAIN = "Hello from the stand-in model."


def answer_to(question):
    """The answer this "model" composes for a peer's question."""
    return f"You asked: {question} -- the stand-in model read it and answers yes."


def log_request(kind, handler, body_bytes):
    with LOCK:
        STATE["n"] += 1
        n = STATE["n"]
    d = CFG["log_dir"]
    if not d:
        return n
    try:
        body = json.loads(body_bytes) if body_bytes else None
    except Exception:
        body = body_bytes.decode("utf-8", "replace")
    rec = {
        "n": n,
        "time": time.time(),
        "kind": kind,
        "method": handler.command,
        "path": handler.path,
        "headers": dict(handler.headers.items()),
        "body": body,
    }
    safe = handler.path.strip("/").replace("/", "_").split("?")[0] or "root"
    with open(os.path.join(d, f"{n:03d}-{handler.command}-{safe}-{kind}.json"), "w") as f:
        json.dump(rec, f, indent=2)
    return n


def output_text(out):
    """function_call_output.output may be a string or a list of content items."""
    if isinstance(out, str):
        return out
    if isinstance(out, list):
        parts = []
        for it in out:
            if isinstance(it, dict):
                parts.append(it.get("text") or json.dumps(it))
            else:
                parts.append(str(it))
        return "\n".join(parts)
    if isinstance(out, dict):
        return out.get("content") if isinstance(out.get("content"), str) else json.dumps(out)
    return json.dumps(out)


def last_function_output(items):
    for it in reversed(items):
        if isinstance(it, dict) and it.get("type") in ("function_call_output", "custom_tool_call_output"):
            return it
    return None


def message_text(item):
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content or [] if isinstance(c, dict))


def newest_user_text(items):
    for it in reversed(items):
        if isinstance(it, dict) and it.get("type", "message") == "message" and it.get("role") == "user":
            return message_text(it)
    return ""


def offered(body, namespace, name):
    """Whether the request offers the tool `name` in `namespace`."""
    for tool in body.get("tools") or []:
        if tool.get("type") == "namespace" and tool.get("name") == namespace:
            if any(t.get("name") == name for t in tool.get("tools") or []):
                return True
    return False


def read_and_act(body, items):
    """What a model would do with this request (see --read in the doc)."""
    newest = items[-1] if items and isinstance(items[-1], dict) else {}
    last = last_function_output(items)
    if newest.get("type") in ("function_call_output", "custom_tool_call_output"):
        return {"text": "The tool said: " + output_text(last.get("output"))}
    words = newest_user_text(items)
    # The bridge's own line comes first; anything like it inside the fence
    # is the peer's words.
    query = REPLY_WITH_TOOL_RE.search(words)
    if query:
        fenced = PEER_TEXT_RE.findall(words[query.end():])
        question = fenced[0][1] if fenced else ""
        if not offered(body, "mcp__bridge", "reply"):
            return {"text": "A peer asked something, but no bridge reply tool is offered."}
        return {"call": {"namespace": "mcp__bridge", "name": "reply",
                         "arguments": {"message_id": query.group("id"),
                                       "answer": answer_to(question)}}}
    ask = ASK_RE.match(words.strip())
    if ask:
        if not offered(body, "mcp__bridge", "ask"):
            return {"text": "No bridge ask tool is offered."}
        return {"call": {"namespace": "mcp__bridge", "name": "ask",
                         "arguments": {"peer": ask.group("peer"), "question": ask.group("question")}}}
    return {"text": PLAIN}


def choose(body, n):
    items = body.get("input") or []
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if TITLE_REQUEST in json.dumps(items[-1:]):
        return {"text": "Title"}
    if CFG["read"]:
        return read_and_act(body, items)
    script = CFG["script"]
    last = last_function_output(items)
    newest_is_output = bool(items) and isinstance(items[-1], dict) and items[-1].get("type") in (
        "function_call_output", "custom_tool_call_output")
    ctx = {
        "last_output": output_text(last.get("output")) if last else "",
        "last_output_raw": json.dumps(last.get("output")) if last else "null",
        "request_no": str(n),
    }
    steps = script.get("steps") or []
    with LOCK:
        idx = STATE["step"]
        if idx < len(steps):
            STATE["step"] += 1
    # A call Codex could not route (its MCP tools were not ready yet when the
    # turn began) is made again, up to "retries" times, rather than taken
    # for the tool's answer.
    unrouted = newest_is_output and "unsupported call" in ctx["last_output"]
    if unrouted and script.get("default_call") and STATE.get("retries", 0) < script.get("retries", 3):
        with LOCK:
            STATE["retries"] = STATE.get("retries", 0) + 1
        step = {"call": script["default_call"]}
    elif idx < len(steps):
        step = steps[idx]
        if step.get("delay"):
            time.sleep(float(step["delay"]))
    elif newest_is_output:
        step = {"text": script.get("default_text", "Tool output: {last_output}")}
    elif script.get("default_call"):
        step = {"call": script["default_call"]}
    else:
        step = {"text": script.get("plain_text", "Hello from the stand-in model.")}
    if "text" in step:
        t = step["text"]
        for k, v in ctx.items():
            t = t.replace("{" + k + "}", v)
        return {"text": t}
    return step


def sse(event, data):
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def build_events(step, n):
    rid = f"resp_{n}"
    ev = [sse("response.created", {"type": "response.created", "response": {"id": rid}})]
    if "call" in step:
        c = step["call"]
        args = c.get("arguments", {})
        item = {
            "type": "function_call",
            "id": f"fc_{n}",
            "call_id": f"call_{n}",
            "name": c["name"],
            "arguments": args if isinstance(args, str) else json.dumps(args),
        }
        if c.get("namespace"):
            item["namespace"] = c["namespace"]
        added = dict(item, arguments="")
        ev.append(sse("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": added}))
        ev.append(sse("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}))
    else:
        text = step["text"]
        mid = f"msg_{n}"
        ev.append(sse("response.output_item.added", {
            "type": "response.output_item.added", "output_index": 0,
            "item": {"type": "message", "id": mid, "role": "assistant", "content": []}}))
        ev.append(sse("response.output_text.delta", {
            "type": "response.output_text.delta", "item_id": mid, "output_index": 0,
            "content_index": 0, "delta": text}))
        ev.append(sse("response.output_item.done", {
            "type": "response.output_item.done", "output_index": 0,
            "item": {"type": "message", "id": mid, "role": "assistant",
                     "content": [{"type": "output_text", "text": text, "annotations": []}]}}))
    ev.append(sse("response.completed", {"type": "response.completed", "response": {
        "id": rid,
        "usage": {"input_tokens": 10, "input_tokens_details": None, "output_tokens": 5,
                  "output_tokens_details": None, "total_tokens": 15}}}))
    return b"".join(ev)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("codex_model: " + (fmt % args) + "\n")

    def _body(self):
        ln = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(ln) if ln else b""

    def _send(self, code, ctype, data):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, body=b""):
        log_request("refused", self, body)
        self._send(404, "application/json", b'{"error":{"message":"not served by stand-in"}}')

    def do_GET(self):
        if self.path.split("?")[0] == "/v1/models":
            log_request("models", self, b"")
            self._send(200, "application/json", b'{"object":"list","data":[],"models":[]}')
        else:
            self._refuse()

    def do_POST(self):
        body = self._body()
        if self.path.split("?")[0] != "/v1/responses":
            return self._refuse(body)
        n = log_request("responses", self, body)
        try:
            req = json.loads(body)
        except Exception:
            return self._send(400, "application/json", b'{"error":{"message":"bad json"}}')
        if not req.get("stream"):
            return self._send(400, "application/json", b'{"error":{"message":"only stream:true"}}')
        step = choose(req, n)
        sys.stderr.write(f"codex_model: request {n} -> {json.dumps(step)[:200]}\n")
        self._send(200, "text/event-stream", build_events(step, n))

    def do_PUT(self):
        self._refuse(self._body())

    do_DELETE = do_PATCH = do_PUT

    def do_CONNECT(self):
        self._refuse()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", default=os.environ.get("CODEX_MODEL_SCRIPT"))
    ap.add_argument("--log-dir", default=os.environ.get("CODEX_MODEL_LOG_DIR"))
    ap.add_argument("--port-file")
    ap.add_argument("--read", action="store_true",
                    help="no script: act on what each request shows (see the module's doc)")
    a = ap.parse_args()
    CFG["read"] = a.read
    if a.script:
        with open(a.script) as f:
            CFG["script"] = json.load(f)
    if a.log_dir:
        os.makedirs(a.log_dir, exist_ok=True)
        CFG["log_dir"] = a.log_dir
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    port = srv.server_address[1]
    print(f"PORT {port}", flush=True)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
