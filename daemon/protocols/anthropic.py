"""Anthropic Messages API <-> Gemini GenerateContentRequest (pure translation).

Implements the interface described in ``daemon.protocols`` plus
``error_type`` / ``error_body`` (Anthropic error shapes) and
``count_tokens_request`` (the upstream countTokens body).

The hard part is thinking (UPSTREAM.md, "Thinking, signatures and tool
calls"). Rules this module follows:

Claude models
    * A ``thinking`` block goes back as ``{text, thought: true,
      thoughtSignature}`` only when the proxy issued that signature for a
      Claude model (``store.family(sig) == "claude"``). The text comes from
      the store when known (it is what was signed; Claude Code may send it
      empty with ``display: "omitted"``), else from the block. Unknown,
      foreign, unsigned or textless blocks are dropped, never sent: the
      upstream answers 400 "Invalid `signature` in `thinking` block" or
      "thinking.thinking: Field required" otherwise.
    * With thinking on, the final model turn of a tool loop must start with
      a thought ("Expected `thinking` or `redacted_thinking`, but found
      `tool_use`"). If it does not after dropping, thinking is turned off
      for this request and every thought part is removed.
Gemini models
    * No thought text is sent back (Gemini does not need it; the signature
      carries the context). The signature of a model turn goes on its first
      functionCall (or on its last part when there is no call): from the
      store by tool-call id first, then from a ``thinking`` block the proxy
      issued for a Gemini model; a functionCall with no known signature gets
      ``skip_thought_signature_validator``.
Answers
    * Every signature handed to the client is recorded: ``put_family``,
      ``put_thinking`` (signature -> text) and, for signed function calls,
      ``put_tool_call`` (tool_use id -> signature).

``call.extra`` keys (see ``EXTRA_*`` below for the exact names).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from daemon.errors import BadRequest, ContextTooLong, GatewayError
from daemon.protocols import GeminiCall, anthropic_tools, common, shared_extra, web_search
from daemon.protocols.signatures import SignatureStore

# ------------------------------------------------------------------ constants

FAMILY_CLAUDE = "claude"
FAMILY_GEMINI = "gemini"

# Accepted by Gemini on a functionCall part whose real signature is unknown
# (UPSTREAM.md); only the current turn is validated, so older turns carry it
# harmlessly.
SKIP_SIGNATURE = "skip_thought_signature_validator"

# What a tool_use with no tool_result in the next user turn is answered with.
MISSING_RESULT = "No result was provided for this tool call."

# call.extra keys. The route may set EXTRA_ID (deterministic ids in tests);
# the rest are set here and read by from_gemini / StreamTranslator / logging.
EXTRA_ID = "id"  # message id to answer with ("msg_…"); generated when absent
EXTRA_TOOL_NAMES = "tool_names"  # {sanitized upstream name: client's name}
EXTRA_IGNORED_TOOLS = "ignored_tools"  # server tools not sent upstream
EXTRA_IGNORED_BLOCKS = "ignored_blocks"  # content block types dropped
EXTRA_THINKING_DISPLAY = "thinking_display"  # "omitted" / "summarized" if asked
EXTRA_THINKING_OFF = "thinking_off"  # why requested thinking was turned off
EXTRA_DROPPED_PREFILL = "dropped_prefill"  # True when a trailing assistant turn was dropped
EXTRA_DROPPED_THINKING = "dropped_thinking"  # claude: thinking blocks not verifiable, not sent
EXTRA_STOP_SEQUENCES = "stop_sequences"  # the request's stop_sequences (for stop_reason)

# Anthropic ``output_config.effort`` -> thinking budget. "max" has no Gemini
# counterpart above the largest shared budget.
EFFORT_BUDGETS: dict[str, int] = {
    "low": common.EFFORT_BUDGETS["low"],
    "medium": common.EFFORT_BUDGETS["medium"],
    "high": common.EFFORT_BUDGETS["high"],
    "xhigh": common.EFFORT_BUDGETS["xhigh"],
    "max": common.EFFORT_BUDGETS["xhigh"],
}
# Anthropic's default effort for adaptive thinking is "high".
DEFAULT_ADAPTIVE_EFFORT = "high"

# Anthropic with thinking on accepts only temperature 1, no top_k, and
# top_p >= 0.95 ("temperature may only be set to 1 when thinking is
# enabled"); the Claude upstream enforces the same.
_CLAUDE_THINKING_MIN_TOP_P = 0.95

# Assistant-side blocks that only Anthropic's own servers can act on.
_SERVER_BLOCKS = frozenset(
    {
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
    }
)

_STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
    # MALFORMED_FUNCTION_CALL: the content that did arrive is a finished turn.
    "error": "end_turn",
}

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_ID_ALPHABET = string.ascii_letters + string.digits

Json = dict[str, Any]


# --------------------------------------------------------------------- errors


def error_type(err: GatewayError) -> str:
    """The Anthropic ``error.type`` for one of our errors."""
    if err.kind == "no_account":
        # Nothing in the pool can serve right now: Anthropic clients (Claude
        # Code) back off and retry on overloaded_error.
        return "overloaded_error"
    known = _ERROR_TYPES.get(err.status)
    if known:
        return known
    return "invalid_request_error" if 400 <= err.status < 500 else "api_error"


def error_body(err: GatewayError) -> Json:
    """Anthropic's error shape: ``{"type": "error", "error": {type, message}}``."""
    message = err.anthropic_text() if isinstance(err, ContextTooLong) else err.message
    return {"type": "error", "error": {"type": error_type(err), "message": message}}


def _bad(path: str, message: str) -> BadRequest:
    # Anthropic names the field first: "messages.2.content.0.type: ...".
    return BadRequest(f"{path}: {message}", param=path)


# ------------------------------------------------------------ request: parsing


@dataclass
class _Msg:
    """One client message after merging consecutive same-role messages."""

    role: str
    blocks: list[tuple[str, Json]]  # (path for errors, block)

    def has(self, block_type: str) -> bool:
        return any(b["type"] == block_type for _, b in self.blocks)


@dataclass
class _Ctx:
    store: SignatureStore
    claude: bool
    tool_names: dict[str, str] = field(default_factory=dict)  # sanitized -> original
    ignored_blocks: set[str] = field(default_factory=set)
    dropped_thinking: int = 0

    def upstream_name(self, name: str) -> str:
        clean = common.sanitize_tool_name(name)
        if clean != name:
            self.tool_names.setdefault(clean, name)
        return clean


def _str_field(block: Json, key: str, path: str, *, required: bool = True) -> str:
    val = block.get(key)
    if val is None and not required:
        return ""
    if val is None:
        raise _bad(f"{path}.{key}", "Field required")
    if not isinstance(val, str):
        raise _bad(f"{path}.{key}", "Input should be a valid string")
    return val


def _number(body: Json, key: str, *, integer: bool = False) -> float | int | None:
    val = body.get(key)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, int | float) or (integer and isinstance(val, float)):
        raise _bad(key, f"Input should be a valid {'integer' if integer else 'number'}")
    return val


def _content_blocks(content: Any, path: str) -> list[tuple[str, Json]]:
    if content is None:
        raise _bad(path, "Field required")
    if isinstance(content, str):
        return [(path, {"type": "text", "text": content})]
    if not isinstance(content, list):
        raise _bad(path, "Input should be a valid string or a list of content blocks")
    out: list[tuple[str, Json]] = []
    for j, block in enumerate(content):
        bpath = f"{path}.{j}"
        if not isinstance(block, dict):
            raise _bad(bpath, "Input should be a valid dictionary")
        if not isinstance(block.get("type"), str):
            raise _bad(f"{bpath}.type", "Field required")
        out.append((bpath, block))
    return out


def _messages(body: Json) -> list[_Msg]:
    msgs = body.get("messages")
    if msgs is None:
        raise _bad("messages", "Field required")
    if not isinstance(msgs, list):
        raise _bad("messages", "Input should be a valid list")
    if not msgs:
        raise _bad("messages", "List should have at least 1 item")
    out: list[_Msg] = []
    for i, m in enumerate(msgs):
        path = f"messages.{i}"
        if not isinstance(m, dict):
            raise _bad(path, "Input should be a valid dictionary")
        role = m.get("role")
        if role == "system":
            continue  # Claude Code 2.1 sends system messages in the list: see _system
        if role not in ("user", "assistant"):
            raise _bad(f"{path}.role", "Input should be 'user', 'assistant' or 'system'")
        blocks = _content_blocks(m.get("content"), f"{path}.content")
        # Consecutive same-role messages are one turn upstream; merging here
        # keeps "the tool results of the previous assistant turn" well defined.
        if out and out[-1].role == role:
            out[-1].blocks.extend(blocks)
        else:
            out.append(_Msg(role, blocks))
    return out


# ------------------------------------------------------- request: media parts


def _source(block: Json, path: str) -> Json:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad(f"{path}.source", "Field required")
    if not isinstance(src.get("type"), str):
        raise _bad(f"{path}.source.type", "Field required")
    return src


def _inline(src: Json, path: str, default_mime: str | None = None) -> Json:
    data = _str_field(src, "data", f"{path}.source")
    mime = src.get("media_type") or default_mime
    if not isinstance(mime, str):
        raise _bad(f"{path}.source.media_type", "Field required")
    return {"inlineData": {"mimeType": mime, "data": data}}


def _file_uri(src: Json, path: str, mime: str) -> Json:
    url = _str_field(src, "url", f"{path}.source")
    # The upstream fetches public URLs itself (fileData).
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _no_files_api(path: str) -> BadRequest:
    return _bad(
        f"{path}.source.type",
        "file sources (Anthropic Files API) are not supported by this proxy; "
        "send the content as base64 or a URL instead",
    )


def _image_parts(block: Json, path: str) -> list[Json]:
    src = _source(block, path)
    kind = src["type"]
    if kind == "base64":
        return [_inline(src, path)]
    if kind == "url":
        url = _str_field(src, "url", f"{path}.source")
        return [_file_uri(src, path, common.guess_mime(url))]
    if kind == "file":
        raise _no_files_api(path)
    raise _bad(f"{path}.source.type", "Input should be 'base64' or 'url'")


def _document_parts(block: Json, path: str, ctx: _Ctx) -> list[Json]:
    src = _source(block, path)
    kind = src["type"]
    if kind == "base64":
        return [_inline(src, path, "application/pdf")]
    if kind == "text":
        part = common.text_part(_str_field(src, "data", f"{path}.source"))
        return [part] if part else []
    if kind == "url":
        return [_file_uri(src, path, "application/pdf")]
    if kind == "content":
        inner = src.get("content")
        return [
            p for bp, b in _content_blocks(inner, f"{path}.source.content") for p in _user_parts(b, bp, ctx)
        ]
    if kind == "file":
        raise _no_files_api(path)
    raise _bad(f"{path}.source.type", "Input should be 'base64', 'text', 'url' or 'content'")


def _search_result_text(block: Json, path: str) -> str:
    texts = [
        str(b.get("text") or "") for _, b in _content_blocks(block.get("content", []), f"{path}.content")
    ]
    head = " ".join(str(block.get(k) or "") for k in ("title", "source")).strip()
    return "\n".join(t for t in [head, *texts] if t)


def _user_parts(block: Json, path: str, ctx: _Ctx) -> list[Json]:
    """Parts for a non-tool-result content block (user side, or media anywhere)."""
    kind = block["type"]
    if kind == "text":
        part = common.text_part(_str_field(block, "text", path))
        return [part] if part else []
    if kind == "image":
        return _image_parts(block, path)
    if kind == "document":
        return _document_parts(block, path, ctx)
    if kind == "search_result":
        part = common.text_part(_search_result_text(block, path))
        return [part] if part else []
    ctx.ignored_blocks.add(kind)
    return []


# -------------------------------------------------------- request: tool results


def _tool_result_content(block: Json, path: str, ctx: _Ctx) -> tuple[str, list[Json]]:
    """(text for the functionResponse, media parts that follow it)."""
    content = block.get("content")
    if content is None:
        return "", []
    texts: list[str] = []
    media: list[Json] = []
    for bpath, b in _content_blocks(content, f"{path}.content"):
        if b["type"] == "tool_reference":
            # Claude Code's tool search answers with references; every tool
            # (deferred ones too) is declared upstream already.
            texts.append(f"Tool available: {b.get('tool_name', '')}")
            continue
        for part in _user_parts(b, bpath, ctx):
            if "text" in part:
                texts.append(part["text"])
            else:
                media.append(part)
    return "\n".join(texts), media


def _function_response(block: Json, path: str, name: str, ctx: _Ctx) -> tuple[Json, list[Json]]:
    text, media = _tool_result_content(block, path, ctx)
    key = "error" if block.get("is_error") else "result"
    resp = {"functionResponse": {"name": name, "id": block["tool_use_id"], "response": {key: text}}}
    return resp, media


def _missing_response(call_id: str, name: str) -> Json:
    return {"functionResponse": {"name": name, "id": call_id, "response": {"error": MISSING_RESULT}}}


def _orphan_result_parts(block: Json, path: str, ctx: _Ctx) -> list[Json]:
    """A tool_result whose tool_use is not in the previous assistant turn.

    The upstream (like Anthropic) rejects a functionResponse without its call;
    the result is kept for the model as plain text instead.
    """
    text, media = _tool_result_content(block, path, ctx)
    label = "error" if block.get("is_error") else "result"
    head = f"[tool {label} for {block['tool_use_id']}]"
    return [{"text": f"{head}\n{text}" if text else head}, *media]


def _user_turn(msg: _Msg, pending: dict[str, str], ctx: _Ctx) -> Json:
    """One user content; ``pending`` = tool_use id -> name of the previous turn.

    Function responses come first, in the order of the calls (Anthropic wants
    tool_result blocks first in the user message), then images returned by
    tools, then everything else in order. A call with no result is answered
    with an error response: the model learns the call did not run, and the
    upstream sees every call answered in the very next turn.
    """
    results: dict[str, tuple[Json, list[Json]]] = {}
    rest: list[Json] = []
    for path, b in msg.blocks:
        if b["type"] != "tool_result":
            if b["type"] in ("thinking", "tool_use") or b["type"] in _SERVER_BLOCKS:
                ctx.ignored_blocks.add(b["type"])
                continue
            rest.extend(_user_parts(b, path, ctx))
            continue
        call_id = _str_field(b, "tool_use_id", path)
        if call_id in pending and call_id not in results:
            results[call_id] = _function_response(b, path, pending[call_id], ctx)
        else:
            rest.extend(_orphan_result_parts(b, path, ctx))
    responses: list[Json] = []
    media: list[Json] = []
    for call_id, name in pending.items():
        resp, extra = results.get(call_id) or (_missing_response(call_id, name), [])
        responses.append(resp)
        media.extend(extra)
    return {"role": "user", "parts": [*responses, *media, *rest]}


# -------------------------------------------------------- request: model turns


def _claude_thought(block: Json, ctx: _Ctx) -> Json | None:
    """A thinking block as a Claude thought part, or None when it must be dropped."""
    sig = block.get("signature")
    if not isinstance(sig, str) or not sig or ctx.store.family(sig) != FAMILY_CLAUDE:
        return None
    text = ctx.store.thinking(sig) or block.get("thinking")
    if not isinstance(text, str) or not text:
        return None
    return {"text": text, "thought": True, "thoughtSignature": sig}


def _tool_call_part(block: Json, path: str, ctx: _Ctx, pending: dict[str, str]) -> Json:
    call_id = _str_field(block, "id", path)
    name = ctx.upstream_name(_str_field(block, "name", path))
    args = block.get("input")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _bad(f"{path}.input", "Input should be a valid dictionary")
    pending[call_id] = name
    return {"functionCall": {"name": name, "args": args, "id": call_id}}


def _model_turn(msg: _Msg, ctx: _Ctx) -> tuple[Json, dict[str, str]]:
    """One model content and the calls it makes (id -> upstream name)."""
    parts: list[Json] = []
    pending: dict[str, str] = {}
    searches: dict[str, Any] = {}  # server_tool_use id -> its input
    gemini_sig: str | None = None
    for path, b in msg.blocks:
        kind = b["type"]
        if kind == "thinking":
            if ctx.claude:
                thought = _claude_thought(b, ctx)
                if thought:
                    parts.append(thought)
                else:
                    ctx.dropped_thinking += 1
            elif gemini_sig is None:
                sig = b.get("signature")
                if isinstance(sig, str) and sig and ctx.store.family(sig) == FAMILY_GEMINI:
                    gemini_sig = sig
        elif kind == "tool_use":
            parts.append(_tool_call_part(b, path, ctx, pending))
        elif kind == "server_tool_use" and b.get("name") == web_search.FUNCTION_NAME:
            searches[str(b.get("id"))] = b.get("input")
        elif kind == "web_search_tool_result":
            parts.append(_search_note(b, searches))
        elif kind in _SERVER_BLOCKS or kind == "tool_result":
            ctx.ignored_blocks.add(kind)
        else:
            parts.extend(_user_parts(b, path, ctx))
    if not ctx.claude:
        _place_gemini_signature(parts, gemini_sig, ctx.store)
    return {"role": "model", "parts": parts}, pending


def _search_note(block: Json, searches: dict[str, Any]) -> Json:
    """A past web search (``server_tool_use`` + ``web_search_tool_result``)
    as a model-turn note (see ``protocols.web_search``)."""
    given = searches.get(str(block.get("tool_use_id")))
    query = given.get("query") if isinstance(given, dict) else None
    query = query if isinstance(query, str) else ""
    content = block.get("content")
    if not isinstance(content, list):
        return web_search.history_note(query, [], failed=True)
    sources: list[tuple[str, str]] = []
    answer: str | None = None
    for r in content:
        if not isinstance(r, dict) or not isinstance(r.get("url"), str):
            continue
        title = r.get("title")
        sources.append((title if isinstance(title, str) else "", r["url"]))
        found = web_search.carried(r.get("encrypted_content"))
        answer = answer or (found[1] if found else None)
    return web_search.history_note(query, sources, answer)


def _place_gemini_signature(parts: list[Json], turn_sig: str | None, store: SignatureStore) -> None:
    """Gemini: the turn's signature rides on its first functionCall, or on the
    last part when there is no call (UPSTREAM.md)."""
    first_call = next((p for p in parts if "functionCall" in p), None)
    if first_call is not None:
        known = store.tool_call(first_call["functionCall"]["id"])
        first_call["thoughtSignature"] = known or turn_sig or SKIP_SIGNATURE
    elif turn_sig and parts:
        parts[-1]["thoughtSignature"] = turn_sig


def _contents(msgs: list[_Msg], ctx: _Ctx) -> list[Json]:
    contents: list[Json] = []
    pending: dict[str, str] = {}
    for msg in msgs:
        if msg.role == "assistant":
            if pending:  # cannot happen after merging, kept for safety
                contents.append(_user_turn(_Msg("user", []), pending, ctx))
            turn, pending = _model_turn(msg, ctx)
            contents.append(turn)
        else:
            contents.append(_user_turn(msg, pending, ctx))
            pending = {}
    if pending:  # the last assistant turn called tools and got no results
        contents.append(_user_turn(_Msg("user", []), pending, ctx))
    return common.merge_turns(contents)


def _drop_prefill(msgs: list[_Msg]) -> bool:
    """Drop a trailing assistant message without tool calls.

    The upstream refuses prefill ("This model does not support assistant
    message prefill"); answering without it beats failing. A trailing
    assistant turn WITH tool calls is kept: its calls get error results, so
    the conversation ends with a user turn.
    """
    if msgs and msgs[-1].role == "assistant" and not msgs[-1].has("tool_use"):
        msgs.pop()
        return True
    return False


# ------------------------------------------------------------ request: tools


def _tools(body: Json, ctx: _Ctx, extra: Json | None = None) -> tuple[list[Json], list[str]]:
    """(functionDeclarations, names of ignored server tools). A web search
    tool (``web_search_20250305`` and later dates) becomes the gateway's
    ``web_search`` function and ``extra[web_search.EXTRA_KEY]`` (see
    ``protocols.web_search``)."""
    tools = body.get("tools")
    if tools is None:
        return [], []
    search: Json | None = None
    if not isinstance(tools, list):
        raise _bad("tools", "Input should be a valid list")
    decls: list[Json] = []
    ignored: list[str] = []
    seen: dict[str, str] = {}
    for i, tool in enumerate(tools):
        path = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _bad(path, "Input should be a valid dictionary")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            if not isinstance(kind, str):
                raise _bad(f"{path}.type", "Input should be a valid string")
            if kind.startswith("web_search_") and search is None:
                search = web_search.options(tool.get("max_uses"), tool.get("allowed_domains"))
                continue
            if anthropic_tools.is_server_tool(kind):
                # Run on Anthropic's side; the upstream has nothing to run them.
                ignored.append(str(tool.get("name") or kind))
                continue
            typed = anthropic_tools.declaration_parts(tool)
            if typed is None:
                raise _bad(
                    f"{path}.type",
                    f"the tool type {kind!r} is not supported by this proxy; known typed tools: "
                    + ", ".join(anthropic_tools.KNOWN)
                    + " (or declare it as a custom tool with an input_schema)",
                )
            typed_name, typed_desc, schema = typed
            decls.append(_declaration(typed_name, typed_desc, schema, path, seen, ctx))
            continue
        name = _str_field(tool, "name", path)
        if "input_schema" not in tool:
            raise _bad(f"{path}.input_schema", "Field required")
        given = tool.get("description")
        desc = given if isinstance(given, str) else None
        # defer_loading tools are sent too: the upstream has no tool search.
        decls.append(_declaration(name, desc, tool["input_schema"], path, seen, ctx))
    if search is not None:
        if web_search.FUNCTION_NAME in seen:
            # The client has its own tool of that name: it keeps it.
            ignored.append(web_search.FUNCTION_NAME)
        else:
            decls.append(web_search.declaration())
            if extra is not None:
                extra[web_search.EXTRA_KEY] = search
    return decls, ignored


def _declaration(
    name: str, desc: str | None, schema: Any, path: str, seen: dict[str, str], ctx: _Ctx
) -> Json:
    decl = common.function_declaration(name, desc, schema)
    if decl["name"] in seen and seen[decl["name"]] != name:
        raise _bad(
            f"{path}.name",
            f"{name!r} and {seen[decl['name']]!r} map to the same upstream tool name",
        )
    seen[decl["name"]] = name
    ctx.upstream_name(name)
    return decl


def _tool_config(body: Json, ctx: _Ctx, declared: set[str]) -> tuple[Json | None, bool]:
    """(toolConfig, forces a tool call)."""
    choice = body.get("tool_choice")
    if choice is None or not declared:
        return None, False
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise _bad("tool_choice.type", "Field required")
    kind = choice["type"]
    # disable_parallel_tool_use has no Gemini counterpart; it is ignored.
    if kind == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}, False
    if kind == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}, False
    if kind == "any":
        return {"functionCallingConfig": {"mode": "ANY"}}, True
    if kind == "tool":
        name = ctx.upstream_name(_str_field(choice, "name", "tool_choice"))
        if name not in declared:
            raise _bad("tool_choice.name", f"no tool named {choice['name']!r} in tools")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}, True
    raise _bad("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")


# --------------------------------------------------------- request: settings


def _system(body: Json) -> Json | None:
    system = body.get("system")
    parts: list[Json] = []
    if system is None:
        system = []
    if isinstance(system, str):
        part = common.text_part(system)
        parts = [part] if part else []
    elif isinstance(system, list):
        for i, block in enumerate(system):
            path = f"system.{i}"
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"{path}.type", "Input should be 'text'")
            part = common.text_part(_str_field(block, "text", path))  # cache_control dropped
            if part:
                parts.append(part)
    else:
        raise _bad("system", "Input should be a valid string or a list of text blocks")
    # Claude Code 2.1.x also sends {"role": "system"} entries inside
    # `messages` (seen on the wire); Gemini has one systemInstruction, so
    # their text joins it, in order.
    for i, m in enumerate(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "system":
            content = m.get("content")
            if isinstance(content, str):
                texts = [content]
            elif isinstance(content, list):
                texts = [
                    b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
                ]
            else:
                raise _bad(f"messages.{i}.content", "Input should be a valid string or a list of text blocks")
            parts.extend(p for p in (common.text_part(t) for t in texts if isinstance(t, str)) if p)
    # systemInstruction is a Content, never a string (UPSTREAM.md).
    return {"role": "user", "parts": parts} if parts else None


def _effort(body: Json) -> str | None:
    cfg = body.get("output_config")
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise _bad("output_config", "Input should be a valid dictionary")
    effort = cfg.get("effort")
    if effort is None:
        return None
    if effort not in EFFORT_BUDGETS:
        raise _bad("output_config.effort", "Input should be " + ", ".join(repr(e) for e in EFFORT_BUDGETS))
    return str(effort)


def _hidden_effort(body: Json, max_tokens: int | None) -> tuple[Json | None, int | None]:
    """``output_config.effort`` without thinking asked for, on a Gemini model.

    Anthropic's effort steers how much work the model does whether or not
    thinking blocks are shown. Gemini models think in any case, so the effort
    becomes their thinking budget with the thoughts kept out of the answer
    (``includeThoughts: false``); ``rules.apply`` then fits the budget (or a
    level) to the model. Claude models get nothing: thinking the client did
    not ask for would put thinking blocks into its tool loops, which it could
    not send back. An explicit ``thinking: {"type": "disabled"}`` wins.
    """
    effort = _effort(body)
    if effort is None or body.get("thinking") is not None:
        return None, max_tokens
    config, max_out = common.thinking_config(EFFORT_BUDGETS[effort], max_tokens)
    if config is not None:
        config["includeThoughts"] = False
    return config, max_out


def _thinking_budget(body: Json, max_tokens: int | None) -> tuple[int | None, str | None]:
    """(budget or None for no thinking, display)."""
    effort = _effort(body)
    th = body.get("thinking")
    if th is None:
        # Effort alone does not turn thinking on: Anthropic returns no
        # thinking blocks unless thinking is asked for.
        return None, None
    if not isinstance(th, dict):
        raise _bad("thinking", "Input should be a valid dictionary")
    kind = th.get("type")
    display = th.get("display")
    if display is not None and display not in ("summarized", "omitted"):
        raise _bad("thinking.display", "Input should be 'summarized' or 'omitted'")
    if kind == "disabled":
        return None, None
    if kind == "enabled":
        budget = th.get("budget_tokens")
        if budget is None:
            raise _bad("thinking.budget_tokens", "Field required")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise _bad("thinking.budget_tokens", "Input should be a valid integer")
    elif kind in ("adaptive", "between_tools"):
        budget = EFFORT_BUDGETS[effort or DEFAULT_ADAPTIVE_EFFORT]
        if max_tokens is not None:
            # Anthropic counts thinking inside max_tokens; adaptive thinking
            # stays inside the client's ceiling.
            budget = min(budget, max_tokens - 1)
    else:
        raise _bad("thinking.type", "Input should be 'enabled', 'adaptive' or 'disabled'")
    # Budgets below 1024 mean no thinking upstream (Anthropic's minimum too).
    if budget < common.MIN_THINKING_BUDGET:
        return None, display
    return budget, display


def _max_tokens(body: Json, *, required: bool) -> int | None:
    if body.get("max_tokens") is None:
        if required:
            raise _bad("max_tokens", "Field required")
        return None
    val = _number(body, "max_tokens", integer=True)
    assert isinstance(val, int)
    if val < 1:
        raise _bad("max_tokens", "Input should be greater than or equal to 1")
    return val


def _stop_sequences(body: Json) -> list[str]:
    stops = body.get("stop_sequences")
    if stops is None:
        return []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("stop_sequences", "Input should be a valid list of strings")
    return [s for s in stops if s]


def _sampling(body: Json, *, claude_thinking: bool) -> Json:
    temperature = _number(body, "temperature")
    top_p = _number(body, "top_p")
    top_k = _number(body, "top_k", integer=True)
    out: Json = {}
    if claude_thinking:
        # See _CLAUDE_THINKING_MIN_TOP_P: values Anthropic would refuse are
        # dropped rather than turned into an upstream 400.
        temperature = 1 if temperature == 1 else None
        top_k = None
        top_p = top_p if top_p is not None and top_p >= _CLAUDE_THINKING_MIN_TOP_P else None
    if temperature is not None:
        out["temperature"] = temperature
    if top_p is not None:
        out["topP"] = top_p
    if top_k is not None:
        out["topK"] = top_k
    return out


def session_key_from_metadata(body: Json) -> str | None:
    """``metadata.user_id`` -> a sticky-session key.

    Claude Code 2.x sends a JSON string holding ``session_id``; 1.x sent
    ``user_<hash>_account_<uuid>_session_<uuid>``. Anything else is used whole.
    """
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return None
    user_id = meta.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        return None
    try:
        parsed = json.loads(user_id)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str) and parsed["session_id"]:
        return str(parsed["session_id"])
    if "_session_" in user_id:
        return user_id.rsplit("_session_", 1)[1] or user_id
    return user_id


# --------------------------------------------------------- request: assembly


@dataclass
class _Translated:
    contents: list[Json]
    system: Json | None
    tools: list[Json]
    tool_config: Json | None
    generation: Json
    thinking: bool
    extra: Json


def _translate(body: Any, *, model: str, store: SignatureStore, for_count: bool) -> _Translated:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    ctx = _Ctx(store=store, claude=common.is_claude(model))
    extra: Json = {}
    max_tokens = _max_tokens(body, required=not for_count)
    budget, display = _thinking_budget(body, max_tokens)
    if display:
        extra[EXTRA_THINKING_DISPLAY] = display

    msgs = _messages(body)
    if _drop_prefill(msgs):
        extra[EXTRA_DROPPED_PREFILL] = True
    decls, ignored_tools = _tools(body, ctx, extra)
    tool_config, forced = _tool_config(body, ctx, {d["name"] for d in decls})
    contents = _contents(msgs, ctx)
    if not contents or contents[-1]["role"] != "user":
        raise _bad("messages", "the conversation must end with a user message that has content")

    thinking = budget is not None
    if thinking and ctx.claude and forced:
        # Anthropic: "Thinking may not be enabled when tool_choice forces tool use."
        thinking, extra[EXTRA_THINKING_OFF] = False, "tool_choice forces tool use"
    if thinking and ctx.claude and not shared_extra.claude_thinking_allowed(contents):
        thinking = False
        extra[EXTRA_THINKING_OFF] = "the last tool-use turn has no thinking block this proxy signed"
    if ctx.claude and not thinking:
        contents = shared_extra.strip_thoughts(contents)

    generation: Json = _sampling(body, claude_thinking=thinking and ctx.claude)
    stops = _stop_sequences(body)
    if stops:
        generation["stopSequences"] = stops
        extra[EXTRA_STOP_SEQUENCES] = stops
    think_cfg, max_out = common.thinking_config(budget if thinking else None, max_tokens)
    if think_cfg is None and not ctx.claude:
        think_cfg, max_out = _hidden_effort(body, max_tokens)
    if max_out is not None:
        generation["maxOutputTokens"] = max_out
    if think_cfg is not None:
        generation["thinkingConfig"] = think_cfg

    if ctx.tool_names:
        extra[EXTRA_TOOL_NAMES] = dict(ctx.tool_names)
    if ignored_tools:
        extra[EXTRA_IGNORED_TOOLS] = ignored_tools
    if ctx.ignored_blocks:
        extra[EXTRA_IGNORED_BLOCKS] = sorted(ctx.ignored_blocks)
    if ctx.dropped_thinking:
        extra[EXTRA_DROPPED_THINKING] = ctx.dropped_thinking
    return _Translated(contents, _system(body), decls, tool_config, generation, thinking, extra)


def to_gemini(body: Json, *, model: str, store: SignatureStore) -> GeminiCall:
    """An Anthropic Messages request -> a Gemini GenerateContentRequest."""
    client_model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(client_model, str) or not client_model:
        raise _bad("model", "Field required")
    t = _translate(body, model=model, store=store, for_count=False)
    request: Json = {"contents": t.contents}
    if t.system:
        request["systemInstruction"] = t.system
    if t.tools:
        request["tools"] = [{"functionDeclarations": t.tools}]
    if t.tool_config:
        request["toolConfig"] = t.tool_config
    if t.generation:
        request["generationConfig"] = t.generation
    return GeminiCall(
        request=request,
        client_model=client_model,
        model=model,
        stream=body.get("stream") is True,
        session_key=session_key_from_metadata(body),
        thinking=t.thinking,
        extra=t.extra,
    )


def count_tokens_request(body: Json, *, model: str, store: SignatureStore) -> Json:
    """A /v1/messages/count_tokens body -> the upstream countTokens body."""
    t = _translate(body, model=model, store=store, for_count=True)
    request: Json = {"model": model, "contents": t.contents}
    if t.system:
        request["systemInstruction"] = t.system
    if t.tools:
        request["tools"] = [{"functionDeclarations": t.tools}]
    return {"request": request}


# ------------------------------------------------------------------ answers


def new_message_id() -> str:
    return "msg_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _tool_use_id(message_id: str, n: int) -> str:
    # Gemini models often send calls without ids; derive one per call from
    # the message id so answers stay reproducible for a given id.
    return "toolu_" + hashlib.sha256(f"{message_id}:{n}".encode()).hexdigest()[:24]


def _family(call: GeminiCall) -> str:
    return FAMILY_CLAUDE if common.is_claude(call.model) else FAMILY_GEMINI


def _usage(meta: dict[str, Any] | None, searches: int = 0) -> Json:
    u = common.usage_from_gemini(meta)
    out: Json = {
        # Anthropic's input_tokens exclude cache reads (total = sum of the three).
        "input_tokens": max(u.input_tokens - u.cached_tokens, 0),
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    }
    if searches:
        out["server_tool_use"] = {"web_search_requests": searches, "web_fetch_requests": 0}
    return out


def _stop_reason(resp_finish: str | None, *, had_tool_calls: bool, blocked: bool) -> str:
    if blocked:
        return "refusal"
    neutral = common.finish_reason(resp_finish, had_tool_calls=had_tool_calls)
    return _STOP_REASONS[neutral]


def _stop(
    call: GeminiCall, resp_finish: str | None, *, had_tool_calls: bool, blocked: bool
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence).

    Gemini answers finishReason STOP both for a natural end and for a matched
    stop sequence, and leaves the sequence out of the text, so which one
    happened cannot be read from the answer. The decision: when the request
    gave stop_sequences and the turn ended with STOP without tool calls, it
    is reported as ``stop_sequence`` (a client that sets them is waiting for
    one, and a turn that ends early is far more often the sequence than the
    model's own end); ``stop_sequence`` names the sequence when there was only
    one, else it is null (which one matched cannot be told).
    """
    reason = _stop_reason(resp_finish, had_tool_calls=had_tool_calls, blocked=blocked)
    stops = call.extra.get(EXTRA_STOP_SEQUENCES) or []
    if reason == "end_turn" and stops and (resp_finish or "STOP") == "STOP":
        return "stop_sequence", stops[0] if len(stops) == 1 else None
    return reason, None


class _Blocks:
    """Gemini parts in, Anthropic raw content-block events out.

    One state machine for both answers: the stream sends these events as
    they come, the non-stream answer folds them into blocks.
    """

    def __init__(self, call: GeminiCall, store: SignatureStore, message_id: str) -> None:
        self._store = store
        self._family = _family(call)
        self._names: dict[str, str] = call.extra.get(EXTRA_TOOL_NAMES) or {}
        self._message_id = message_id
        self._index = -1
        self._open: str | None = None  # "thinking" | "text" | None
        self._thinking: list[str] = []
        self._calls = 0
        self.had_tool_calls = False
        self.searches = 0
        self._cite: list[Json] = []  # citations for the next text block (web search)

    # -- events
    def _start(self, block: Json) -> Json:
        self._index += 1
        self._open = block["type"]
        return {"type": "content_block_start", "index": self._index, "content_block": block}

    def _delta(self, delta: Json) -> Json:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}

    def close(self) -> list[Json]:
        if self._open is None:
            return []
        self._open = None
        self._thinking = []
        return [{"type": "content_block_stop", "index": self._index}]

    def _remember(self, sig: str, text: str) -> None:
        self._store.put_family(sig, self._family)
        self._store.put_thinking(sig, text)

    def _sign(self, sig: str) -> list[Json]:
        """Close the open thinking block with its signature."""
        self._remember(sig, "".join(self._thinking))
        return [self._delta({"type": "signature_delta", "signature": sig}), *self.close()]

    # -- parts
    def part(self, part: Json) -> list[Json]:
        found = part.get(web_search.SEARCH_PART)
        if isinstance(found, dict):
            return self._search(found)
        sig = part.get("thoughtSignature")
        sig = sig if isinstance(sig, str) and sig else None
        if isinstance(part.get("functionCall"), dict):
            return self._function_call(part["functionCall"], sig)
        text = part.get("text")
        text = text if isinstance(text, str) else ""
        if part.get("thought"):
            return self._thought(text, sig)
        events: list[Json] = []
        if sig and self._open == "thinking" and self._family == FAMILY_GEMINI:
            # Gemini puts the turn's signature on a later part (a carrier or
            # the last text): give it to the thinking block it belongs to.
            events += self._sign(sig)
        if text:
            if self._open != "text":
                events += self.close()
                events.append(self._start({"type": "text", "text": ""}))
            events.append(self._delta({"type": "text_delta", "text": text}))
            # The text after a search cites its sources, as Anthropic's
            # citations_delta events do.
            events += [self._delta({"type": "citations_delta", "citation": c}) for c in self._cite]
            self._cite = []
        return events  # inlineData and other parts have no Anthropic block

    def _search(self, res: Json) -> list[Json]:
        """A search the gateway ran (``protocols.web_search``): a
        ``server_tool_use`` block and its ``web_search_tool_result``."""
        events = self.close()
        self.searches += 1
        digest = hashlib.sha256(f"{self._message_id}:search:{self.searches}".encode()).hexdigest()
        tool_id = "srvtoolu_" + digest[:24]
        events.append(
            self._start({"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {}})
        )
        query = json.dumps({"query": res.get("query", "")}, ensure_ascii=False)
        events.append(self._delta({"type": "input_json_delta", "partial_json": query}))
        events += self.close()
        content: Any
        if res.get("error"):
            content = {"type": "web_search_tool_result_error", "error_code": "unavailable"}
        else:
            # encrypted_content is opaque to clients, which send it back: the
            # first result carries the search's answer for later turns
            # (web_search.carry, read back by _model_turn).
            content = [
                {
                    "type": "web_search_result",
                    "url": s["url"],
                    "title": s["title"],
                    "encrypted_content": web_search.carry(res) if i == 0 else "",
                    "page_age": None,
                }
                for i, s in enumerate(res.get("sources") or [])
            ]
        block = {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": content}
        events.append(self._start(block))
        events += self.close()
        self._cite = [
            {
                "type": "web_search_result_location",
                "url": url,
                "title": title,
                "cited_text": (cited or title)[:150],
                "encrypted_index": "",
            }
            for url, title, cited in web_search.citation_sources(res)
        ]
        return events

    def _thought(self, text: str, sig: str | None) -> list[Json]:
        events: list[Json] = []
        if text or (sig and self._open != "thinking"):
            if self._open != "thinking":
                events += self.close()
                events.append(self._start({"type": "thinking", "thinking": "", "signature": ""}))
            if text:
                self._thinking.append(text)
                events.append(self._delta({"type": "thinking_delta", "thinking": text}))
        if sig:
            # Claude closes each thinking segment with its own signature.
            events += self._sign(sig)
        return events

    def _function_call(self, fc: Json, sig: str | None) -> list[Json]:
        events: list[Json] = []
        if sig and self._open == "thinking":
            events += self._sign(sig)
        events += self.close()
        call_id = fc.get("id") if isinstance(fc.get("id"), str) and fc.get("id") else None
        call_id = call_id or _tool_use_id(self._message_id, self._calls)
        self._calls += 1
        self.had_tool_calls = True
        if sig:
            # Gemini validates the signature on this very part: keep it by
            # tool_use id, so it comes back even if the client drops thinking.
            self._store.put_tool_call(call_id, sig)
            self._store.put_family(sig, self._family)
        name = str(fc.get("name") or "")
        args = fc.get("args") if isinstance(fc.get("args"), dict) else {}
        events.append(
            self._start(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": self._names.get(name, name),
                    "input": {},
                }
            )
        )
        events.append(
            self._delta({"type": "input_json_delta", "partial_json": json.dumps(args, ensure_ascii=False)})
        )
        events += self.close()
        return events


def _fold(blocks: list[Json], event: Json) -> None:
    """Apply one content-block event to a list of finished blocks."""
    if event["type"] == "content_block_start":
        blocks.append(dict(event["content_block"]))
        return
    if event["type"] != "content_block_delta":
        return
    block, delta = blocks[event["index"]], event["delta"]
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "input_json_delta":
        block["input"] = json.loads(delta["partial_json"])
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta["citation"])


def from_gemini(resp: Json, *, call: GeminiCall, store: SignatureStore) -> Json:
    """A GenerateContentResponse -> an Anthropic Message."""
    message_id = str(call.extra.get(EXTRA_ID) or new_message_id())
    machine = _Blocks(call, store, message_id)
    blocks: list[Json] = []
    for part in common.parts_of(resp):
        for event in machine.part(part):
            _fold(blocks, event)
    machine.close()
    stop, sequence = _stop(
        call,
        common.finish_of(resp),
        had_tool_calls=machine.had_tool_calls,
        blocked=bool(common.prompt_blocked(resp)),
    )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": call.client_model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": sequence,
        "usage": _usage(resp.get("usageMetadata"), machine.searches),
    }


# ------------------------------------------------------------------- stream

PING = common.sse_json({"type": "ping"}, "ping")


def _events(events: Iterable[Json]) -> bytes:
    return b"".join(common.sse_json(e, e["type"]) for e in events)


class StreamTranslator:
    """Gemini stream chunks -> Anthropic SSE events.

    ``message_start`` waits for the first chunk so it can carry the prompt's
    token count (and so nothing reaches the client before the upstream has
    answered: the route can still retry elsewhere).
    """

    def __init__(self, call: GeminiCall, store: SignatureStore) -> None:
        self._call = call
        self._id = str(call.extra.get(EXTRA_ID) or new_message_id())
        self._blocks = _Blocks(call, store, self._id)
        self._started = False
        self._done = False
        self._meta: dict[str, Any] | None = None
        self._finish: str | None = None
        self._blocked = False

    def start(self) -> bytes:
        return b""

    def _message_start(self) -> list[Json]:
        if self._started:
            return []
        self._started = True
        usage = _usage(self._meta)
        usage["output_tokens"] = 0
        message: Json = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._call.client_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [{"type": "message_start", "message": message}]

    def feed(self, chunk: Json) -> bytes:
        if self._done:
            return b""
        if isinstance(chunk.get("usageMetadata"), dict):
            self._meta = chunk["usageMetadata"]
        events = self._message_start()
        for part in common.parts_of(chunk):
            events += self._blocks.part(part)
        self._finish = common.finish_of(chunk) or self._finish
        self._blocked = self._blocked or bool(common.prompt_blocked(chunk))
        return _events(events)

    def finish(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        events = self._message_start() + self._blocks.close()
        stop, sequence = _stop(
            self._call, self._finish, had_tool_calls=self._blocks.had_tool_calls, blocked=self._blocked
        )
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": sequence},
                "usage": _usage(self._meta, self._blocks.searches),
            }
        )
        events.append({"type": "message_stop"})
        return _events(events)

    def fail(self, err: GatewayError) -> bytes:
        if self._done:
            return b""
        self._done = True
        return common.sse_json(error_body(err), "error")

    def keepalive(self) -> bytes:
        return PING
