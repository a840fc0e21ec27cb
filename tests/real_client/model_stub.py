#!/usr/bin/env python3
"""A local stand-in for the Anthropic Messages API, for driving the real
Claude Code CLI in tests. Standard library only (Python 3.11).

It serves, on 127.0.0.1 and a port the OS picks:

* ``POST /v1/messages`` -- streamed (SSE) and plain answers;
* ``POST /v1/messages/count_tokens``;
* anything else Claude Code asks for at start-up: a small JSON answer;
* the proxy side: Claude Code's ``HTTPS_PROXY``/``HTTP_PROXY`` point here, so
  a ``CONNECT host:port`` or an absolute-URI request is refused with 403 and
  its target logged. Nothing leaves the machine.

Every request is logged as one JSON line (see ``log_request``).

The "model" of the main agent is :func:`decide`, a small rule list: it only
runs commands that appear literally in the text Claude Code sent it, as a
model following the plugin's instructions would. Helper requests (title,
summaries, topic checks, quota probes ...) get a short harmless answer, as
JSON when the request asks for JSON.

Usage::

    python3 model_stub.py --log /tmp/stub.jsonl --port-file /tmp/stub.port \\
        [--persona default] [--dump-dir /tmp/requests] [--port 0]

The port is printed on standard output (``PORT <n>``) and written to
``--port-file``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import json
import re
import shlex
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------
# Personas: what this "model" answers when it must invent words.
# --------------------------------------------------------------------------

CLARIFYING_QUESTION = "Do you mean the v1 or the v2 API?"
PLAIN_ANSWER = "init() is now setup(); Config lost its verbose field."


@dataclasses.dataclass(frozen=True)
class Persona:
    name: str
    # The answer it gives back when a peer's reply asks it something (rule a).
    clarification: str = "The v2 API."
    # Answers a woken query with the plugin's MCP `reply` tool, when the
    # request offers it (or lists it as deferred), instead of the Bash
    # command the wake-up names.
    answer_with_mcp: bool = False
    # Answers "catalogue item N" with CATALOGUE[N], byte for byte.
    catalogue: bool = False

    def answer(self, question: str) -> str:
        """The answer to a peer's query (rule b)."""
        if self.catalogue:
            item = CATALOGUE_QUESTION_RE.search(question)
            if item and int(item.group(1)) in CATALOGUE:
                return CATALOGUE[int(item.group(1))][1]
        q = question.lower()
        if "which" in q or re.search(r"\bclarify\b", q):
            return CLARIFYING_QUESTION
        return PLAIN_ANSWER


PERSONAS = {
    "default": Persona("default"),
    # Asks the library side; answers a clarifying question with this.
    "app": Persona("app", clarification="The v2 API."),
    # Answers questions about its code.
    "library": Persona("library", clarification="The v2 API."),
    # The library, answering through the plugin's MCP server.
    "library-mcp": Persona("library-mcp", clarification="The v2 API.", answer_with_mcp=True),
    # Answer "catalogue item N" with that item (catalogue.py), through the
    # Bash command the text shows or through the MCP reply tool.
    "catalogue-bash": Persona("catalogue-bash", catalogue=True),
    "catalogue-mcp": Persona("catalogue-mcp", catalogue=True, answer_with_mcp=True),
}

# How Claude Code names the plugin's MCP reply tool.
MCP_REPLY_TOOL = "mcp__plugin_session-bridge_bridge__reply"
# The reply tool of a server named "bridge" (plugin-bundled or not), as
# Claude Code names MCP tools: mcp__<server>__<tool>.
BRIDGE_REPLY_TOOL_RE = re.compile(r"^mcp__(?:plugin_[A-Za-z0-9_-]+_)?bridge__reply$")


# --------------------------------------------------------------------------
# The answer catalogue (catalogue.py): answers that a shell would mangle if
# they were put on a command line, each to arrive byte for byte.
# --------------------------------------------------------------------------


def _diff_100k() -> str:
    """A unified diff of about 100 KB, the same every time."""
    out = ["diff --git a/src/config.rs b/src/config.rs\n", "index 3f2a9c1..8b7d0e4 100644\n",
           "--- a/src/config.rs\n", "+++ b/src/config.rs\n"]
    i = 0
    while sum(map(len, out)) < 100_000:
        out.append(f"@@ -{i * 8 + 1},7 +{i * 8 + 1},8 @@ impl Config {{\n")
        out.append(f"     /// Field {i}: read from `$CONFIG_{i}` (\"{i}\" by default).\n")
        out.append(f"-    pub fn field_{i}(&self) -> &str {{ self.get('{i}').unwrap_or(\"\") }}\n")
        out.append(f"+    pub fn field_{i}(&self) -> Result<&str, Error> {{\n")
        out.append(f"+        self.get(\"field_{i}\").ok_or_else(|| Error::missing(r\"C:\\cfg\\{i}\"))\n")
        out.append("+    }\n")
        out.append(f"     // see `git log -S field_{i}` and $(date) for when it changed\n")
        out.append(" \n")
        i += 1
    return "".join(out)


# number -> (what it tests, the exact answer)
CATALOGUE: dict[int, tuple[str, str]] = {
    1: ("backticks and a fenced code block",
        "Call `setup()` instead of `init()`, e.g.:\n\n```rust\nfn main() -> Result<(), Error> {\n"
        "    let cfg = Config::default(); // was `Config::new(true)`\n    setup(&cfg)?;\n    Ok(())\n}\n```\n"
        "Run ``cargo test`` after."),
    2: ("$HOME, $(...) and !",
        "Files go to $HOME/.cache, not $(id -un) or ${XDG_DATA_HOME:-x}; `whoami` is not run.\n"
        "Say it loud! Then run !! and !-2 and !$ again!\n$1 $@ $$ $? stay as they are.\n"),
    3: ("single and double quotes and backslashes",
        "echo 'it'\\''s' \"x\" 'a \"b\" c'\nA literal \\n and \\t, not a newline; C:\\path\\to\\dir\\ and \\\\server\\share\n"
        "Quotes: \"\", '', \"'\", '\"', \\\", \\' and a trailing backslash \\"),
    4: ("lines reading EOF and ANSWER",
        "before\nEOF\nANSWER\nANSWER_\nANSWER_abcd1234\n'EOF'\n<answer>\nafter\n"),
    5: ("CRLF line endings",
        "first line\r\nsecond line\r\n\r\nlast line\r\n"),
    6: ("non-ASCII text",
        "Café, naïve, é (U+00E9) and e\u0301 (combining); 日本語のテキスト; emoji 🎉👍🏽 and 👨\u200d👩\u200d👧; "
        "RTL: שלום עולם, مرحبا بالعالم; Ω≈ç√∫ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢\n"),
    7: ("a 100 KB unified diff", _diff_100k()),
}
CATALOGUE_QUESTION_RE = re.compile(r"\bcatalogue item (\d+)\b")


# --------------------------------------------------------------------------
# Reading a request.
# --------------------------------------------------------------------------

TOOL_ID_PREFIX = "toolu_stub_"
_tool_counter = itertools.count(1)
_issued_tool_ids: set[str] = set()
_issued_lock = threading.Lock()


def block_text(block: Any) -> str:
    """All the text of one content block (tool_result contents included)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return block.get("text", "")
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return "\n".join(block_text(b) for b in content)
        return str(content)
    return ""


def message_text(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "\n".join(t for t in (block_text(b) for b in content) if t)


def newest_user_message(request: dict) -> dict:
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return message
    return {}


def newest_user_text(request: dict) -> str:
    return message_text(newest_user_message(request))


def own_tool_results(message: dict) -> list[dict]:
    """The tool_result blocks of ``message`` that answer this stub's tool_use."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [
        b
        for b in content
        if isinstance(b, dict)
        and b.get("type") == "tool_result"
        and str(b.get("tool_use_id", "")).startswith(TOOL_ID_PREFIX)
    ]


def tool_names(request: dict) -> list[str]:
    return [t.get("name", "") for t in request.get("tools") or [] if isinstance(t, dict)]


COMPACT_MARKERS = (
    "create a detailed summary of the conversation",
    "an <analysis> block followed by a <summary> block",
)


def is_compaction(request: dict) -> bool:
    """``/compact`` (or auto-compaction): sent with the main agent's tools,
    Bash included, but it wants a text summary (seen in 2.1.332)."""
    words = newest_user_text(request)
    return any(marker in words for marker in COMPACT_MARKERS)


def is_main_agent(request: dict) -> bool:
    """A request of the main agent's loop: it offers a tool named Bash and
    is not a compaction."""
    return "Bash" in tool_names(request) and not is_compaction(request)


def system_text(request: dict) -> str:
    system = request.get("system", "")
    if isinstance(system, list):
        return "\n".join(block_text(b) for b in system)
    return str(system or "")


def conversation_text(request: dict) -> str:
    return "\n".join(message_text(m) for m in request.get("messages") or [])


def assistant_tool_commands(request: dict) -> list[str]:
    out = []
    for m in request.get("messages") or []:
        if m.get("role") != "assistant" or not isinstance(m.get("content"), list):
            continue
        for b in m["content"]:
            if isinstance(b, dict) and b.get("type") == "tool_use":
                out.append(str((b.get("input") or {}).get("command", "")))
    return out


# --------------------------------------------------------------------------
# The decision function of the main agent. Rules, in order; edit here.
# --------------------------------------------------------------------------

PEER_TEXT_RE = re.compile(
    r"<peer-message [^\n]*?fence=(\S+?)[ >][^\n]*\n(.*?)\n?</peer-message fence=\1>",
    re.S,
)
# The command block the bridge shows for an answer: the command (``verb``,
# then its arguments), reading standard input from a here-document with a
# quoted delimiter; a line "<answer>" to fill in; the delimiter.
def _block(verb: str) -> str:
    return (r"(?P<block>bridge-host run " + verb + r"[^\n]*? - <<'(?P<tag>[A-Za-z0-9_]+)'\n"
            r"<answer>\n(?P=tag))(?![^\n])")


# A query's first line (a wake-up, or listen/check-inbox output), as an agent
# in Claude Code (the reply tool, or the command) or a terminal (the command)
# is shown it, and the command block. Not anchored at a line start: Claude
# Code joins the hook's rewakeMessage and its stderr on one line.
QUERY_RE = re.compile(
    r"Query from [^\n]*? Answer with (?:the reply tool of the bridge's MCP server "
    r"\(message_id (?P<tool_id>msg-[a-z0-9]{12})\), or with )?this command, your answer in place of "
    r"<answer>:\n" + _block(r"reply (?P<id>msg-[a-z0-9]{12})")
)
# A reply that `ask` prints: how to answer if it asks something back.
REPLY_RE = re.compile(
    r"Reply from [^\n]*? If it asks you something, answer with (?:the ask tool of the bridge's MCP server "
    r"\(peer (?P<peer>[a-z0-9]{6}), in_reply_to (?P<reply_id>msg-[a-z0-9]{12})\), or with )?this command, "
    r"your answer in place of <answer>:\n" + _block(r"ask [a-z0-9]{6}")
)
RUN_EXACTLY_RE = re.compile(r"Run exactly\b[^`\n]*`([^`\n]+)`")
COMMAND_ARGS_RE = re.compile(r"<command-args>(.*?)</command-args>", re.S)
# A real session ID (6 of [a-z0-9]), not a placeholder in the instructions.
CONNECTED_RE = re.compile(r"Connected to '(?:[^'\\\n]|\\.)*' \(([a-z0-9]{6})\)")


def peer_texts(text: str) -> list[str]:
    return [m.group(2) for m in PEER_TEXT_RE.finditer(text)]


# What the bridge tells an agent, after the command, about text its shell
# tool will not carry.
ESCAPES_NOTE_RE = re.compile(
    r"\A\n\(A shell tool may refuse control characters, such as the CR of CRLF line endings: "
    r"then add --escapes after the - and write each as \\r or \\u\{1b\}, and each backslash as "
    r"\\\\\.\)"
)


def has_control(answer: str) -> bool:
    """Whether ``answer`` holds a control character other than LF and TAB
    (what Claude Code's Bash tool refuses in a command)."""
    return any((ord(c) < 32 and c not in "\n\t") or 127 <= ord(c) <= 159 for c in answer)


def escaped(answer: str) -> str:
    """``answer`` written as the escapes note says: each backslash doubled,
    CR as ``\\r``, any other refused control character as ``\\u{hex}``."""
    out = []
    for c in answer:
        if c == "\\":
            out.append("\\\\")
        elif c == "\r":
            out.append("\\r")
        elif has_control(c):
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def fill_answer(block: str, answer: str, after: str = "") -> str:
    """The command ``block`` (command line, ``<answer>``, delimiter) with its
    ``<answer>`` line replaced by ``answer`` verbatim, as the text asks: the
    here-document gives it to the command byte for byte (the command drops
    the one final newline the here-document adds). When ``answer`` holds a
    control character the shell tool refuses and the text that follows the
    block (``after``) gives the escapes note, ``--escapes`` goes after the
    ``-`` and the answer is written escaped, as the note says."""
    head, placeholder, tail = block.split("\n")
    assert placeholder == "<answer>", block
    if has_control(answer) and ESCAPES_NOTE_RE.match(after):
        head = head.replace(" - <<'", " - --escapes <<'", 1)
        answer = escaped(answer)
    return f"{head}\n{answer}\n{tail}"


def bash(command: str, description: str, timeout: int | None = None) -> dict:
    action = {"type": "tool_use", "command": command, "description": description}
    if timeout is not None:
        action["timeout"] = timeout
    return action


def tool_call(name: str, tool_input: dict, description: str) -> dict:
    return {"type": "tool_use", "tool": name, "input": tool_input, "description": description}


def text(words: str) -> dict:
    return {"type": "text", "text": words}


def bridge_reply_tool(request: dict) -> str | None:
    """The bridge's MCP reply tool, if the request offers it as a tool."""
    return next((n for n in tool_names(request) if BRIDGE_REPLY_TOOL_RE.match(n)), None)


# 2.1.332 names the tools it defers in a system-role message: this line,
# then one name per line up to a blank line.
DEFERRED_RE = re.compile(
    r"The following deferred tools are now available via ToolSearch\.[^\n]*\n((?:[^\n]+\n?)*)"
)


def deferred_tools(request: dict) -> list[str]:
    """Tools the request names as deferred: loaded only through ToolSearch
    (2.1.332 does this with MCP tools)."""
    out: list[str] = []
    for message in request.get("messages") or []:
        for found in DEFERRED_RE.finditer(message_text(message)):
            out += [line.strip() for line in found.group(1).splitlines() if line.strip()]
    return out


def answer_query(persona: Persona, request: dict, words: str, search: bool = True) -> dict | None:
    """The answer to the (last) query shown in ``words``: with the bridge's
    MCP reply tool for a persona that answers through MCP (loading it with
    ToolSearch first if the request lists it as deferred, unless ``search``
    is false: the search was just made), else with the command block the
    text shows, ``<answer>`` filled in."""
    found = list(QUERY_RE.finditer(words))
    if not found:
        return None
    query = found[-1]
    fenced = peer_texts(words[query.end():])
    question = fenced[0] if fenced else ""
    answer = persona.answer(question)
    if persona.answer_with_mcp and query.group("tool_id"):
        tool = bridge_reply_tool(request)
        if tool:
            return tool_call(tool, {"message_id": query.group("tool_id"), "answer": answer},
                             "Answer the peer's query with the bridge's reply tool")
        deferred = [n for n in deferred_tools(request) if BRIDGE_REPLY_TOOL_RE.match(n)]
        if search and "ToolSearch" in tool_names(request):
            if deferred:
                return tool_call("ToolSearch", {"query": f"select:{deferred[0]}", "max_results": 1},
                                 "Load the bridge's reply tool")
            # Not named anywhere (2.1.332's first turn, a wake-up, lists no
            # deferred tools): search for it by the words the text uses.
            return tool_call("ToolSearch", {"query": "+bridge reply", "max_results": 5},
                             "Find the bridge's reply tool")
    return bash(fill_answer(query.group("block"), answer, words[query.end():]),
                "Answer the peer's query")


def own_tool_uses(request: dict) -> dict[str, dict]:
    """This stub's tool_use blocks in the conversation, by id."""
    out = {}
    for m in request.get("messages") or []:
        if m.get("role") == "assistant" and isinstance(m.get("content"), list):
            for b in m["content"]:
                if isinstance(b, dict) and b.get("type") == "tool_use" and str(b.get("id", "")).startswith(TOOL_ID_PREFIX):
                    out[b["id"]] = b
    return out


def rule_a_tool_result(persona: Persona, request: dict) -> dict | None:
    """A result of our own tool call:
    - of ToolSearch (the reply tool loaded): answer the query that led to it;
    - a query (the output of listen or check-inbox): answer it;
    - a peer's reply that asks something back: answer with the command its
      first line gives;
    - any other peer's reply: end the turn relaying its words to the user;
    - else say it is done."""
    results = own_tool_results(newest_user_message(request))
    if not results:
        return None
    uses = own_tool_uses(request)
    if any(uses.get(b.get("tool_use_id"), {}).get("name") == "ToolSearch" for b in results):
        messages = request.get("messages") or []
        newest = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        earlier = "\n".join(message_text(m) for m in messages[:newest])
        action = answer_query(persona, request, earlier, search=False)
        if action is not None:
            return action
    result = "\n".join(block_text(b) for b in results)
    action = answer_query(persona, request, result)
    if action is not None:
        return action
    line = REPLY_RE.search(result)
    fenced = peer_texts(result[line.end():]) if line else []
    if line and fenced and fenced[0].rstrip().endswith("?"):
        return bash(fill_answer(line.group("block"), persona.clarification, result[line.end():]),
                    "Answer the peer's clarifying question")
    if line and fenced:
        # The peer's final answer: relay it to the user.
        return text(f"The peer answered: {fenced[0]}")
    first = next((l for l in result.splitlines() if l.strip()), "(no output)")
    return text(f"Done. {first.strip()}")


def rule_b_answer_query(persona: Persona, request: dict) -> dict | None:
    """A peer's query (a wake-up): answer it as the text says."""
    return answer_query(persona, request, newest_user_text(request))


def rule_c_run_exactly(persona: Persona, request: dict) -> dict | None:
    """The instructions name one command to run: run it, with ``<peer>``
    replaced by the session last connected to and ``<question>`` by the
    slash command's arguments, single-quoted."""
    words = newest_user_text(request)
    found = RUN_EXACTLY_RE.search(words)
    if not found:
        return None
    command = found.group(1).strip()
    if "<peer>" in command:
        peers = CONNECTED_RE.findall(conversation_text(request))
        if peers:
            command = command.replace("<peer>", peers[-1])
    if "<question>" in command:
        # The question is the slash command's arguments, as Claude Code
        # quotes them in <command-args>.
        args = COMMAND_ARGS_RE.search(words)
        question = args.group(1).strip() if args else ""
        quoted = shlex.quote(question)
        for placeholder in ("'<question>'", '"<question>"', "<question>"):
            command = command.replace(placeholder, quoted)
    timeout = 600000 if " run listen" in command else None
    return bash(command, "Run the session-bridge command", timeout)


def rule_d_end_turn(persona: Persona, request: dict) -> dict | None:
    return text("Nothing to do.")


RULES = [rule_a_tool_result, rule_b_answer_query, rule_c_run_exactly, rule_d_end_turn]


def decide(persona: Persona, request: dict) -> dict:
    """What the main agent does with ``request``: a Bash call
    (``{"type": "tool_use", "command": ..., "description": ...}``) or the
    end of its turn (``{"type": "text", "text": ...}``)."""
    for rule in RULES:
        action = rule(persona, request)
        if action is not None:
            action["rule"] = rule.__name__
            return action
    raise AssertionError("rule_d always answers")


# --------------------------------------------------------------------------
# Helper requests: anything that is not the main agent.
# --------------------------------------------------------------------------


def schema_example(schema: Any, depth: int = 0) -> Any:
    """A small value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, dict) or depth > 6:
        return "stub"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_example(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: schema_example(v, depth + 1) for k, v in props.items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return 0
    if kind == "null":
        return None
    return "Stub session"


def requested_schema(request: dict) -> dict | None:
    """The JSON schema of a structured-output request, if any."""
    for key in ("output_format", "output_config"):
        value = request.get(key)
        if isinstance(value, dict):
            fmt = value.get("format", value)
            if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
                return fmt["schema"]
    return None


def helper_kind(request: dict) -> str:
    sys_text = system_text(request).lower()
    user = newest_user_text(request).lower()
    if request.get("max_tokens") == 1:
        return "probe"
    if is_compaction(request):
        return "compact"
    if "title" in sys_text:
        return "title"
    if "new conversation topic" in sys_text or "isnewtopic" in sys_text:
        return "topic"
    if "summar" in sys_text or "summar" in user:
        return "summary"
    return "other"


def helper_answer(request: dict) -> tuple[str, str]:
    """(kind, text) for a helper request."""
    kind = helper_kind(request)
    schema = requested_schema(request)
    if schema is not None:
        return kind, json.dumps(schema_example(schema))
    sys_text = system_text(request)
    if kind == "compact":
        return kind, ("<analysis>\nThe stub model has nothing to analyse.\n</analysis>\n\n"
                      "<summary>\nA test session driven by a model stub.\n</summary>")
    if kind == "topic":
        return kind, json.dumps({"isNewTopic": False, "title": None})
    if kind == "title" and "json" in sys_text.lower():
        return kind, json.dumps({"title": "Stub session"})
    if kind == "title":
        return kind, "Stub session"
    if "json" in sys_text.lower():
        return kind, "{}"
    return kind, "OK."


# --------------------------------------------------------------------------
# Answers in the Messages API's shape.
# --------------------------------------------------------------------------


def new_tool_id() -> str:
    tid = f"{TOOL_ID_PREFIX}{next(_tool_counter):04d}_{uuid.uuid4().hex[:12]}"
    with _issued_lock:
        _issued_tool_ids.add(tid)
    return tid


def content_blocks(action: dict) -> tuple[list[dict], str]:
    if action["type"] == "tool_use" and "tool" in action:
        return (
            [{"type": "tool_use", "id": new_tool_id(), "name": action["tool"], "input": action["input"]}],
            "tool_use",
        )
    if action["type"] == "tool_use":
        tool_input = {"command": action["command"], "description": action.get("description", "")}
        if action.get("timeout"):
            tool_input["timeout"] = action["timeout"]
        return (
            [{"type": "tool_use", "id": new_tool_id(), "name": "Bash", "input": tool_input}],
            "tool_use",
        )
    return [{"type": "text", "text": action["text"]}], "end_turn"


def usage(request: dict, output_tokens: int) -> dict:
    return {
        "input_tokens": max(1, len(json.dumps(request.get("messages", []))) // 4),
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message_json(request: dict, blocks: list[dict], stop_reason: str) -> dict:
    return {
        "id": f"msg_stub_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "claude-stub"),
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage(request, 10),
    }


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def sse_body(request: dict, blocks: list[dict], stop_reason: str) -> bytes:
    msg = message_json(request, [], None)  # type: ignore[arg-type]
    msg["usage"] = usage(request, 1)
    out = [sse("message_start", {"type": "message_start", "message": msg})]
    out.append(sse("ping", {"type": "ping"}))
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            half = len(raw) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[:half]},
                {"type": "input_json_delta", "partial_json": raw[half:]},
            ]
        out.append(sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        for d in deltas:
            out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 10},
            },
        )
    )
    out.append(sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


# --------------------------------------------------------------------------
# The server.
# --------------------------------------------------------------------------


class Stub:
    def __init__(self, persona: Persona, log_path: Path, dump_dir: Path | None):
        self.persona = persona
        self.log_path = log_path
        self.dump_dir = dump_dir
        self.lock = threading.Lock()
        self.seq = itertools.count(1)

    def log(self, entry: dict) -> None:
        entry = {"time": round(time.time(), 3), **entry}
        line = json.dumps(entry, ensure_ascii=False)
        with self.lock:
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    def dump(self, seq: int, path: str, headers: dict, body: Any) -> str | None:
        if self.dump_dir is None:
            return None
        name = f"{seq:04d}{re.sub(r'[^A-Za-z0-9]+', '_', path)[:60]}.json"
        (self.dump_dir / name).write_text(
            json.dumps({"path": path, "headers": headers, "body": body}, indent=1, ensure_ascii=False)
        )
        return name


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-stub/1"
    stub: Stub  # set on the class by serve()

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        return raw

    def send(self, status: int, body: bytes, content_type: str = "application/json", close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", f"req_stub_{uuid.uuid4().hex[:16]}")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, value: Any) -> None:
        self.send(status, json.dumps(value).encode())

    def refuse_proxy(self, target: str) -> None:
        self.stub.log({"method": self.command, "path": self.path, "proxy_refused": target})
        self.send(403, b"model-stub: refusing to proxy; nothing leaves this machine\n", "text/plain", close=True)

    # --- methods

    def do_CONNECT(self) -> None:
        self.refuse_proxy(self.path)

    def route(self) -> None:
        absolute = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*)", self.path)
        if absolute:
            # An absolute URI: a proxy request. One for this stub itself (a
            # client that proxies 127.0.0.1 too) is served; any other host is
            # refused.
            port = self.server.server_address[1]
            if absolute.group(1).lower() not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                self.read_body()
                self.refuse_proxy(self.path)
                return
            self.path = self.path[absolute.end():] or "/"
        raw = self.read_body() if self.command in ("POST", "PUT", "PATCH") else b""
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seq = next(self.stub.seq)
        dumped = self.stub.dump(seq, self.path, dict(self.headers), body)
        entry: dict[str, Any] = {"seq": seq, "method": self.command, "path": self.path}
        if dumped:
            entry["dump"] = dumped
        if self.command == "POST" and path == "/v1/messages" and isinstance(body, dict):
            self.messages(body, entry)
        elif self.command == "POST" and path == "/v1/messages/count_tokens" and isinstance(body, dict):
            tokens = max(1, len(raw) // 4)
            entry["answer"] = {"input_tokens": tokens}
            self.stub.log(entry)
            self.send_json(200, {"input_tokens": tokens})
        else:
            answer = other_answer(self.command, path)
            entry["answer"] = answer
            entry["status"] = answer[0]
            self.stub.log(entry)
            self.send_json(*answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = route

    def messages(self, request: dict, entry: dict) -> None:
        main = is_main_agent(request)
        entry.update(
            {
                "main": main,
                "model": request.get("model"),
                "stream": bool(request.get("stream")),
                "max_tokens": request.get("max_tokens"),
                "n_messages": len(request.get("messages") or []),
                "newest_user_text": newest_user_text(request),
            }
        )
        if main:
            # Whether the bridge's MCP reply tool was offered, named as
            # deferred, or neither (its server not connected yet, say).
            entry["bridge_reply_tool"] = ("offered" if bridge_reply_tool(request) else
                                          "deferred" if any(BRIDGE_REPLY_TOOL_RE.match(n)
                                                            for n in deferred_tools(request)) else "none")
            action = decide(self.stub.persona, request)
            entry["answer"] = dict(action)
            blocks, stop = content_blocks(action)
            if blocks[0]["type"] == "tool_use":
                entry["answer"]["id"] = blocks[0]["id"]
        else:
            kind, words = helper_answer(request)
            entry["helper"] = kind
            entry["system_head"] = system_text(request)[:300]
            entry["tools"] = tool_names(request)
            entry["answer"] = {"type": "text", "text": words}
            blocks, stop = [{"type": "text", "text": words}], "end_turn"
        entry["stop_reason"] = stop
        self.stub.log(entry)
        if request.get("stream"):
            self.send(200, sse_body(request, blocks, stop), "text/event-stream")
        else:
            self.send_json(200, message_json(request, blocks, stop))


def other_answer(method: str, path: str) -> tuple[int, Any]:
    """Anything but messages: what Claude Code may ask for at start-up."""
    if path.startswith("/v1/models"):
        return 200, {"data": [], "has_more": False, "first_id": None, "last_id": None}
    if path == "/api/hello" or path == "/":
        return 200, {"ok": True}
    return 404, {"type": "error", "error": {"type": "not_found_error", "message": f"model-stub: no {method} {path}"}}


def serve(persona: Persona, log_path: Path, port: int = 0, dump_dir: Path | None = None) -> ThreadingHTTPServer:
    """A started server (in a daemon thread); ``server.server_address[1]`` is
    its port."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
    handler = type("BoundHandler", (Handler,), {"stub": Stub(persona, log_path, dump_dir)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _exit_with(pid: int) -> None:
    import os

    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--persona", default="default", choices=sorted(PERSONAS))
    p.add_argument("--log", required=True, type=Path, help="JSON-lines log of every request")
    p.add_argument("--port", type=int, default=0, help="0 (default): the OS picks")
    p.add_argument("--port-file", type=Path, help="write the port here once listening")
    p.add_argument("--dump-dir", type=Path, help="also write every request body here, one file each")
    p.add_argument("--exit-with-parent", type=int, metavar="PID",
                   help="exit when the process PID is gone (the harness that started it)")
    args = p.parse_args(argv)
    if args.exit_with_parent:
        threading.Thread(target=_exit_with, args=(args.exit_with_parent,), daemon=True).start()
    server = serve(PERSONAS[args.persona], args.log, args.port, args.dump_dir)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(args.port_file)
    print(f"PORT {port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
