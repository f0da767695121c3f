"""OpenAI Chat Completions (``/v1/chat/completions``) <-> Gemini.

Request: messages become ``contents`` (system and developer messages become
``systemInstruction``), tools become one ``functionDeclarations`` tool, the
sampling knobs become ``generationConfig``. Answer: a ``chat.completion`` or
a stream of ``chat.completion.chunk`` ending with ``data: [DONE]``.

Thought signatures: OpenAI-shaped clients drop fields they do not know, so
what the upstream hands out is kept in the SignatureStore and put back when
the tool calls come back (UPSTREAM.md): Gemini signatures by tool-call id;
Claude's signed thinking by the first tool-call id of its turn. What cannot
be restored is handled by ``shared_extra.finalize_contents`` (skip marker
for Gemini, thinking off for Claude). Thinking comes back to the client as
``reasoning_content`` (the DeepSeek-style field many clients read); a
``reasoning_content`` a client sends back is dropped.

The parameter helpers here are shared with ``openai_completions`` and
``openai_responses`` (same names, same meaning).

``call.extra`` keys: read ``id``, ``created`` (set by the route to pin the
answer's id and timestamp; generated otherwise); written ``include_usage``,
``tool_names`` (sanitized -> client name), ``ignored_tools``, ``notes``.
"""

from __future__ import annotations

import mimetypes
import time
from typing import Any

from daemon.errors import BadRequest, GatewayError
from daemon.protocols import GeminiCall, common, shared_extra
from daemon.protocols.shared_extra import Piece, SignatureRecorder
from daemon.protocols.signatures import SignatureStore

ROLES = ("system", "developer", "user", "assistant", "tool")
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keepalive\n\n"

# OpenAI error "type" by HTTP status (their error bodies use these words).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


# ==================================================================== helpers
# (shared by the three OpenAI protocols)


def openai_error(err: GatewayError) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error body."""
    return {
        "message": err.message,
        "type": _ERROR_TYPES.get(err.status, "server_error"),
        "param": err.param,
        "code": err.kind,
    }


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", param="body")
    return body


def number_param(body: dict[str, Any], key: str, *, integer: bool = False, param: str | None = None) -> Any:
    """``body[key]`` if it is a number (an integer when asked), None if absent."""
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{param or key} must be {kind}", param=param or key)
    return value


def stop_sequences(value: Any, *, param: str = "stop") -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value] if value else None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v] or None
    raise BadRequest(f"{param} must be a string or a list of strings", param=param)


_NO_LOGPROBS = (
    "log probabilities are not available through this proxy (the upstream does not return them);"
    " leave {param} out"
)


def refuse_logprobs(body: dict[str, Any], *, flag: str | None, top: str | None) -> None:
    """A 400 naming the field when log probabilities are asked for.

    Answering without them would look like success to a client that reads
    them. ``flag`` is the on/off (Chat: a boolean; Completions: a count,
    where 0 still asks for the chosen token's), ``top`` the count of
    alternatives (0 asks for none). ``false`` / ``null`` / 0 alternatives pass.
    """
    if flag is not None:
        value = body.get(flag)
        if value is not None and value is not False:
            raise BadRequest(_NO_LOGPROBS.format(param=flag), param=flag)
    if top is not None:
        value = body.get(top)
        if value is not None and value != 0:
            raise BadRequest(_NO_LOGPROBS.format(param=top), param=top)


def sampling_config(body: dict[str, Any], *, max_tokens_keys: tuple[str, ...]) -> dict[str, Any]:
    """generationConfig from the sampling knobs Chat and Completions share."""
    gen: dict[str, Any] = {}
    for key, name in (("temperature", "temperature"), ("top_p", "topP")):
        value = number_param(body, key)
        if value is not None:
            gen[name] = value
    for key in max_tokens_keys:  # the first one given wins
        value = number_param(body, key, integer=True)
        if value is not None:
            gen["maxOutputTokens"] = value
            break
    stops = stop_sequences(body.get("stop"))
    if stops:
        gen["stopSequences"] = stops
    n = number_param(body, "n", integer=True)
    if n is not None and n != 1:
        gen["candidateCount"] = n
    seed = number_param(body, "seed", integer=True)
    if seed is not None:
        gen["seed"] = seed
    for key, name in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = number_param(body, key)
        if value is not None:
            gen[name] = value
    return gen


def json_output_config(kind: Any, schema: Any, *, param: str) -> dict[str, Any]:
    """``json_object`` / ``json_schema`` output -> responseMimeType (+ responseSchema)."""
    if kind in (None, "text"):
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        if not isinstance(schema, dict):
            raise BadRequest(f"{param} needs a JSON schema object", param=param)
        return {
            "responseMimeType": "application/json",
            "responseSchema": common.clean_schema(schema),
        }
    raise BadRequest(f"{param} type must be one of text, json_object, json_schema", param=param)


def add_thinking(gen: dict[str, Any], effort: Any, *, param: str) -> bool:
    """Reasoning effort -> thinkingConfig in ``gen``; True when thinking is on.

    No effort given: no thinkingConfig, so each model keeps its own default.
    """
    if effort is None:
        return False
    if not isinstance(effort, str):
        raise BadRequest(f"{param} must be a string", param=param)
    try:
        budget = common.thinking_budget_for_effort(effort)
    except BadRequest as exc:
        raise BadRequest(f"{param}: {exc.message}", param=param) from None
    config, max_tokens = common.thinking_config(budget, gen.get("maxOutputTokens"))
    if config is None:
        return False
    gen["thinkingConfig"] = config
    if max_tokens is not None:
        gen["maxOutputTokens"] = max_tokens
    return bool(config.get("includeThoughts"))


def tool_config(choice: Any, names: dict[str, str], *, param: str) -> dict[str, Any] | None:
    """tool_choice -> toolConfig (none -> NONE, auto -> AUTO, required -> ANY,
    a named function -> ANY restricted to it)."""
    if choice is None:
        return None
    modes = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
    if isinstance(choice, str):
        if choice not in modes:
            raise BadRequest(f"{param} must be one of none, auto, required, or a function", param=param)
        return {"functionCallingConfig": {"mode": modes[choice]}}
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        if choice.get("type") in ("function", "custom") and isinstance(name, str):
            sanitized = common.sanitize_tool_name(name)
            if sanitized not in names:
                raise BadRequest(f"{param} names {name!r}, which is not in tools", param=param)
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [sanitized]}}
        if choice.get("type") == "allowed_tools":
            # Chat nests {mode, tools} under "allowed_tools"; Responses does not.
            nested = choice.get("allowed_tools")
            spec: dict[str, Any] = nested if isinstance(nested, dict) else choice
            mode = "ANY" if spec.get("mode") == "required" else "AUTO"
            return {"functionCallingConfig": {"mode": mode}}
        return {"functionCallingConfig": {"mode": "AUTO"}}  # a built-in tool type: nothing to force
    raise BadRequest(f"{param} must be a string or an object", param=param)


def thinking_on(request: dict[str, Any]) -> bool:
    config = request.get("generationConfig", {}).get("thinkingConfig") or {}
    return bool(config.get("includeThoughts"))


def finish_request(
    request: dict[str, Any], contents: list[dict[str, Any]], *, model: str, param: str = "messages"
) -> list[str]:
    """Put the finalized contents into ``request``; returns notes for the log.

    Claude's thinking rules go first (they may turn thinking off), then the
    contents are made acceptable with thinking as it finally stands.
    """
    notes: list[str] = []
    if shared_extra.family(model) == "claude":
        shared_extra.apply_claude_rules(request, notes)
    final = shared_extra.finalize_contents(contents, model=model, thinking=thinking_on(request))
    if not final.contents:
        raise BadRequest(f"{param} must hold at least one user message with content", param=param)
    if thinking_on(request) and not final.thinking:
        del request["generationConfig"]["thinkingConfig"]
    if "generationConfig" in request and not request["generationConfig"]:
        del request["generationConfig"]
    request["contents"] = final.contents
    return notes + final.notes


def new_timestamp(call: GeminiCall) -> int:
    created = call.extra.get("created")
    return int(created) if isinstance(created, int | float) else int(time.time())


def answer_id(call: GeminiCall, prefix: str) -> str:
    given = call.extra.get("id")
    return str(given) if given else prefix + shared_extra.random_hex(32)


def client_tool_name(call: GeminiCall, name: str) -> str:
    names: dict[str, str] = call.extra.get("tool_names") or {}
    return names.get(name, name)


def openai_finish(gemini_reason: str | None, *, had_tool_calls: bool) -> str:
    reason = common.finish_reason(gemini_reason, had_tool_calls=had_tool_calls)
    # MALFORMED_FUNCTION_CALL has no OpenAI word; the answer just ends.
    return "stop" if reason == "error" else reason


def usage_object(meta: dict[str, Any] | None) -> dict[str, Any]:
    u = common.usage_from_gemini(meta)
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.thinking_tokens},
    }


# ============================================================= request side


def _function_tools(tools: Any) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """Chat ``tools`` -> (functionDeclarations, sanitized -> client name, ignored types)."""
    if tools is None:
        return [], {}, []
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list", param="tools")
    decls: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    ignored: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}] must be an object", param=f"tools[{i}]")
        if tool.get("type", "function") != "function":
            ignored.append(str(tool.get("type")))
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadRequest(f"tools[{i}].function.name is required", param=f"tools[{i}].function.name")
        desc = fn.get("description")
        decl = common.function_declaration(
            fn["name"], desc if isinstance(desc, str) else None, fn.get("parameters")
        )
        names[decl["name"]] = fn["name"]
        decls.append(decl)
    return decls, names, ignored


def _base64_file(data: str, filename: Any, *, param: str) -> dict[str, Any]:
    """``file_data``: a data: URL, or bare base64 typed by the file name."""
    if data.startswith("data:"):
        return _inline(data, param=param)
    guessed = mimetypes.guess_type(filename)[0] if isinstance(filename, str) else None
    return {"inlineData": {"mimeType": guessed or "application/pdf", "data": data}}


def _inline(url: str, *, param: str) -> dict[str, Any]:
    try:
        return common.image_part(url)
    except BadRequest as exc:
        raise BadRequest(f"{param}: {exc.message}", param=param) from None


_AUDIO_MIME = {"mp3": "audio/mp3", "wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}


def _content_part(item: Any, *, param: str, role: str) -> dict[str, Any] | None:
    """One chat content part -> a Gemini part (None for empty text)."""
    if not isinstance(item, dict):
        raise BadRequest(f"{param} must be an object", param=param)
    kind = item.get("type")
    if kind == "text":
        text = item.get("text")
        if not isinstance(text, str):
            raise BadRequest(f"{param}.text must be a string", param=f"{param}.text")
        return common.text_part(text)
    if kind == "refusal" and role == "assistant":
        refusal = item.get("refusal")
        return common.text_part(refusal) if isinstance(refusal, str) else None
    if role in ("system", "developer", "assistant"):
        raise BadRequest(f"{param}.type must be text in a {role} message", param=f"{param}.type")
    if kind == "image_url":
        image = item.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise BadRequest(f"{param}.image_url.url must be a string", param=f"{param}.image_url.url")
        return _inline(url, param=f"{param}.image_url.url")
    if kind == "input_audio":
        audio = item.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise BadRequest(
                f"{param}.input_audio.data must be base64 audio", param=f"{param}.input_audio.data"
            )
        fmt = str(audio.get("format") or "wav")
        return {"inlineData": {"mimeType": _AUDIO_MIME.get(fmt, f"audio/{fmt}"), "data": audio["data"]}}
    if kind == "file":
        file = item.get("file")
        if not isinstance(file, dict):
            raise BadRequest(f"{param}.file must be an object", param=f"{param}.file")
        if isinstance(file.get("file_data"), str):
            return _base64_file(file["file_data"], file.get("filename"), param=f"{param}.file.file_data")
        raise BadRequest(
            f"{param}.file: uploaded file ids are not supported; send the file inline as file_data",
            param=f"{param}.file.file_id",
        )
    raise BadRequest(
        f"{param}.type {kind!r} is not supported; use text, image_url, input_audio or file",
        param=f"{param}.type",
    )


def _content_parts(content: Any, *, param: str, role: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        part = common.text_part(content)
        return [part] if part else []
    if not isinstance(content, list):
        raise BadRequest(f"{param} must be a string or a list of content parts", param=param)
    parts = (_content_part(item, param=f"{param}[{j}]", role=role) for j, item in enumerate(content))
    return [p for p in parts if p]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


class _Conversation:
    """Walks the messages, building contents and the system instruction."""

    def __init__(self, store: SignatureStore, model: str) -> None:
        self.store = store
        self.family = shared_extra.family(model)
        self.system: list[dict[str, Any]] = []
        self.contents: list[dict[str, Any]] = []
        self.call_names: dict[str, str] = {}  # tool_call id -> function name

    def add(self, i: int, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role"
            )
        param = f"messages[{i}].content"
        if role in ("system", "developer"):
            self.system.extend(_content_parts(msg.get("content"), param=param, role=role))
        elif role == "user":
            self.contents.append(
                {
                    "role": "user",
                    "parts": _content_parts(msg.get("content"), param=param, role=role),
                }
            )
        elif role == "assistant":
            self._assistant(i, msg)
        else:
            self._tool(i, msg)

    def _assistant(self, i: int, msg: dict[str, Any]) -> None:
        # reasoning_content a client echoes back is dropped: it carries no
        # signature; the signed thinking is restored from the store instead.
        parts = _content_parts(msg.get("content"), param=f"messages[{i}].content", role="assistant")
        calls = msg.get("tool_calls") or []
        if not isinstance(calls, list):
            raise BadRequest(f"messages[{i}].tool_calls must be a list", param=f"messages[{i}].tool_calls")
        call_parts = [self._tool_call(f"messages[{i}].tool_calls[{j}]", c) for j, c in enumerate(calls)]
        if call_parts and self.family == "claude":
            thinking = shared_extra.stored_turn_thinking(self.store, call_parts[0]["functionCall"]["id"])
            if thinking:
                parts.insert(0, thinking)
        self.contents.append({"role": "model", "parts": parts + call_parts})

    def _tool_call(self, param: str, call: Any) -> dict[str, Any]:
        if not isinstance(call, dict):
            raise BadRequest(f"{param} must be an object", param=param)
        call_id = call.get("id")
        fn = call.get("function")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"{param}.id is required", param=f"{param}.id")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadRequest(f"{param}.function.name is required", param=f"{param}.function.name")
        args = shared_extra.parse_arguments(fn.get("arguments"), param=f"{param}.function.arguments")
        self.call_names[call_id] = fn["name"]
        part = shared_extra.function_call_part(fn["name"], args, call_id)
        if self.family == "gemini":
            sig = shared_extra.stored_call_signature(self.store, call_id, "gemini")
            if sig:
                part["thoughtSignature"] = sig
        return part

    def _tool(self, i: int, msg: dict[str, Any]) -> None:
        call_id = msg.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in self.call_names:
            raise BadRequest(
                f"messages[{i}].tool_call_id must match the id of a tool call"
                " in an earlier assistant message",
                param=f"messages[{i}].tool_call_id",
            )
        content = msg.get("content")
        param = f"messages[{i}].content"
        extra: list[dict[str, Any]] = []
        if isinstance(content, list):
            # Images in a tool result ride next to the functionResponse.
            extra = [p for p in _content_parts(content, param=param, role="user") if "text" not in p]
        elif content is not None and not isinstance(content, str):
            raise BadRequest(f"{param} must be a string or a list of content parts", param=param)
        part = shared_extra.function_response_part(self.call_names[call_id], call_id, _text_of(content))
        self.contents.append({"role": "user", "parts": [part, *extra]})


def _session_key(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    if isinstance(user, str) and user:
        return common.text_hash(user)
    for msg in body["messages"]:
        if isinstance(msg, dict) and msg.get("role") == "user":
            text = _text_of(msg.get("content"))
            if text:
                return common.text_hash(text)
    return None


def to_gemini(body: dict[str, Any], *, model: str, store: SignatureStore) -> GeminiCall:
    body = require_object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of message objects", param="messages")
    refuse_logprobs(body, flag="logprobs", top="top_logprobs")
    decls, names, ignored = _function_tools(body.get("tools"))

    conv = _Conversation(store, model)
    for i, msg in enumerate(messages):
        conv.add(i, msg)

    gen = sampling_config(body, max_tokens_keys=("max_completion_tokens", "max_tokens"))
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise BadRequest("response_format must be an object", param="response_format")
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        gen.update(json_output_config(fmt.get("type"), schema, param="response_format"))
    add_thinking(gen, body.get("reasoning_effort"), param="reasoning_effort")

    request: dict[str, Any] = {"contents": []}
    if conv.system:
        request["systemInstruction"] = {"role": "user", "parts": conv.system}
    if decls:
        request["tools"] = [{"functionDeclarations": decls}]
        tc = tool_config(body.get("tool_choice"), names, param="tool_choice")
        if tc:
            request["toolConfig"] = tc
    if gen:
        request["generationConfig"] = gen
    notes = finish_request(request, conv.contents, model=model)
    extra: dict[str, Any] = {"tool_names": names}
    options = body.get("stream_options")
    extra["include_usage"] = bool(isinstance(options, dict) and options.get("include_usage"))
    if ignored:
        extra["ignored_tools"] = ignored
    if notes:
        extra["notes"] = notes
    return GeminiCall(
        request=request,
        client_model=str(body.get("model") or model),
        model=model,
        stream=bool(body.get("stream")),
        session_key=_session_key(body),
        thinking=thinking_on(request),
        extra=extra,
    )


# ============================================================== answer side


class _Choice:
    """One candidate's answer, accumulated part by part; each feed returns the
    deltas a stream sends for it."""

    def __init__(self, index: int, call: GeminiCall, store: SignatureStore, answer: str) -> None:
        self.index = index
        self._call = call
        self._answer = answer
        self._recorder = SignatureRecorder(store, shared_extra.family(call.model))
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.gemini_finish: str | None = None

    def feed(self, candidate: dict[str, Any]) -> list[dict[str, Any]]:
        if candidate.get("finishReason"):
            self.gemini_finish = str(candidate["finishReason"])
        deltas: list[dict[str, Any]] = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            piece = shared_extra.read_part(part) if isinstance(part, dict) else None
            if piece is not None:
                delta = self._piece(piece)
                if delta:
                    deltas.append(delta)
        return deltas

    def _piece(self, piece: Piece) -> dict[str, Any] | None:
        if piece.kind == "thought":
            self._recorder.thought(piece)
            if piece.text:
                self.reasoning.append(piece.text)
                return {"reasoning_content": piece.text}
        elif piece.kind == "text" and piece.text:
            self.content.append(piece.text)
            return {"content": piece.text}
        elif piece.kind == "call":
            seq = len(self.tool_calls)
            call_id = piece.call_id or "call_" + shared_extra.derived_hex(self._answer, f"{self.index}:{seq}")
            self._recorder.call(call_id, piece.signature)
            tool_call = {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": client_tool_name(self._call, piece.name),
                    "arguments": shared_extra.arguments_json(piece.args),
                },
            }
            self.tool_calls.append(tool_call)
            return {"tool_calls": [{"index": seq, **tool_call}]}
        return None

    @property
    def finish(self) -> str:
        return openai_finish(self.gemini_finish, had_tool_calls=bool(self.tool_calls))

    def message(self) -> dict[str, Any]:
        text = "".join(self.content)
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not self.tool_calls else None,
        }
        if self.reasoning:
            msg["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg


def _candidates(resp: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    cands = resp.get("candidates") or []
    out = []
    for pos, cand in enumerate(cands):
        if isinstance(cand, dict):
            index = cand.get("index")
            out.append((index if isinstance(index, int) else pos, cand))
    return out


def from_gemini(resp: dict[str, Any], *, call: GeminiCall, store: SignatureStore) -> dict[str, Any]:
    rid = answer_id(call, "chatcmpl-")
    choices: dict[int, _Choice] = {}
    for index, cand in _candidates(resp):
        choice = choices.setdefault(index, _Choice(index, call, store, rid))
        choice.feed(cand)
    if not choices:
        # No candidate at all: the prompt itself was blocked (promptFeedback).
        blocked = _Choice(0, call, store, rid)
        blocked.gemini_finish = "SAFETY" if common.prompt_blocked(resp) else None
        choices[0] = blocked
    return {
        "id": rid,
        "object": "chat.completion",
        "created": new_timestamp(call),
        "model": call.client_model,
        "choices": [
            {"index": c.index, "message": c.message(), "logprobs": None, "finish_reason": c.finish}
            for c in sorted(choices.values(), key=lambda c: c.index)
        ],
        "usage": usage_object(resp.get("usageMetadata")),
    }


class StreamTranslator:
    """Upstream stream chunks -> ``chat.completion.chunk`` SSE events.

    ``start()`` sends the role chunk; it may be skipped: the first ``feed()``
    sends it then, so a route can hold back every byte until the upstream has
    produced something (an empty upstream stream is retryable).
    """

    def __init__(self, call: GeminiCall, store: SignatureStore) -> None:
        self._call = call
        self._store = store
        self._id = answer_id(call, "chatcmpl-")
        self._created = new_timestamp(call)
        self._choices: dict[int, _Choice] = {}
        self._usage: dict[str, Any] | None = None
        self._blocked = False
        self._started = False

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return common.sse_json(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._call.client_model,
                "choices": choices,
                **extra,
            }
        )

    def _delta(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _choice(self, index: int) -> tuple[_Choice, bytes]:
        choice = self._choices.get(index)
        if choice is not None:
            return choice, b""
        choice = self._choices[index] = _Choice(index, self._call, self._store, self._id)
        # The first delta of each choice carries the role, as OpenAI's does.
        return choice, self._chunk([self._delta(index, {"role": "assistant", "content": ""})])

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._choice(0)[1]

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = [self.start()]
        if chunk.get("usageMetadata"):
            self._usage = chunk["usageMetadata"]
        if common.prompt_blocked(chunk):
            self._blocked = True
        for index, cand in _candidates(chunk):
            choice, head = self._choice(index)
            out.append(head)
            out.extend(self._chunk([self._delta(index, d)]) for d in choice.feed(cand))
        return b"".join(out)

    def finish(self) -> bytes:
        out = [self.start()]
        for choice in sorted(self._choices.values(), key=lambda c: c.index):
            if self._blocked and choice.gemini_finish is None:
                choice.gemini_finish = "SAFETY"
            out.append(self._chunk([self._delta(choice.index, {}, choice.finish)]))
        if self._call.extra.get("include_usage"):
            out.append(self._chunk([], usage=usage_object(self._usage)))
        out.append(DONE)
        return b"".join(out)

    def fail(self, err: GatewayError) -> bytes:
        # The openai SDK raises APIError on a data event holding "error".
        return common.sse_json({"error": openai_error(err)}) + DONE

    def keepalive(self) -> bytes:
        return KEEPALIVE
