"""Tools the gateway runs itself inside one client request: the pure half of
the loop (the upstream calls are in ``daemon.dispatch``).

A server tool is offered to the main model as a plain function declaration;
when the model calls it, the dispatcher runs the tool's own upstream call,
answers the function call with a short function response, and continues the
conversation, all inside the one client request (stream or not). The client
sees the tool's work in its own protocol's shape: a synthetic part
(``{<tool's part key>: result}``) reaches the translator between the rounds'
parts. Two tools use this loop:

* ``web_search`` (``protocols.web_search``; Anthropic and Responses clients);
* ``image_generation`` (``protocols.image_generation``; Responses clients).

The rules every server tool shares live here, once:

* a server call that comes together with calls of the client's own tools is
  run too, and the answer ends there: the client gets the tool's result
  (its search blocks, its picture) placed before its own calls (``place``),
  and no further round is made (only the client can answer its calls). The
  server call leaves the turn with its thought signature (``split_calls``).
  When the client sends that turn back with its tool results, the server
  tool's part of it comes back as a model-turn note
  (``web_search.history_note``, ``image_generation.history_part``), never as
  a function call: the upstream sees only calls the same request answers,
  and no call needs a signature the gateway cannot give back;
* each tool has a budget per request (``opts["max_uses"]``); a call past it
  is answered with the tool's "no more" response, not run;
* the request gets one upstream round per allowed call, one to answer after
  the last, and one where a call past the budget is refused;
* a ``tool_choice`` that forced a server tool is relaxed after the first
  round, or the model would have to call it again and again.

``call.extra[tool.extra_key]`` (set by the protocol translator) switches a
tool on and holds its options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daemon.protocols import GeminiCall, image_generation, web_search

Json = dict[str, Any]


@dataclass(frozen=True)
class ServerTool:
    name: str  # the function the main model calls
    extra_key: str  # call.extra key holding the tool's options
    limit_response: Callable[[Json], Json]  # the answer to a call past the budget
    # The synthetic part shown while the call runs (stream only), or None.
    pending: Callable[[Json], Json | None]


def _no_pending(part: Json) -> Json | None:
    return None


TOOLS: tuple[ServerTool, ...] = (
    ServerTool(web_search.FUNCTION_NAME, web_search.EXTRA_KEY, web_search.limit_response, _no_pending),
    ServerTool(
        image_generation.FUNCTION_NAME,
        image_generation.EXTRA_KEY,
        image_generation.limit_response,
        image_generation.pending,
    ),
)
_BY_NAME = {tool.name: tool for tool in TOOLS}


def enabled(call: GeminiCall) -> dict[str, Json]:
    """The server tools this request offers: function name -> options."""
    out: dict[str, Json] = {}
    for tool in TOOLS:
        opts = call.extra.get(tool.extra_key)
        if isinstance(opts, dict):
            out[tool.name] = opts
    return out


def rounds(tools: dict[str, Json]) -> int:
    """Upstream rounds of one request: one per allowed call, one to answer
    after the last, and one where a call past the budget is refused."""
    if not tools:
        return 1
    return sum(int(opts.get("max_uses", 0)) for opts in tools.values()) + 2


def name_of(part: Any) -> str | None:
    fc = part.get("functionCall") if isinstance(part, dict) else None
    name = fc.get("name") if isinstance(fc, dict) else None
    return name if isinstance(name, str) else None


def split_calls(parts: list[Json], tools: dict[str, Json]) -> tuple[list[Json], list[Json], bool]:
    """(parts without the server calls, the server calls, other calls present).

    A server call's thought signature leaves with it. Signatures are opaque
    and belong to the part Gemini put them on (UPSTREAM.md §7.2); moved onto
    a call of another name, one is refused as corrupted when the turn comes
    back (so the fake Google models it). The client's calls keep what they
    carried; the first call of a turn sent back without a signature gets the
    skip value (UPSTREAM.md §7.2), which the translators put there."""
    kept: list[Json] = []
    calls: list[Json] = []
    other = False
    for part in parts:
        if name_of(part) in tools:
            calls.append(part)
            continue
        if isinstance(part.get("functionCall"), dict):
            other = True
        kept.append(part)
    return kept, calls, other


def place(kept: list[Json], results: list[Json]) -> list[Json]:
    """The parts of a turn whose server calls ran next to the client's own
    calls: the tools' results (synthetic parts) where the first of the
    client's calls was, so the client reads "searched, then called"."""
    at = first_call(kept)
    at = len(kept) if at is None else at
    return [*kept[:at], *results, *kept[at:]]


def first_call(parts: list[Json]) -> int | None:
    """Index of the first function call among parts, or None."""
    return next((i for i, p in enumerate(parts) if isinstance(p.get("functionCall"), dict)), None)


def plan(calls: list[Json], tools: dict[str, Json], used: dict[str, int]) -> list[tuple[Json, bool]]:
    """(call, run it) per server call, within each tool's budget; ``used``
    counts the calls run so far in this request and is updated."""
    out: list[tuple[Json, bool]] = []
    for part in calls:
        name = name_of(part) or ""
        run = used.get(name, 0) < int(tools[name].get("max_uses", 0))
        if run:
            used[name] = used.get(name, 0) + 1
        out.append((part, run))
    return out


def limit_response(part: Json) -> Json:
    """The answer to a server call past its tool's budget."""
    return _BY_NAME[name_of(part) or ""].limit_response(part)


def pending_parts(planned: list[tuple[Json, bool]]) -> list[Json]:
    """The synthetic parts that say a call is running (for the stream)."""
    out: list[Json] = []
    for part, run in planned:
        shown = _BY_NAME[name_of(part) or ""].pending(part) if run else None
        if shown is not None:
            out.append(shown)
    return out


def chunk(parts: list[Json], finish: str | None = None) -> Json:
    """A stream chunk carrying synthetic (or held back) parts, and the
    round's finishReason when it ends the answer."""
    cand: Json = {"content": {"role": "model", "parts": parts}}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand]}


def relax_choice(request: Json, tools: dict[str, Json]) -> None:
    """A tool_choice that forces a call among server tools only (named ones,
    or ``required`` when every declared function is a server tool) becomes
    AUTO: each round would otherwise have to call one again, up to the budget."""
    fcc = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if fcc.get("mode") != "ANY":
        return
    forced = fcc.get("allowedFunctionNames")
    if not isinstance(forced, list) or not forced:
        forced = [
            decl.get("name")
            for tool in request.get("tools") or []
            if isinstance(tool, dict)
            for decl in tool.get("functionDeclarations") or []
            if isinstance(decl, dict)
        ]
    if forced and set(forced) <= set(tools):
        request["toolConfig"] = {"functionCallingConfig": {"mode": "AUTO"}}


def merge_parts(parts: list[Json]) -> list[Json]:
    """A streamed turn's parts joined back into the turn the model produced
    (consecutive thought texts and answer texts concatenated, each keeping the
    signature that closed it), for sending the turn back upstream."""
    out: list[Json] = []
    plain = {"text", "thought", "thoughtSignature"}
    for part in parts:
        prev = out[-1] if out else None
        if (
            prev is not None
            and set(part) <= plain
            and set(prev) <= plain
            and bool(prev.get("thought")) == bool(part.get("thought"))
            and not prev.get("thoughtSignature")
        ):
            # A signature may come alone on a part after its text (Claude).
            prev["text"] = str(prev.get("text", "")) + str(part.get("text", ""))
            if part.get("thoughtSignature"):
                prev["thoughtSignature"] = part["thoughtSignature"]
            continue
        out.append(dict(part))
    return [p for p in out if p.get("text") or p.get("thoughtSignature") or set(p) - plain]
