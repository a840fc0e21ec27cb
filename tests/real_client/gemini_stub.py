#!/usr/bin/env python3
"""A stand-in for the Gemini API, as the Gemini CLI uses it, whose "model"
does only what the text it was sent shows.

Standard library only. Listens on 127.0.0.1 and answers
`POST /v1beta/models/<model>:streamGenerateContent` (SSE) and
`:generateContent` and `:countTokens`. Anything else, including a request
the CLI meant for another host and sent through its proxy setting (which
points here), is refused with 404 and logged as `*-refused.json`.

The "model" reads the conversation it is sent, and nothing else:

- the first user message must say `connect to session <id> and ask it: <question>`
  (the id: 6 characters of [a-z0-9]); without that, it answers in text that
  it found no session to ask;
- it calls the `connect` tool of the bridge server (the tool whose name ends
  in `_connect` among the declarations it was sent) with that id, then, as
  a call that depends on the first, the `ask` tool with the question and
  `wait_for_previous: true`, as Gemini CLI's system prompt tells a model
  to do;
- once the ask's result comes back, it ends the turn with the text of that
  result (so the CLI prints the peer's answer).

A message handed over by the bridge's AfterAgent hook arrives as the newest
user text. When that text says `Answer with: the reply tool with message_id
<id>`, the "model" calls the `reply` tool (the declaration ending in
`_reply`) with that id, and an answer that quotes the question it read
between the text's `<peer-message …>` lines; once the result comes back, it
ends the turn in text.

`--hold FILE` holds the answer to the first `streamGenerateContent` request
until FILE exists (at most 120 s): a slow API, which keeps the first turn
open while a test writes to the session's mailbox. The "model" reads
nothing from it.

Side requests (`generateContent`: the CLI's routing, next-speaker or
summary helpers) get a small JSON answer that ends the turn.

Usage: gemini_stub.py --log-dir DIR --port-file FILE [--hold FILE]
"""

import argparse
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"n": 0, "streams": 0}
LOG_DIR = None
HOLD = None

ASK = re.compile(r"connect to session ([a-z0-9]{6}) and ask it: (.+)", re.S)
HANDED = re.compile(r"Answer with: the reply tool with message_id (msg-[a-z0-9]+)")
FENCED = re.compile(r"^<peer-message [^\n]*\n(.*)\n</peer-message fence=[a-z0-9]+>$", re.S | re.M)


def log(kind, handler, body):
    with LOCK:
        STATE["n"] += 1
        n = STATE["n"]
    if LOG_DIR:
        name = handler.path.strip("/").split("?")[0].replace("/", "_").replace(":", "_")[:80]
        with open(os.path.join(LOG_DIR, f"{n:03d}-{handler.command}-{name or 'root'}-{kind}.json"), "w") as f:
            json.dump({"n": n, "method": handler.command, "path": handler.path,
                       "headers": dict(handler.headers.items()), "body": body}, f, indent=2)
    return n


def texts(content):
    return "".join(p.get("text", "") for p in content.get("parts", []) if isinstance(p, dict))


def declared(body):
    """The names of the functions the request offers the model."""
    names = []
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            names.append(decl.get("name", ""))
    return names


def function_responses(contents):
    """(name, response) of every functionResponse part, oldest first."""
    found = []
    for content in contents:
        for part in content.get("parts", []):
            if isinstance(part, dict) and "functionResponse" in part:
                r = part["functionResponse"]
                found.append((r.get("name", ""), r.get("response")))
    return found


def response_text(response):
    """The text a tool's response carries, however the CLI wrapped it."""
    if isinstance(response, str):
        return response
    if isinstance(response, dict):
        for key in ("output", "content", "llmContent", "result"):
            if key in response:
                return response_text(response[key])
        return json.dumps(response)
    if isinstance(response, list):
        return "\n".join(response_text(r) for r in response)
    return str(response)


def answer_handed_over(body):
    """The reply to a message the bridge handed over as the newest user
    text, or None when the newest user text hands none over."""
    contents = body.get("contents") or []
    newest = max((i for i, c in enumerate(contents)
                  if c.get("role") == "user" and texts(c).strip()), default=None)
    if newest is None:
        return None
    handed = HANDED.search(texts(contents[newest]))
    if not handed:
        return None
    message_id = handed.group(1)
    reply = next((n for n in declared(body) if n.endswith("_reply")), None)
    if not reply:
        return {"text": f"I cannot answer {message_id}: I was offered no reply tool."}
    if any(name == reply for name, _ in function_responses(contents[newest:])):
        return {"text": f"I answered {message_id} with the reply tool."}
    question = FENCED.search(texts(contents[newest]))
    read = question.group(1) if question else "(nothing between the fence lines)"
    return {"functionCall": {"name": reply, "args": {
        "message_id": message_id, "answer": f"The stand-in model read your question: {read}"}}}


def next_part(body):
    """What the model says next, from the conversation alone."""
    handed = answer_handed_over(body)
    if handed:
        return handed
    contents = body.get("contents") or []
    users = [texts(c) for c in contents if c.get("role") == "user"]
    wanted = next((m for m in (ASK.search(u) for u in users) if m), None)
    if not wanted:
        return {"text": "I found no session to ask in what I was given."}
    peer, question = wanted.group(1), wanted.group(2).strip()
    names = declared(body)
    connect = next((n for n in names if n.endswith("_connect")), None)
    ask = next((n for n in names if n.endswith("_ask")), None)
    if not connect or not ask:
        return {"text": f"I was offered no bridge tools (only {sorted(names)})."}
    done = function_responses(contents)
    if not any(name == connect for name, _ in done):
        return {"functionCall": {"name": connect, "args": {"peer": peer}}}
    asked = [r for name, r in done if name == ask]
    if not asked:
        return {"functionCall": {"name": ask, "args": {
            "peer": peer, "question": question, "timeout_seconds": 120,
            "wait_for_previous": True}}}
    return {"text": "The peer answered:\n" + response_text(asked[-1])}


def sse_chunk(part):
    return {
        "candidates": [{"content": {"role": "model", "parts": [part]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 10, "totalTokenCount": 20},
        "modelVersion": "stand-in",
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return raw.decode("utf-8", "replace")

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, body):
        log("refused", self, body)
        self.send_json(404, {"error": {"code": 404, "message": "not served by the stand-in",
                                       "status": "NOT_FOUND"}})

    def do_GET(self):
        self.refuse(None)

    def do_CONNECT(self):
        self.refuse(None)

    def do_POST(self):
        body = self.body()
        path = self.path.split("?")[0]
        local = self.headers.get("Host", "").startswith("127.0.0.1")
        if not local or not path.startswith("/v1beta/models/") or not isinstance(body, dict):
            return self.refuse(body)
        if path.endswith(":countTokens"):
            log("count", self, body)
            return self.send_json(200, {"totalTokens": 20})
        if path.endswith(":streamGenerateContent"):
            with LOCK:
                STATE["streams"] += 1
                first = STATE["streams"] == 1
            if first and HOLD:
                deadline = time.monotonic() + 120
                while not os.path.exists(HOLD) and time.monotonic() < deadline:
                    time.sleep(0.05)
            part = next_part(body)
            log("stream", self, {"request": body, "answer": part})
            data = b"data: " + json.dumps(sse_chunk(part)).encode() + b"\r\n\r\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if path.endswith(":generateContent"):
            # A helper request (routing, next speaker, summaries): a JSON
            # text that ends the turn with the user.
            answer = {"text": json.dumps({"next_speaker": "user", "reasoning": "stand-in",
                                          "complexity_reasoning": "stand-in",
                                          "complexity_score": 1})}
            log("helper", self, {"request": body, "answer": answer})
            return self.send_json(200, sse_chunk(answer))
        return self.refuse(body)


def main():
    global LOG_DIR, HOLD
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--hold")
    args = parser.parse_args()
    LOG_DIR = args.log_dir
    HOLD = args.hold
    os.makedirs(LOG_DIR, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
