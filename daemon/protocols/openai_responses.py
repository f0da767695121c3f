"""OpenAI Responses API (``/v1/responses``, what Codex speaks) <-> Gemini.

Request: ``instructions`` and system/developer messages become
``systemInstruction``; input items (after the ``history`` items the route
fetched for ``previous_response_id``) become ``contents``: messages, function
and custom tool calls and their outputs, reasoning items. Answer: a
``response`` object, or the typed event stream (``response.created`` ...
``response.completed``), every event with its ``sequence_number``.

Tools: ``function`` tools become functionDeclarations; ``custom`` tools (Codex's
freeform apply_patch) become a declaration with one string parameter
``input`` and come back as ``custom_tool_call`` items; ``web_search`` (any
model, next to function tools or alone: Codex sends it on every request)
becomes the gateway's ``web_search`` function, run as a separate search
call and answered as ``web_search_call`` items with ``url_citation``
annotations on the text after them (``protocols.web_search``; Google
refuses ``googleSearch`` next to function declarations); ``image_generation``
becomes the gateway's ``image_generation(prompt)`` function, run on the
catalog's image model and answered as ``image_generation_call`` items
(``protocols.image_generation``; earlier such items in the input become a
model-turn note, as do earlier ``web_search_call`` items); ``namespace``
tools (Codex's MCP servers and ``multi_agent_v1``) are flattened to
``<namespace>__<tool>`` declarations and their calls answered as
``function_call`` items carrying ``namespace`` and the tool's own ``name``
(see ``_namespace``); every other built-in tool is
skipped and listed in ``call.extra["ignored_tools"]``. Log probabilities
(``top_logprobs``, ``include: ["message.output_text.logprobs"]``) are a 400.

Reasoning: thought text becomes a reasoning item whose summary is that text
(shown whether or not ``reasoning.summary`` was asked for: the upstream has
no separate summary). Signatures: with ``include:
["reasoning.encrypted_content"]`` the signature rides in a reasoning item's
``encrypted_content`` (an encoding, not encryption: the client's own
thinking text and Google's opaque signature) so it round-trips without
server state; for Gemini it sits in the reasoning item just before the call
it belongs to (one of its own if text came between). The SignatureStore
(by call id) backs it up for clients that do not ask for it. Reasoning
items the proxy did not issue are dropped.

Compaction items (``{"type": "compaction", "encrypted_content"}``, which the
gateway hands Codex when it compacts, see ``openai_compaction``) are opened
with the ``unseal`` callable the route passes and go upstream as a user turn
that says it is the summary of the earlier turns; one that does not open is
an ``UnreadableCompaction`` 400, never dropped.

``call.extra``: reads ``id`` (the route should set it: it keys the history
store), ``created``; writes ``echo`` (request fields the response object
repeats), ``tool_names``, ``tool_kinds``, ``tool_namespaces`` (upstream name ->
[namespace, tool name]), ``ignored_tools``, ``ignored_items``,
``include_encrypted``, ``store``, ``previous_response_id``, ``notes``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from daemon.errors import BadRequest, ContextTooLong, GatewayError, RateLimited, UnreadableCompaction
from daemon.protocols import GeminiCall, common, image_generation, shared_extra, web_search
from daemon.protocols.openai_chat import (
    KEEPALIVE,
    add_thinking,
    answer_id,
    client_tool_name,
    finish_request,
    json_output_config,
    new_timestamp,
    number_param,
    openai_finish,
    refuse_logprobs,
    require_object,
    thinking_on,
    tool_config,
)
from daemon.protocols.shared_extra import Piece, SignatureRecorder
from daemon.protocols.signatures import SignatureStore

ENCRYPTED_PREFIX = "ag1."
_WEB_SEARCH = frozenset(
    {"web_search", "web_search_preview", "web_search_preview_2025_03_11", "web_search_2025_08_26"}
)
_ECHO_KEYS = (
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "user",
)
_SYSTEM_ROLES = ("system", "developer")
#: Opens a compaction item's ``encrypted_content``: the summary, or None when
#: it cannot be opened (``daemon.compaction.Sealer.open``).
Unseal = Callable[[str], str | None]
# Codex reads a "compaction_summary" item as a compaction item too (its
# ResponseItem::Compaction carries that serde alias).
COMPACTION_ITEMS = ("compaction", "compaction_summary")
SUMMARY_PREFIX = (
    "Summary of the earlier part of this conversation, written when it was compacted; "
    "it stands in for those turns, which are no longer shown:\n\n"
)


# ==================================================================== encrypted


def encode_reasoning(model_family: str, signature: str, text: str | None) -> str:
    payload: dict[str, str] = {"f": model_family, "s": signature}
    if text:
        payload["t"] = text  # Claude checks the text against the signature
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(raw).decode()


def decode_reasoning(value: Any) -> tuple[str, str, str | None] | None:
    """(family, signature, text) from an encrypted_content this proxy issued;
    None for anything else (another provider's blob is meaningless upstream)."""
    if not isinstance(value, str) or not value.startswith(ENCRYPTED_PREFIX):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(value[len(ENCRYPTED_PREFIX) :]))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
        return None
    text = payload.get("t")
    return str(payload.get("f")), payload["s"], text if isinstance(text, str) else None


# ===================================================================== request


def _search_note(item: dict[str, Any], answer: str | None = None) -> dict[str, Any] | None:
    """A ``web_search_call`` input item as a model-turn note. Its ``action``
    is ``{"type": "search", "query"?, "queries"?, "sources"?: [{"type":
    "url", "url"}]}`` (Codex sends back ``query`` and ``queries`` only)."""
    given = item.get("action")
    action: dict[str, Any] = given if isinstance(given, dict) else {}
    queries = [q for q in action.get("queries") or [] if isinstance(q, str) and q.strip()]
    query = str(action["query"]) if isinstance(action.get("query"), str) else ""
    if not query.strip() and queries:
        query = "; ".join(queries)
    sources = [
        ("", src["url"])
        for src in action.get("sources") or []
        if isinstance(src, dict) and isinstance(src.get("url"), str)
    ]
    if not query.strip() and not sources and not answer:
        return None
    return web_search.history_note(query, sources, answer, failed=item.get("status") == "failed")


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string input is one user
    message): what the route stores, with the output items, as history."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if isinstance(value, list):
        return value
    if value is None:
        return []
    raise BadRequest("input must be a string or a list of input items", param="input")


def output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The output items of a response object, for the route's history store."""
    output = response.get("output")
    return list(output) if isinstance(output, list) else []


class _Tools:
    def __init__(self) -> None:
        self.decls: list[dict[str, Any]] = []
        self.names: dict[str, str] = {}  # sanitized -> client name
        self.kinds: dict[str, str] = {}  # sanitized -> "function" | "custom"
        self.namespaces: dict[str, list[str]] = {}  # upstream name -> [namespace, tool name]
        self.search: dict[str, Any] | None = None  # web_search.options
        self.image: dict[str, Any] | None = None  # image_generation.options
        self.ignored: list[str] = []

    def add(self, param: str, tool: dict[str, Any], namespace: str | None = None) -> None:
        kind, name = tool.get("type"), tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{param}.name is required", param=f"{param}.name")
        upstream = namespaced_name(namespace, name) if namespace else name
        if kind == "function":
            desc = tool.get("description")
            decl = common.function_declaration(
                upstream, desc if isinstance(desc, str) else None, tool.get("parameters")
            )
        else:
            decl = _custom_declaration(tool, upstream)
        if decl["name"] in self.kinds:
            return  # declared twice: the first declaration stands
        self.decls.append(decl)
        self.kinds[decl["name"]] = str(kind)
        if namespace:
            self.namespaces[decl["name"]] = [namespace, name]
        else:
            self.names[decl["name"]] = name


# Upstream function names: at most 64 characters of [A-Za-z0-9_.:-]
# (UPSTREAM.md §6.3); a namespaced tool is flattened as "<namespace>__<tool>".
_MAX_NAME = 64


def namespaced_name(namespace: str, name: str) -> str:
    """The upstream function name of tool ``name`` in ``namespace``: the two
    joined by ``__`` (Codex's MCP tools become ``mcp__server__tool``), made
    safe for the upstream; a long name keeps its head and gets a hash of the
    whole, so two long names never meet. The same input always gives the
    same name: calls in the history map the same way as the declarations."""
    joined = f"{namespace}__{name}"
    clean = common.sanitize_tool_name(joined)
    if len(joined) > _MAX_NAME:
        digest = shared_extra.derived_hex(joined, "ns", 8)
        clean = common.sanitize_tool_name(joined[: _MAX_NAME - 9]) + "_" + digest
    return clean


def _custom_declaration(tool: dict[str, Any], name: str) -> dict[str, Any]:
    desc = tool.get("description") if isinstance(tool.get("description"), str) else ""
    fmt = tool.get("format")
    hint = "The raw input for the tool."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax", "")
        hint = f"The raw input; it must follow this {syntax} grammar:\n{fmt['definition']}"
    schema = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": hint}},
        "required": ["input"],
    }
    return common.function_declaration(name, desc or None, schema)


def _tools(raw: Any, model: str) -> _Tools:
    out = _Tools()
    if raw is None:
        return out
    if not isinstance(raw, list):
        raise BadRequest("tools must be a list", param="tools")
    for i, tool in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise BadRequest(f"{param} must be an object", param=param)
        kind = tool.get("type")
        if kind in ("function", "custom"):
            out.add(param, tool)
        elif kind == "namespace":
            _namespace(out, param, tool)
        elif kind in _WEB_SEARCH:
            if out.search is None:
                filters = tool.get("filters")
                domains = filters.get("allowed_domains") if isinstance(filters, dict) else None
                out.search = web_search.options(None, domains)
        elif kind == image_generation.TOOL_TYPE:
            if out.image is None:
                out.image = image_generation.options(tool, param)
        else:
            out.ignored.append(str(kind))
    if out.search is not None:
        if web_search.FUNCTION_NAME in out.kinds:
            # The client has its own tool of that name: it keeps it.
            out.search = None
            out.ignored.append("web_search")
        else:
            out.decls.append(web_search.declaration())
    if out.image is not None:
        if image_generation.FUNCTION_NAME in out.kinds:
            out.image = None
            out.ignored.append(image_generation.TOOL_TYPE)
        else:
            out.decls.append(image_generation.declaration())
    return out


def _namespace(out: _Tools, param: str, tool: dict[str, Any]) -> None:
    """A ``namespace`` tool (Codex: one per MCP server, ``mcp__<server>``, and
    ``multi_agent_v1``): its function and custom tools become declarations
    named ``<namespace>__<tool>``; the namespace's description is prefixed
    to each tool's, so the model still reads what the group is for.

    Published shape (OpenAI Responses ``NamespaceTool``): ``{"type":
    "namespace", "name", "description", "tools": [function or custom tools]}``;
    a call to one of them is a ``function_call`` item whose ``name`` is the
    tool's own name and whose ``namespace`` is the namespace's name (Codex
    reads the pair back as the tool to run).
    """
    name = tool.get("name")
    members = tool.get("tools")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{param}.name is required", param=f"{param}.name")
    if not isinstance(members, list):
        raise BadRequest(f"{param}.tools must be a list", param=f"{param}.tools")
    group = tool.get("description") if isinstance(tool.get("description"), str) else ""
    for j, member in enumerate(members):
        mparam = f"{param}.tools[{j}]"
        if not isinstance(member, dict):
            raise BadRequest(f"{mparam} must be an object", param=mparam)
        if member.get("type") not in ("function", "custom"):
            out.ignored.append(f"{name}.{member.get('type')}")
            continue
        if group:
            own = member.get("description") if isinstance(member.get("description"), str) else ""
            member = {**member, "description": f"{group}\n\n{own}" if own else group}
        out.add(mparam, member, namespace=name)


def _text_value(item: dict[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{param}.{key} must be a string", param=f"{param}.{key}")
    return value


def _image(item: dict[str, Any], param: str) -> dict[str, Any]:
    url = item.get("image_url")
    if not isinstance(url, str):
        raise BadRequest(
            f"{param}: uploaded file ids are not supported;"
            " send the image as image_url (a data: or https URL)",
            param=f"{param}.image_url",
        )
    try:
        return common.image_part(url)
    except BadRequest as exc:
        raise BadRequest(f"{param}.image_url: {exc.message}", param=f"{param}.image_url") from None


def _file(item: dict[str, Any], param: str) -> dict[str, Any]:
    data = item.get("file_data")
    if isinstance(data, str):
        if data.startswith("data:"):
            try:
                return common.image_part(data)
            except BadRequest as exc:
                raise BadRequest(f"{param}.file_data: {exc.message}", param=f"{param}.file_data") from None
        name = item.get("filename")
        mime = common.guess_mime(name) if isinstance(name, str) else "application/pdf"
        return {"inlineData": {"mimeType": mime, "data": data}}
    url = item.get("file_url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"fileData": {"mimeType": common.guess_mime(url), "fileUri": url}}
    raise BadRequest(
        f"{param}: uploaded file ids are not supported; send the file inline as file_data",
        param=f"{param}.file_id",
    )


def _content(content: Any, *, param: str, role: str) -> list[dict[str, Any]]:
    """Message content (a string or typed parts) -> Gemini parts."""
    if isinstance(content, str):
        text = common.text_part(content)
        return [text] if text else []
    if not isinstance(content, list):
        raise BadRequest(f"{param} must be a string or a list of content parts", param=param)
    parts: list[dict[str, Any]] = []
    for j, item in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{p} must be an object", param=p)
        kind = item.get("type")
        part: dict[str, Any] | None
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            part = common.text_part(_text_value(item, "text", p))
        elif kind == "refusal":
            part = common.text_part(_text_value(item, "refusal", p))
        elif role in ("user", "tool") and kind == "input_image":
            part = _image(item, p)
        elif role in ("user", "tool") and kind == "input_file":
            part = _file(item, p)
        else:
            raise BadRequest(f"{p}.type {kind!r} is not supported in a {role} message", param=f"{p}.type")
        if part:
            parts.append(part)
    return parts


class _Conversation:
    """Walks history + input items, building contents and the system instruction."""

    def __init__(
        self,
        store: SignatureStore,
        model: str,
        items: list[tuple[str, Any]],
        unseal: Unseal | None = None,
    ) -> None:
        self.store = store
        self.unseal = unseal
        self.family = shared_extra.family(model)
        self.system: list[dict[str, Any]] = []
        self.contents: list[dict[str, Any]] = []
        self.ignored: list[str] = []
        # Gemini: a signature from a reasoning item, for the turn's next call.
        self.pending_signature: str | None = None
        # The last search note and where it is (a carried answer joins it).
        self.last_search: tuple[list[dict[str, Any]], int, dict[str, Any]] | None = None
        # Tool outputs name their call only by call_id: learn names up front.
        self.call_names: dict[str, str] = {}
        for _, item in items:
            if isinstance(item, dict) and item.get("type") in ("function_call", "custom_tool_call"):
                if isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str):
                    self.call_names[item["call_id"]] = _call_name(item)

    # --- turns
    def _turn(self, role: str) -> list[dict[str, Any]]:
        if role == "user":
            self.pending_signature = None
        if not self.contents or self.contents[-1]["role"] != role:
            self.contents.append({"role": role, "parts": []})
        parts: list[dict[str, Any]] = self.contents[-1]["parts"]
        return parts

    # --- items
    def add(self, param: str, item: Any) -> None:
        if not isinstance(item, dict):
            raise BadRequest(f"{param} must be an object", param=param)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            self._message(param, item)
        elif kind in ("function_call", "custom_tool_call"):
            self._call(param, item, custom=kind == "custom_tool_call")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._output(param, item)
        elif kind == "reasoning":
            self._reasoning(item)
        elif kind in COMPACTION_ITEMS:
            self._compaction(param, item)
        elif kind == "image_generation_call":
            # A picture made in an earlier turn: the model's turn says so (the
            # upstream has no such item; the bytes need not go back).
            self._turn("model").append(image_generation.history_part(item))
        elif kind == "web_search_call":
            # A search run in an earlier turn: the model's turn says what was
            # searched and the sources (protocols.web_search).
            self._search(item, str(kind))
        elif kind == "compaction_trigger":
            raise BadRequest(
                f"{param}: a compaction_trigger must be the last input item", param=f"{param}.type"
            )
        elif kind == "item_reference":
            raise BadRequest(
                f"{param}: item references are not supported;"
                " send the item itself or use previous_response_id",
                param=f"{param}.type",
            )
        else:
            # Built-in tool calls (web_search_call, local_shell_call, ...) this
            # proxy never produces carry nothing the upstream could use.
            self.ignored.append(str(kind))

    def _compaction(self, param: str, item: dict[str, Any]) -> None:
        """A compaction item this gateway issued: its summary goes back to
        the model as a user turn saying what it is."""
        blob = item.get("encrypted_content")
        summary = self.unseal(blob) if self.unseal is not None and isinstance(blob, str) else None
        if summary is None:
            raise UnreadableCompaction(
                f"{param} is a compaction item this gateway cannot open: it was made by another "
                "server or with another key, or it was altered. Its summary of the earlier turns "
                "is lost; start a new conversation (or send the history without that item).",
                param=f"{param}.encrypted_content",
            )
        text = common.text_part(SUMMARY_PREFIX + summary)
        if text:
            self._turn("user").append(text)

    def _message(self, param: str, item: dict[str, Any]) -> None:
        role = item.get("role")
        if role not in ("user", "assistant", *_SYSTEM_ROLES):
            raise BadRequest(
                f"{param}.role must be one of user, assistant, system, developer",
                param=f"{param}.role",
            )
        parts = _content(item.get("content"), param=f"{param}.content", role=str(role))
        if role in _SYSTEM_ROLES:
            self.system.extend(p for p in parts if "text" in p)
        else:
            self._turn("model" if role == "assistant" else "user").extend(parts)

    def _call(self, param: str, item: dict[str, Any], *, custom: bool) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"{param}.call_id is required", param=f"{param}.call_id")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{param}.name is required", param=f"{param}.name")
        name = _call_name(item)
        if custom:
            args = {"input": item.get("input") if isinstance(item.get("input"), str) else ""}
        else:
            args = shared_extra.parse_arguments(item.get("arguments"), param=f"{param}.arguments")
        part = shared_extra.function_call_part(name, args, call_id)
        parts = self._turn("model")
        first = not any("functionCall" in p for p in parts)
        if self.family == "gemini":
            sig = (self.pending_signature if first else None) or shared_extra.stored_call_signature(
                self.store, call_id, "gemini"
            )
            if sig:
                part["thoughtSignature"] = sig
            self.pending_signature = None
        elif first and not (parts and parts[0].get("thought")):
            thinking = shared_extra.stored_turn_thinking(self.store, call_id)
            if thinking:
                parts.insert(0, thinking)
        parts.append(part)

    def _output(self, param: str, item: dict[str, Any]) -> None:
        call_id = item.get("call_id")
        name = self.call_names.get(call_id) if isinstance(call_id, str) else None
        name = name or (item.get("name") if isinstance(item.get("name"), str) else None)
        if not isinstance(call_id, str) or not name:
            raise BadRequest(
                f"{param}.call_id must match the call_id of a function_call"
                " in the input or the previous response",
                param=f"{param}.call_id",
            )
        output = item.get("output")
        extra: list[dict[str, Any]] = []
        if isinstance(output, list):
            parts = _content(output, param=f"{param}.output", role="tool")
            output = "\n".join(p["text"] for p in parts if "text" in p)
            extra = [p for p in parts if "text" not in p]  # images ride next to the result
        elif not isinstance(output, str):
            raise BadRequest(
                f"{param}.output must be a string or a list of content parts",
                param=f"{param}.output",
            )
        self._turn("user").extend([shared_extra.function_response_part(name, call_id, output), *extra])

    def _search(self, item: dict[str, Any], kind: str) -> None:
        note = _search_note(item)
        self.last_search = None
        if note is None:
            self.ignored.append(kind)  # nothing to tell: no query, no sources
            return
        parts = self._turn("model")
        parts.append(note)
        self.last_search = (parts, len(parts) - 1, item)

    def _search_found(self, query: str, answer: str) -> None:
        """A search's answer carried in a reasoning item (``web_search.carry``):
        it joins the note of the search item before it, or makes its own."""
        if self.last_search is not None:
            parts, at, item = self.last_search
            self.last_search = None
            parts[at] = _search_note(item, answer) or parts[at]
            return
        self._turn("model").append(web_search.history_note(query, [], answer))

    def _reasoning(self, item: dict[str, Any]) -> None:
        found = web_search.carried(item.get("encrypted_content"))
        if found is not None:
            self._search_found(*found)
            return
        decoded = decode_reasoning(item.get("encrypted_content"))
        if decoded is None or decoded[0] != self.family:
            return  # unsigned or foreign reasoning is never sent back (UPSTREAM.md)
        _, signature, text = decoded
        if self.family == "gemini":
            self.pending_signature = signature
            return
        if not text:
            text = self.store.thinking(signature) or _joined_text(item.get("summary"))
        if text:
            self._turn("model").append(shared_extra.thought_part(text, signature))


def _call_name(item: dict[str, Any]) -> str:
    """The upstream name of a call item: a call into a namespace (``namespace``
    set, as Codex sends MCP calls back) is named like its declaration."""
    namespace = item.get("namespace")
    name = str(item["name"])
    return namespaced_name(namespace, name) if isinstance(namespace, str) and namespace else name


def _joined_text(parts: Any) -> str:
    """The text of typed parts (summary_text, input_text, ...) joined."""
    if not isinstance(parts, list):
        return ""
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in _ECHO_KEYS if body.get(key) is not None}


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    for key, name in (("temperature", "temperature"), ("top_p", "topP")):
        value = number_param(body, key)
        if value is not None:
            gen[name] = value
    max_tokens = number_param(body, "max_output_tokens", integer=True)
    if max_tokens is not None:
        gen["maxOutputTokens"] = max_tokens
    text = body.get("text")
    if text is not None:
        fmt = text.get("format") if isinstance(text, dict) else None
        if fmt is not None:
            if not isinstance(fmt, dict):
                raise BadRequest("text.format must be an object", param="text.format")
            gen.update(json_output_config(fmt.get("type"), fmt.get("schema"), param="text.format"))
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise BadRequest("reasoning must be an object", param="reasoning")
        add_thinking(gen, reasoning.get("effort"), param="reasoning.effort")
    return gen


def _session_key(body: dict[str, Any], items: list[tuple[str, Any]]) -> str | None:
    for key in ("prompt_cache_key", "user", "safety_identifier"):
        if isinstance(body.get(key), str) and body[key]:
            return common.text_hash(body[key])
    for _, item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            text = content if isinstance(content, str) else _joined_text(content)
            if text:
                return common.text_hash(text)
    return None


def to_gemini(
    body: dict[str, Any],
    *,
    model: str,
    store: SignatureStore,
    history: list[dict[str, Any]] | None = None,
    unseal: Unseal | None = None,
) -> GeminiCall:
    """``unseal`` opens compaction items (without it they are a 400)."""
    body = require_object(body)
    refuse_logprobs(body, flag=None, top="top_logprobs")
    include = body.get("include")
    if isinstance(include, list) and "message.output_text.logprobs" in include:
        raise BadRequest(
            "log probabilities are not available through this proxy (the upstream does not"
            " return them); leave message.output_text.logprobs out of include",
            param="include",
        )
    items = [(f"history[{i}]", it) for i, it in enumerate(history or [])]
    items += [(f"input[{i}]", it) for i, it in enumerate(input_items(body))]
    if not items:
        raise BadRequest("input must not be empty", param="input")
    tools = _tools(body.get("tools"), model)

    conv = _Conversation(store, model, items, unseal)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        conv.system.append({"text": instructions})
    for param, item in items:
        conv.add(param, item)

    gen = _generation(body)
    request: dict[str, Any] = {"contents": []}
    if conv.system:
        request["systemInstruction"] = {"role": "user", "parts": conv.system}
    if tools.decls:
        request["tools"] = [{"functionDeclarations": tools.decls}]
        choice = body.get("tool_choice")
        tc = tool_config(choice, tools.names, param="tool_choice")
        if tools.search is not None and isinstance(choice, dict) and choice.get("type") in _WEB_SEARCH:
            forced = [web_search.FUNCTION_NAME]
            tc = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": forced}}
        if (
            tools.image is not None
            and isinstance(choice, dict)
            and choice.get("type") == image_generation.TOOL_TYPE
        ):
            forced = [image_generation.FUNCTION_NAME]
            tc = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": forced}}
        if tc:
            request["toolConfig"] = tc
    if gen:
        request["generationConfig"] = gen
    notes = finish_request(request, conv.contents, model=model, param="input")

    extra: dict[str, Any] = {
        "echo": _echo(body),
        "tool_names": tools.names,
        "tool_kinds": tools.kinds,
        "tool_namespaces": tools.namespaces,
        "include_encrypted": isinstance(include, list) and "reasoning.encrypted_content" in include,
        "store": body.get("store") is not False,  # OpenAI stores unless told not to
    }
    if isinstance(body.get("previous_response_id"), str):
        extra["previous_response_id"] = body["previous_response_id"]
    if tools.ignored:
        extra["ignored_tools"] = tools.ignored
    if tools.search is not None:
        extra[web_search.EXTRA_KEY] = tools.search
    if tools.image is not None:
        extra[image_generation.EXTRA_KEY] = tools.image
    if conv.ignored:
        extra["ignored_items"] = conv.ignored
    if notes:
        extra["notes"] = notes
    return GeminiCall(
        request=request,
        client_model=str(body.get("model") or model),
        model=model,
        stream=bool(body.get("stream")),
        session_key=_session_key(body, items),
        thinking=thinking_on(request),
        extra=extra,
    )


# ====================================================================== answer


def _usage(meta: dict[str, Any] | None) -> dict[str, Any]:
    u = common.usage_from_gemini(meta)
    return {
        "input_tokens": u.input_tokens,
        # The upstream reports cache hits only, never cache writes.
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.thinking_tokens},
        "total_tokens": u.total_tokens,
    }


def _error(err: GatewayError) -> dict[str, Any]:
    """ResponseError: ``code`` is one of a fixed set; Codex reads a retry delay
    from "try again in Ns" in the message of a rate_limit_exceeded error."""
    message = err.message
    if isinstance(err, RateLimited):
        code = "rate_limit_exceeded"
        if err.retry_after is not None and "try again in" not in message.lower():
            message = f"{message} Please try again in {err.retry_after:g}s."
    elif isinstance(err, ContextTooLong):
        code = "context_length_exceeded"  # Codex compacts on this code
    elif err.status == 400:
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": message}


class _Assembler:
    """Builds the response's output items from upstream parts, recording as
    events what a stream tells the client. Non-stream answers use it too, so
    both paths give the same items."""

    def __init__(self, call: GeminiCall, store: SignatureStore) -> None:
        self.call = call
        self.id = answer_id(call, "resp_")
        self.created = new_timestamp(call)
        self.family = shared_extra.family(call.model)
        self.recorder = SignatureRecorder(store, self.family)
        self.encrypted = bool(call.extra.get("include_encrypted"))
        self.kinds: dict[str, str] = call.extra.get("tool_kinds") or {}
        self.namespaces: dict[str, list[str]] = call.extra.get("tool_namespaces") or {}
        self.events: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []  # finished items
        self.open: dict[str, Any] | None = None  # the reasoning / message item being written
        self.open_text: list[str] = []
        self.open_payload: str | None = None  # encrypted_content for the open reasoning item
        self.calls = 0
        self.gemini_finish: str | None = None
        self.usage_meta: dict[str, Any] | None = None
        self.blocked = False
        # (url, title, grounded segments) for the next message (web search)
        self.cite: list[tuple[str, str, list[str]]] = []
        self.open_cite: list[tuple[str, str, list[str]]] = []
        # image_generation_call items shown as running (stream), oldest first:
        # (item, output index); each result closes the oldest.
        self.drawing: list[tuple[dict[str, Any], int]] = []

    # --- events
    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append({"type": kind, **fields})

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        echo: dict[str, Any] = self.call.extra.get("echo") or {}
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "metadata": echo.get("metadata", {}),
            "model": self.call.client_model,
            "output": [],
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": self.call.extra.get("previous_response_id"),
            "reasoning": echo.get("reasoning", {"effort": None, "summary": None}),
            "temperature": echo.get("temperature"),
            "text": echo.get("text", {"format": {"type": "text"}}),
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": echo.get("tools", []),
            "top_p": echo.get("top_p"),
            "truncation": "disabled",
            "usage": None,
            "user": echo.get("user"),
        }
        obj.update(fields)
        return obj

    def begin(self) -> None:
        self.emit("response.created", response=self.response("in_progress"))
        self.emit("response.in_progress", response=self.response("in_progress"))

    # --- items
    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{shared_extra.derived_hex(self.id, len(self.items), 40)}"

    def _open(self, item: dict[str, Any]) -> None:
        self.open, self.open_text, self.open_payload = item, [], None
        self.emit("response.output_item.added", output_index=len(self.items), item=dict(item))

    def _done(self, item: dict[str, Any]) -> None:
        self.emit("response.output_item.done", output_index=len(self.items), item=item)
        self.items.append(item)

    def close(self, status: str = "completed") -> None:
        item, self.open = self.open, None
        if item is None:
            return
        index, text = len(self.items), "".join(self.open_text)
        ref = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            if self.open_text:
                summary = {"type": "summary_text", "text": text}
                self.emit("response.reasoning_summary_text.done", **ref, summary_index=0, text=text)
                self.emit("response.reasoning_summary_part.done", **ref, summary_index=0, part=summary)
                item["summary"] = [summary]
            if self.open_payload:
                item["encrypted_content"] = self.open_payload
        else:
            # The text after a web search cites its sources: the span a
            # source grounds when the text repeats it, else the whole text
            # (web_search.citation_spans).
            notes = [
                {"type": "url_citation", "start_index": start, "end_index": end, "url": url, "title": title}
                for url, title, start, end in web_search.citation_spans(text, self.open_cite)
            ]
            self.open_cite = []
            for n, note in enumerate(notes):
                self.emit(
                    "response.output_text.annotation.added",
                    **ref,
                    content_index=0,
                    annotation_index=n,
                    annotation=note,
                )
            part = {"type": "output_text", "text": text, "annotations": notes}
            self.emit("response.output_text.done", **ref, content_index=0, text=text, logprobs=[])
            self.emit("response.content_part.done", **ref, content_index=0, part=part)
            item["content"] = [part]
            item["status"] = status
        self._done(item)

    def _reasoning_item(self) -> dict[str, Any]:
        return {"id": self._item_id("rs"), "type": "reasoning", "summary": []}

    def _thought(self, piece: Piece) -> None:
        block = self.recorder.thought(piece)
        if piece.text:
            if self.open is None or self.open["type"] != "reasoning" or self.open_payload:
                self.close()
                self._open(self._reasoning_item())
            assert self.open is not None
            ref = {"item_id": self.open["id"], "output_index": len(self.items), "summary_index": 0}
            if not self.open_text:
                self.emit(
                    "response.reasoning_summary_part.added",
                    **ref,
                    part={"type": "summary_text", "text": ""},
                )
            self.open_text.append(piece.text)
            self.emit("response.reasoning_summary_text.delta", **ref, delta=piece.text)
        if block is not None and self.encrypted:
            self._attach(encode_reasoning(self.family, block.signature, block.text or None))

    def _attach(self, payload: str) -> None:
        """Put a signature in the open reasoning item, or in a reasoning item
        of its own when none is open (or the open one already carries one)."""
        if self.open is not None and self.open["type"] == "reasoning" and not self.open_payload:
            self.open_payload = payload
            return
        self.close()
        self._open(self._reasoning_item())
        self.open_payload = payload
        self.close()

    def _text(self, piece: Piece) -> None:
        if not piece.text:
            return
        if self.open is None or self.open["type"] != "message":
            self.close()
            self.open_cite, self.cite = self.cite, []
            self._open(
                {
                    "id": self._item_id("msg"),
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
            )
            assert self.open is not None
            self.emit(
                "response.content_part.added",
                item_id=self.open["id"],
                output_index=len(self.items),
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        assert self.open is not None
        self.open_text.append(piece.text)
        self.emit(
            "response.output_text.delta",
            item_id=self.open["id"],
            output_index=len(self.items),
            content_index=0,
            delta=piece.text,
            logprobs=[],
        )

    def _call(self, piece: Piece) -> None:
        call_id = piece.call_id or "call_" + shared_extra.derived_hex(self.id, f"call:{self.calls}")
        self.calls += 1
        self.recorder.call(call_id, piece.signature)
        if piece.signature and self.encrypted and self.family == "gemini":
            self._attach(encode_reasoning(self.family, piece.signature, None))
        self.close()
        name = client_tool_name(self.call, piece.name)
        where = self.namespaces.get(piece.name)
        namespace: dict[str, str] = {}
        if where:
            # A namespaced tool comes back under its own name with its
            # namespace beside it, as the Responses API answers it.
            namespace, name = {"namespace": where[0]}, where[1]
        if self.kinds.get(piece.name) == "custom":
            self._custom_call(call_id, name, piece.args, namespace)
            return
        arguments = shared_extra.arguments_json(piece.args)
        item = {
            "id": self._item_id("fc"),
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            **namespace,
            "name": name,
            "arguments": "",
        }
        self._open_atomic(item)
        ref = {"item_id": item["id"], "output_index": len(self.items)}
        self.emit("response.function_call_arguments.delta", **ref, delta=arguments)
        self.emit("response.function_call_arguments.done", **ref, arguments=arguments)
        self._done({**item, "arguments": arguments, "status": "completed"})

    def _custom_call(self, call_id: str, name: str, args: dict[str, Any], namespace: dict[str, str]) -> None:
        raw = args.get("input")
        value = raw if isinstance(raw, str) else shared_extra.arguments_json(args)
        item = {
            "id": self._item_id("ctc"),
            "type": "custom_tool_call",
            "call_id": call_id,
            **namespace,
            "name": name,
            "input": "",
        }
        self._open_atomic(item)
        ref = {"item_id": item["id"], "output_index": len(self.items)}
        self.emit("response.custom_tool_call_input.delta", **ref, delta=value)
        self.emit("response.custom_tool_call_input.done", **ref, input=value)
        self._done({**item, "input": value})

    def _search(self, res: dict[str, Any]) -> None:
        """A search the gateway ran (``protocols.web_search``): a
        ``web_search_call`` item, with the events the Responses API sends."""
        self.close()
        query = str(res.get("query") or "")
        item: dict[str, Any] = {
            "id": self._item_id("ws"),
            "type": "web_search_call",
            "status": "in_progress",
            "action": {"type": "search", "query": query},
        }
        self._open_atomic(item)
        ref = {"item_id": item["id"], "output_index": len(self.items)}
        self.emit("response.web_search_call.in_progress", **ref)
        self.emit("response.web_search_call.searching", **ref)
        self.emit("response.web_search_call.completed", **ref)
        sources = res.get("sources") or []
        urls = [{"type": "url", "url": s["url"]} for s in sources]
        action = {"type": "search", "query": query, "sources": urls}
        self._done({**item, "status": "failed" if res.get("error") else "completed", "action": action})
        self.cite += web_search.cited_segments(res)
        if self.encrypted and res.get("text") and not res.get("error"):
            # What was found, for later turns: the client returns reasoning
            # items untouched (web_search.carry; read back by the builder).
            self._open(self._reasoning_item())
            self.open_payload = web_search.carry(res)
            self.close()

    def _image(self, res: dict[str, Any]) -> None:
        """A picture the gateway drew (``protocols.image_generation``): an
        ``image_generation_call`` item. A running call (stream) opens the item
        at once and its result finishes it; a result alone does both."""
        if res.get("status") == "generating":
            self.drawing.append(self._start_image())
            return
        item, index = self.drawing.pop(0) if self.drawing else self._start_image()
        done = image_generation.item(item["id"], res)
        item.clear()
        item.update(done)  # the item keeps its place in the output
        if done["status"] == "completed":
            self.emit("response.image_generation_call.completed", item_id=done["id"], output_index=index)
        self.emit("response.output_item.done", output_index=index, item=done)

    def _start_image(self) -> tuple[dict[str, Any], int]:
        self.close()
        item: dict[str, Any] = {
            "id": self._item_id("ig"),
            "type": "image_generation_call",
            "status": "in_progress",
            "result": None,
        }
        index = len(self.items)
        self._open_atomic(item)
        # The output index is taken now: items that follow come after it.
        self.items.append(item)
        ref = {"item_id": item["id"], "output_index": index}
        self.emit("response.image_generation_call.in_progress", **ref)
        self.emit("response.image_generation_call.generating", **ref)
        return item, index

    def _open_atomic(self, item: dict[str, Any]) -> None:
        self.emit("response.output_item.added", output_index=len(self.items), item=dict(item))

    # --- input
    def feed(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usageMetadata"):
            self.usage_meta = chunk["usageMetadata"]
        if common.prompt_blocked(chunk):
            self.blocked = True
        cand = common.candidate(chunk)  # Responses has one answer (no n)
        if cand.get("finishReason"):
            self.gemini_finish = str(cand["finishReason"])
        for part in common.parts_of(chunk):
            found = part.get(web_search.SEARCH_PART)
            if isinstance(found, dict):
                self._search(found)
                continue
            drawn = part.get(image_generation.IMAGE_PART)
            if isinstance(drawn, dict):
                self._image(drawn)
                continue
            piece = shared_extra.read_part(part)
            if piece is None:
                continue
            if piece.kind == "thought":
                self._thought(piece)
            elif piece.kind == "text":
                self._text(piece)
            elif piece.kind == "call":
                self._call(piece)

    def finish(self) -> dict[str, Any]:
        reason = openai_finish(
            self.gemini_finish or ("SAFETY" if self.blocked else None),
            had_tool_calls=self.calls > 0,
        )
        details = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(reason)
        self.close("incomplete" if details else "completed")
        usage = _usage(self.usage_meta)
        if details:
            resp = self.response(
                "incomplete", output=self.items, usage=usage, incomplete_details={"reason": details}
            )
            self.emit("response.incomplete", response=resp)
        else:
            resp = self.response("completed", output=self.items, usage=usage)
            self.emit("response.completed", response=resp)
        return resp

    def fail(self, err: GatewayError) -> dict[str, Any]:
        usage = _usage(self.usage_meta) if self.usage_meta else None
        resp = self.response("failed", output=self.items, usage=usage, error=_error(err))
        self.emit("response.failed", response=resp)
        return resp


# For the compaction answers (``openai_compaction``), which share the
# response object and its usage block.
Assembler = _Assembler
usage = _usage


def from_gemini(resp: dict[str, Any], *, call: GeminiCall, store: SignatureStore) -> dict[str, Any]:
    asm = _Assembler(call, store)
    asm.feed(resp)
    return asm.finish()


class EventStream:
    """The framing every Responses stream shares: the assembler's events out
    as SSE with their ``sequence_number``, and the opening events once."""

    def __init__(self, asm: _Assembler) -> None:
        self._asm = asm
        self._seq = 0
        self._started = False

    def _drain(self) -> bytes:
        out = []
        for event in self._asm.events:
            event["sequence_number"] = self._seq
            self._seq += 1
            out.append(common.sse_json(event, event=event["type"]))
        self._asm.events = []
        return b"".join(out)

    def _begin(self) -> None:
        if not self._started:
            self._started = True
            self._asm.begin()


class StreamTranslator(EventStream):
    """Upstream chunks -> the Responses event stream.

    ``start()`` sends response.created and response.in_progress; it may be
    skipped (the first ``feed()`` sends them), so a route can hold back every
    byte until the upstream has produced something. ``response`` holds the
    final response object once ``finish`` or ``fail`` ran (the route stores
    ``input_items(body) + output_items(response)`` as history).
    """

    def __init__(self, call: GeminiCall, store: SignatureStore) -> None:
        super().__init__(_Assembler(call, store))
        self.response: dict[str, Any] | None = None

    @property
    def response_id(self) -> str:
        return self._asm.id

    @property
    def result(self) -> dict[str, Any] | None:
        """The final response object, under the name the serving relay reads
        (``serving._stream_done`` hands it to the route's ``on_complete``)."""
        return self.response

    def start(self) -> bytes:
        self._begin()
        return self._drain()

    def feed(self, chunk: dict[str, Any]) -> bytes:
        self._begin()
        self._asm.feed(chunk)
        return self._drain()

    def finish(self) -> bytes:
        self._begin()
        self.response = self._asm.finish()
        return self._drain()

    def fail(self, err: GatewayError) -> bytes:
        self._begin()
        self.response = self._asm.fail(err)
        return self._drain()

    def keepalive(self) -> bytes:
        return KEEPALIVE
