"""Server-side web search, the pure half (the upstream calls are in dispatch;
the loop it runs in, shared with image generation, is ``protocols.server_tools``).

Anthropic's ``web_search_*`` tool and the Responses ``web_search`` tool are
run by the gateway. Google answers a search only on its own request: a
separate call with ``requestType: "web_search"`` on a web-search model of the
catalog with a ``googleSearch`` tool, and it rejects ``googleSearch`` next to
``functionDeclarations`` on every model (UPSTREAM.md §5.4). Clients send the
search tool next to their functions (Codex on every request), so the
decision is:

* the main request gets a plain function declaration ``web_search(query)``
  in place of the search tool (never ``googleSearch``);
* when the model calls it (and nothing else), the dispatcher runs the
  separate search call with that query, answers the call with the grounded
  text and its sources as the function's response, and continues the main
  conversation, all inside the one client request (stream or not), at most
  ``max_uses`` (default and ceiling :data:`MAX_ROUNDS`) searches;
* the caller sees the search in its own shape: a synthetic part
  ``{SEARCH_PART: result}`` goes to the protocol translator between the
  rounds' parts (Anthropic ``server_tool_use`` + ``web_search_tool_result``,
  Responses ``web_search_call``), and the grounding sources become citations
  of the text that follows;
* a web_search call that comes together with calls of the client's own
  tools is run too, and the answer ends with the search and those calls
  (a rule of every server tool, ``server_tools``).

Past searches in the conversation history (Anthropic ``server_tool_use`` /
``web_search_tool_result`` blocks, Responses ``web_search_call`` items) become
a model-turn note (:func:`history_note`): what was searched, what was found
(when the client carried it back) and the sources. A note and not a
``web_search`` functionCall/functionResponse pair: the pair would need
Gemini's thought signature on the call (the gateway moved it to the client's
call, or the client never had it) and, for Claude with thinking, would make
an old answer look like a tool loop the thinking rules apply to
(UPSTREAM.md §6.4, §7.2). What was found comes back only where the client
returns it untouched:

* Anthropic: ``web_search_result.encrypted_content`` is opaque to clients,
  which must send it back for later turns (the SDK types it as a required
  string). The gateway's first result of a search carries the search's
  query and answer text (at most :data:`CARRIED_CHARS` characters) in it,
  encoded (:func:`carry`), not encrypted: the client wrote nothing the model
  could not be told in the prompt anyway.
* Responses: ``web_search_call`` has no such field (``action`` is ``{"type":
  "search", "query", "sources": [{"type": "url", "url"}]}`` and Codex keeps
  only ``query`` and ``queries``), so the note holds the query and the source
  urls sent back. With ``include: ["reasoning.encrypted_content"]`` (Codex
  sends it) a reasoning item with no summary follows the search item, its
  ``encrypted_content`` carrying the same payload: clients return reasoning
  items untouched, as they do for the gateway's signatures.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

Json = dict[str, Any]

FUNCTION_NAME = "web_search"
EXTRA_KEY = "web_search"  # call.extra: {"max_uses": int, "domains": [str]}
SEARCH_PART = "_webSearch"  # the synthetic answer part the translators read
MAX_ROUNDS = 5
#: Characters of a search's answer carried back in the history (bounded: a
#: long conversation sends every past search again).
CARRIED_CHARS = 4000
CARRY_PREFIX = "agws1."
MAX_NOTED_SOURCES = 20

# The search model's prompt (UPSTREAM.md §5.4: the tool must actually search).
SEARCH_SYSTEM = (
    "You are a search engine bot. You will be given a query from a user. Search the web for "
    "information relevant to it and answer with what you found, citing the sources. "
    "You MUST perform a web search."
)

DESCRIPTION = (
    "Search the web for current information. Returns a summary of what was found and the "
    "sources (url and title). Use it for facts that may have changed or that you do not know."
)


def declaration() -> Json:
    return {
        "name": FUNCTION_NAME,
        "description": DESCRIPTION,
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query."}},
            "required": ["query"],
        },
    }


def options(max_uses: Any = None, domains: Any = None) -> Json:
    """What ``call.extra[EXTRA_KEY]`` holds for a request that declares search."""
    limit = max_uses if isinstance(max_uses, int) and not isinstance(max_uses, bool) else MAX_ROUNDS
    out: Json = {"max_uses": max(0, min(limit, MAX_ROUNDS))}
    if isinstance(domains, list):
        clean = [d for d in domains if isinstance(d, str) and d]
        if clean:
            out["domains"] = clean
    return out


def search_request(query: str, domains: list[str] | None = None) -> Json:
    """The ``request`` of the separate search call (UPSTREAM.md §5.4)."""
    search: Json = {}
    if domains:
        search["includedDomains"] = list(domains)
    return {
        "contents": [{"role": "user", "parts": [{"text": query}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": SEARCH_SYSTEM}]},
        "tools": [{"googleSearch": search}],
        "generationConfig": {"candidateCount": 1},
    }


def query_of(call_part: Json) -> str:
    args = call_part["functionCall"].get("args")
    q = args.get("query") if isinstance(args, dict) else None
    return q.strip() if isinstance(q, str) else ""


def result(call_part: Json, query: str, resp: Json | None, error: str | None = None) -> Json:
    """The search's outcome from the search model's answer (or an error text):
    ``{"id", "query", "text", "sources": [{"url", "title"}], "supports":
    [{"text", "sources": [index]}], "error"?}``."""
    fc = call_part["functionCall"]
    call_id = fc.get("id") if isinstance(fc.get("id"), str) else None
    out: Json = {"call_id": call_id, "query": query, "text": "", "sources": [], "supports": []}
    if error is not None or resp is None:
        out["error"] = error or "the search gave no answer"
        return out
    cands = resp.get("candidates") or [{}]
    cand = cands[0] if isinstance(cands[0], dict) else {}
    parts = (cand.get("content") or {}).get("parts") or []
    texts = [p for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
    out["text"] = "".join(p["text"] for p in texts if not p.get("thought"))
    meta = cand.get("groundingMetadata") or {}
    for chunk in meta.get("groundingChunks") or []:
        web = chunk.get("web") if isinstance(chunk, dict) else None
        if isinstance(web, dict) and isinstance(web.get("uri"), str):
            # The uris are Google's redirect links (UPSTREAM.md §5.4); they are
            # handed on as they are (resolving them would be one fetch each).
            title = web.get("title") if isinstance(web.get("title"), str) else web["uri"]
            out["sources"].append({"url": web["uri"], "title": title})
    for support in meta.get("groundingSupports") or []:
        if not isinstance(support, dict):
            continue
        seg = support.get("segment") or {}
        idx = [i for i in support.get("groundingChunkIndices") or [] if isinstance(i, int)]
        idx = [i for i in idx if 0 <= i < len(out["sources"])]
        if isinstance(seg.get("text"), str) and seg["text"] and idx:
            out["supports"].append({"text": seg["text"], "sources": idx})
    return out


def function_response(res: Json) -> Json:
    """The user part answering the model's web_search call."""
    body: Json
    if res.get("error"):
        body = {"error": res["error"]}
    else:
        body = {"query": res["query"], "answer": res["text"], "sources": res["sources"]}
    fr: Json = {"name": FUNCTION_NAME, "response": body}
    if res.get("call_id"):
        fr["id"] = res["call_id"]
    return {"functionResponse": fr}


def limit_response(call_part: Json) -> Json:
    """The answer to a web_search call past the request's search budget."""
    res = result(call_part, query_of(call_part), None, "no more searches in this request; answer now")
    return function_response(res)


def cited_segments(res: Json) -> list[tuple[str, str, list[str]]]:
    """(url, title, the answer's segments grounded on it) per source."""
    segments: dict[int, list[str]] = {}
    for support in res.get("supports") or []:
        for i in support["sources"]:
            segments.setdefault(i, []).append(support["text"])
    return [(s["url"], s["title"], segments.get(i, [])) for i, s in enumerate(res.get("sources") or [])]


def citation_spans(text: str, cites: list[tuple[str, str, list[str]]]) -> list[tuple[str, str, int, int]]:
    """(url, title, start, end) citations of ``text``, the main model's answer
    after a search, in text order.

    Google's ``groundingSupports`` give each source its segments, but of the
    search model's answer; the client reads the main model's own wording.
    A source whose segment the text repeats (the model quoted the search)
    cites that span, each place it occurs once; any other source cites the
    whole text, as nothing tells which sentence rests on it."""
    out: list[tuple[str, str, int, int]] = []
    for url, title, segments in cites:
        found = []
        for seg in segments:
            seg = seg.strip()
            at = text.find(seg) if seg else -1
            if at >= 0 and (at, at + len(seg)) not in found:
                found.append((at, at + len(seg)))
        if not found:
            found = [(0, len(text))]
        out += [(url, title, start, end) for start, end in found]
    return sorted(out, key=lambda c: (c[2], c[3] - c[2]))


def citation_sources(res: Json) -> list[tuple[str, str, str]]:
    """(url, title, cited text) per cited source of a search result, in source order."""
    cited: dict[int, str] = {}
    for support in res.get("supports") or []:
        for i in support["sources"]:
            cited.setdefault(i, support["text"])
    out = []
    for i, src in enumerate(res.get("sources") or []):
        out.append((src["url"], src["title"], cited.get(i, "")))
    return out


def carry(res: Json) -> str:
    """What a search's first Anthropic ``web_search_result`` carries in its
    ``encrypted_content``: the query and the answer text, bounded."""
    payload = {"q": str(res.get("query") or ""), "a": str(res.get("text") or "")[:CARRIED_CHARS]}
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return CARRY_PREFIX + base64.urlsafe_b64encode(raw).decode()


def carried(value: Any) -> tuple[str, str] | None:
    """(query, answer text) from an ``encrypted_content`` this gateway wrote;
    None for anything else (Anthropic's own blobs, an altered value)."""
    if not isinstance(value, str) or not value.startswith(CARRY_PREFIX):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(value[len(CARRY_PREFIX) :]))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("a"), str):
        return None
    query = payload.get("q") if isinstance(payload.get("q"), str) else ""
    return str(query), str(payload["a"])[:CARRIED_CHARS]


def history_note(
    query: str, sources: list[tuple[str, str]], answer: str | None = None, failed: bool = False
) -> Json:
    """A past search from the client's history as the model turn's text:
    ``sources`` are (title, url); ``answer`` the search's text when carried."""
    about = f" for: {query.strip()}" if query.strip() else ""
    if failed:
        return {"text": f"[web_search was called here{about}; the search failed]"}
    lines = [f"[web_search was run here{about}]"]
    if answer and answer.strip():
        lines.append(f"It found: {answer.strip()}")
    if sources:
        lines.append("Sources:")
        lines += [
            f"- {title} <{url}>" if title and title != url else f"- <{url}>"
            for title, url in sources[:MAX_NOTED_SOURCES]
        ]
    if len(lines) > 1:
        lines.append("[end of web_search]")
    return {"text": "\n".join(lines)}
