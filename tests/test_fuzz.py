"""Issue 8, bad input: fuzz every proxy route and the admin API of a live daemon.

Hypothesis builds request bodies that are malformed JSON, the right shape
with wrong types (any JSON value in place of a field), unknown fields,
hostile unicode (lone surrogates — escaped, and raw as invalid UTF-8 —, NUL,
RTL marks), or any JSON value at all; explicit tests add bodies over
``proxy.max_body_bytes`` (413) and deep nesting. Whatever comes in:

* never a 5xx (the fake upstream answers garbage with 4xx, so the upstream
  path's 502/503/504 cannot be excused here — except a 502 for the fake's
  own 500 when its validator crashes, counted in ``FAKE_CRASHES``);
* never a traceback (``Traceback`` / ``File "``) in a body;
* every error body in the caller's protocol's shape;
* the daemon stays healthy (``/healthz``, admin ``/status``) afterwards.

Deterministic (``derandomize=True``) and bounded: ``AG_FUZZ_EXAMPLES``
examples per route (default 100; 1,000 with ``AG_LONG=1``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle
from tests.test_reliability import TRACEBACK_MARKERS, error_shape_ok, sse_events, start_daemon, uid

LONG = os.environ.get("AG_LONG") == "1"
EXAMPLES = int(os.environ.get("AG_FUZZ_EXAMPLES", 1000 if LONG else 100))
MAX_BODY = 1024 * 1024
MODEL = "gemini-3-flash"

# Hypothesis caches unicode tables in ./.hypothesis; pyproject's norecursedirs
# replaces pytest's defaults, and the hypothesis plugin then warns (an error
# here) about that directory on every later run. Keep it out of the repo.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "antigravity-hypothesis")

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # clean_log checks once per test, on purpose
    ],
)


# ---------------------------------------------------------------- the daemon under fuzz


@pytest.fixture(scope="module")
def fz(fake: FakeGoogle) -> Iterator[tuple[Daemon, httpx.Client]]:
    """One daemon for the proxy fuzzing: one account, strict auth, 1 MiB bodies."""
    fake.reset()
    home = Path(tempfile.mkdtemp(prefix="ag-f-", dir="/tmp"))
    d = start_daemon(
        fake,
        home,
        [f"fuzz-{uid()}@example.com"],
        proxy={"auth_mode": "strict", "max_body_bytes": MAX_BODY, "request_timeout": 10},
        upstream={"stream_idle_timeout": 10},
    )
    client = httpx.Client(base_url=d.base_url, headers={"authorization": f"Bearer {d.api_key}"}, timeout=30)
    try:
        yield d, client
        if FAKE_CRASHES:
            n = len(FAKE_CRASHES)
            print(f"\nfuzz: the fake Google crashed (500 -> 502) {n} times, e.g. {FAKE_CRASHES[0]}")
        # Healthy at the end, the account still in service.
        assert client.get("/healthz").status_code == 200
        assert d.admin("GET", "/status")["accounts"]["active"] == 1
        r = client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200, r.text
    finally:
        client.close()
        d.stop()
        shutil.rmtree(home, ignore_errors=True)
        fake.reset()


def _no_new_traceback(d: Daemon) -> Iterator[None]:
    start = len(d.log())
    yield
    new = d.log()[start:]
    assert "Traceback" not in new, new[max(0, new.find("Traceback") - 300) :][:4000]


@pytest.fixture
def clean_log(fz: tuple[Daemon, httpx.Client]) -> Iterator[None]:
    """The daemon logged no traceback (an unhandled error) during the test."""
    yield from _no_new_traceback(fz[0])


@pytest.fixture
def clean_admin_log(adm: tuple[Daemon, httpx.Client, dict[str, str]]) -> Iterator[None]:
    yield from _no_new_traceback(adm[0])


@dataclass(frozen=True)
class Route:
    name: str
    protocol: str
    path: str
    streams: bool = False  # a "stream" field in the body means something


ROUTES = [
    Route("chat", "openai", "/v1/chat/completions", True),
    Route("completions", "openai", "/v1/completions", True),
    Route("responses", "openai", "/v1/responses", True),
    Route("messages", "anthropic", "/v1/messages", True),
    Route("count_tokens", "anthropic", "/v1/messages/count_tokens"),
    Route("generate", "gemini", f"/v1beta/models/{MODEL}:generateContent"),
    Route("stream", "gemini", f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"),
    Route("count", "gemini", f"/v1beta/models/{MODEL}:countTokens"),
]
ROUTE_IDS = [r.name for r in ROUTES]


#: The fake Google answers 500 when its own validator crashes on garbage the
#: daemon passes through (real Google would answer 400); the daemon then
#: rightly answers 502. Those are the fake's bugs, counted here, not failures.
FAKE_CRASHES: list[str] = []


def check(protocol: str, resp: httpx.Response, what: Any = None) -> None:
    """The invariants every answer keeps, whatever was sent."""
    body = resp.content.decode("utf-8", "replace")
    answer = f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: {body[:400]!r}"
    where = f"{answer}\nsent: {what!r}"[:2000]
    if resp.status_code == 502 and "upstream error 500" in body:
        FAKE_CRASHES.append(where)
    else:
        assert resp.status_code < 500, where
    assert not any(m in body for m in TRACEBACK_MARKERS), where
    if resp.status_code >= 400:
        try:
            parsed = json.loads(body)
        except ValueError:
            raise AssertionError(f"error body is not JSON: {where}") from None
        assert error_shape_ok(protocol, parsed), f"not a {protocol} error body: {where}"
    elif "text/event-stream" in resp.headers.get("content-type", ""):
        for name, data in sse_events(body):
            if data == "[DONE]":
                continue
            obj = json.loads(data)
            if name == "error" or (
                isinstance(obj, dict) and "error" in obj and obj.get("type") != "message_delta"
            ):
                assert error_shape_ok(protocol, obj), f"bad error event {data[:300]}: {where}"
    elif resp.headers.get("content-type", "").startswith("application/json"):
        json.loads(body)


# ---------------------------------------------------------------- strategies
#
# Three kinds of structured bodies per route, built from one description:
#   valid    every field of the right type and value (exercises the translators
#            and the round trip through the fake: mostly 200s);
#   mutated  a valid body with ONE fault: a value anywhere replaced by any JSON
#            value, a key dropped, or an unknown key added (single-fault paths);
#   wild     every field may be junk and unknown fields appear everywhere.
# plus malformed bytes and any JSON value at all.

HOSTILE = [
    "\x00",
    "\u202e",
    "\u200f",
    "\u2066",
    "\ufeff",
    "\uffff",
    "\ud800",
    "\udfff",
    "\U0001d54f",
    "\r\n",
    '"',
    "\\",
    "%00",
    "${x}",
    "\u0085",
]
texts = st.one_of(
    st.text(max_size=12),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=3)), max_size=5).map("".join),
)
words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=16)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)),
    max_leaves=8,
)
IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
TOOL_NAMES = st.sampled_from(["get_weather", "read_file", "run.sh", "a:b-c_d"])
SCHEMAS = st.sampled_from(
    [
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "$defs": {"n": {"type": "integer", "exclusiveMinimum": 0}},
            "properties": {
                "n": {"$ref": "#/$defs/n"},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "mode": {"const": "x"},
                "opt": {"type": ["string", "null"]},
            },
        },
        {"type": "object", "properties": {}},
    ]
)


class Build:
    """The request shapes of every route; ``junk`` makes every field maybe-wrong."""

    def __init__(self, junk: bool) -> None:
        self.junk = junk
        b = self
        e = self.either
        o = self.obj
        small = st.integers(min_value=1, max_value=4096)
        model = e(
            st.sampled_from(
                [MODEL, "gemini-2.5-flash", "claude-sonnet-4-5", "models/" + MODEL]
                + (["", "gpt-nope"] if junk else [])
            )
        )
        schema = e(SCHEMAS)
        # OpenAI chat
        part = o({"type": st.just("text"), "text": e(words)}, {}) | o(
            {
                "type": st.just("image_url"),
                "image_url": o(
                    {"url": st.just("data:image/png;base64," + IMAGE)},
                    {"detail": st.sampled_from(["low", "auto"])},
                ),
            },
            {},
        )
        if junk:
            part = part | o(
                {"type": e(st.sampled_from(["input_audio", "file", "refusal", "bogus"]))},
                {"text": e(texts), "image_url": json_values},
            )
        content = e(st.one_of(words, st.lists(part, min_size=1, max_size=3)))
        call_id = st.sampled_from(["call_1", "call_2"])
        tool_call = o(
            {
                "id": e(call_id),
                "type": e(st.just("function")),
                "function": o(
                    {
                        "name": e(TOOL_NAMES),
                        "arguments": e(
                            st.sampled_from(
                                ['{"city": "Paris"}', "{}", '{"n": 1}'] + (["{bad", "[]"] if junk else [])
                            )
                        ),
                    },
                    {},
                ),
            },
            {},
        )
        user = o({"role": st.just("user"), "content": content}, {"name": e(words)})
        system = o({"role": e(st.sampled_from(["system", "developer"])), "content": content}, {})
        assistant_calls = o(
            {
                "role": st.just("assistant"),
                "tool_calls": e(st.lists(tool_call, min_size=1, max_size=2)),
            },
            {"content": e(st.one_of(st.none(), words)), "reasoning_content": e(words)},
        )
        tool_result = o({"role": st.just("tool"), "tool_call_id": e(call_id), "content": content}, {})
        turn = st.one_of(
            st.tuples(user).map(list),
            st.tuples(system, user).map(list),
            st.tuples(user, assistant_calls, tool_result, user).map(list),
            st.tuples(user, o({"role": st.just("assistant"), "content": content}, {}), user).map(list),
            st.tuples(user, assistant_calls, tool_result).map(list),
        )
        openai_tool = o(
            {
                "type": st.just("function"),
                "function": o(
                    {"name": e(TOOL_NAMES), "parameters": schema},
                    {"description": e(words), "strict": e(st.booleans())},
                ),
            },
            {},
        )
        openai_common = {
            "stream": e(st.booleans()),
            "max_tokens": e(small),
            "max_completion_tokens": e(small),
            "temperature": e(st.floats(0, 2)),
            "top_p": e(st.floats(0, 1)),
            "n": e(st.just(1)),
            "stop": e(st.one_of(words, st.lists(words, max_size=3))),
            "tools": e(st.lists(openai_tool, min_size=1, max_size=2)),
            "tool_choice": e(
                st.one_of(
                    st.sampled_from(["auto", "none", "required"]),
                    st.just({"type": "function", "function": {"name": "get_weather"}}),
                )
            ),
            "response_format": e(
                st.sampled_from(
                    [
                        {"type": "json_object"},
                        {"type": "text"},
                        {
                            "type": "json_schema",
                            "json_schema": {
                                "name": "x",
                                "schema": {
                                    "type": "object",
                                    "properties": {"a": {"type": "string"}},
                                },
                            },
                        },
                    ]
                )
            ),
            "reasoning_effort": e(st.sampled_from(["low", "medium", "high", "minimal"])),
            "stream_options": e(st.just({"include_usage": True})),
            "user": e(words),
            "seed": e(small),
        }
        self.chat = o({"model": model, "messages": e(turn)}, openai_common)
        self.completions = o(
            {
                "model": model,
                "prompt": e(st.one_of(words, st.lists(words, min_size=1, max_size=3))),
            },
            {k: v for k, v in openai_common.items() if k not in ("tools", "tool_choice", "response_format")},
        )
        # OpenAI Responses
        r_content = e(
            st.one_of(
                words,
                st.lists(
                    o({"type": st.just("input_text"), "text": e(words)}, {})
                    | o(
                        {
                            "type": st.just("input_image"),
                            "image_url": st.just("data:image/png;base64," + IMAGE),
                        },
                        {},
                    ),
                    min_size=1,
                    max_size=2,
                ),
            )
        )
        r_msg = o(
            {"role": e(st.sampled_from(["user", "system", "developer"])), "content": r_content},
            {"type": st.just("message")},
        )
        r_call = o(
            {
                "type": st.just("function_call"),
                "call_id": e(call_id),
                "name": e(TOOL_NAMES),
                "arguments": e(st.just('{"city": "Paris"}')),
            },
            {"id": e(words)},
        )
        r_out = o({"type": st.just("function_call_output"), "call_id": e(call_id), "output": e(words)}, {})
        r_input = e(
            st.one_of(
                words,
                st.one_of(st.tuples(r_msg).map(list), st.tuples(r_msg, r_call, r_out).map(list)),
            )
        )
        r_tool = o(
            {"type": st.just("function"), "name": e(TOOL_NAMES), "parameters": schema},
            {"description": e(words)},
        )
        self.responses = o(
            {"model": model, "input": r_input},
            {
                "stream": e(st.booleans()),
                "instructions": e(words),
                "store": e(st.booleans()),
                "reasoning": e(st.just({"effort": "low"})),
                "max_output_tokens": e(small),
                "temperature": e(st.floats(0, 2)),
                "tools": e(st.lists(r_tool, min_size=1, max_size=2)),
                "tool_choice": e(st.sampled_from(["auto", "none", "required"])),
                "text": e(st.just({"format": {"type": "text"}})),
                "previous_response_id": e(st.just("resp_unknown")) if junk else st.nothing(),
            },
        )
        # Anthropic
        a_text = o(
            {"type": st.just("text"), "text": e(words)},
            {"cache_control": e(st.just({"type": "ephemeral"}))},
        )
        a_image = o(
            {
                "type": st.just("image"),
                "source": o(
                    {
                        "type": st.just("base64"),
                        "media_type": e(st.just("image/png")),
                        "data": e(st.just(IMAGE)),
                    },
                    {},
                ),
            },
            {},
        )
        a_use = o(
            {
                "type": st.just("tool_use"),
                "id": e(st.just("toolu_1")),
                "name": e(TOOL_NAMES),
                "input": e(st.just({"city": "Paris"})),
            },
            {},
        )
        a_result = o(
            {
                "type": st.just("tool_result"),
                "tool_use_id": e(st.just("toolu_1")),
                "content": e(st.one_of(words, st.lists(a_text, min_size=1, max_size=2))),
            },
            {"is_error": e(st.booleans())},
        )
        a_user = o(
            {
                "role": st.just("user"),
                "content": e(st.one_of(words, st.lists(a_text | a_image, min_size=1, max_size=3))),
            },
            {},
        )
        a_turn = st.one_of(
            st.tuples(a_user).map(list),
            st.tuples(
                a_user,
                o(
                    {
                        "role": st.just("assistant"),
                        "content": e(st.one_of(words, st.lists(a_text, min_size=1, max_size=2))),
                    },
                    {},
                ),
                a_user,
            ).map(list),
            st.tuples(
                a_user,
                o(
                    {
                        "role": st.just("assistant"),
                        "content": st.lists(a_use, min_size=1, max_size=1),
                    },
                    {},
                ),
                o(
                    {
                        "role": st.just("user"),
                        "content": st.lists(a_result, min_size=1, max_size=1),
                    },
                    {},
                ),
            ).map(list),
        )
        if junk:
            a_turn = a_turn | e(
                st.lists(
                    o(
                        {"role": e(st.sampled_from(["user", "assistant", "system"]))},
                        {"content": json_values},
                    ),
                    max_size=3,
                )
            )
        anthropic_common = {
            "system": e(st.one_of(words, st.lists(a_text, min_size=1, max_size=2))),
            "tools": e(
                st.lists(
                    o({"name": e(TOOL_NAMES), "input_schema": schema}, {"description": e(words)}),
                    min_size=1,
                    max_size=2,
                )
            ),
            "tool_choice": e(
                st.sampled_from(
                    [
                        {"type": "auto"},
                        {"type": "any"},
                        {"type": "none"},
                        {"type": "tool", "name": "get_weather"},
                    ]
                )
            ),
            "thinking": e(
                st.sampled_from([{"type": "enabled", "budget_tokens": 2048}, {"type": "disabled"}])
            ),
            "temperature": e(st.floats(0, 1)),
            "top_k": e(small),
            "stop_sequences": e(st.lists(words, max_size=2)),
            "metadata": e(st.just({"user_id": "u1"})),
        }
        self.messages = o(
            {"model": model, "max_tokens": e(st.integers(4096, 8192)), "messages": e(a_turn)},
            {**anthropic_common, "stream": e(st.booleans())},
        )
        self.count_tokens = o({"model": model, "messages": e(a_turn)}, anthropic_common)
        # Gemini
        g_text = o({"text": e(words)}, {})
        g_image = o(
            {"inlineData": o({"mimeType": e(st.just("image/png")), "data": e(st.just(IMAGE))}, {})},
            {},
        )
        g_call = o(
            {
                "functionCall": o(
                    {"name": e(st.just("get_weather")), "args": e(st.just({"city": "Paris"}))}, {}
                ),
                "thoughtSignature": e(st.just("skip_thought_signature_validator")),
            },
            {},
        )
        g_resp = o(
            {
                "functionResponse": o(
                    {"name": e(st.just("get_weather")), "response": e(st.just({"temp": 20}))}, {}
                )
            },
            {},
        )
        g_user = o(
            {
                "role": st.just("user"),
                "parts": e(st.lists(g_text | g_image, min_size=1, max_size=3)),
            },
            {},
        )
        if junk:
            g_odd = o(
                {},
                {
                    "text": e(texts),
                    "thought": json_values,
                    "thoughtSignature": e(
                        st.sampled_from(["skip_thought_signature_validator", "AAAA", "@@", ""])
                    ),
                    "inlineData": e(
                        o({"mimeType": e(texts), "data": e(st.sampled_from([IMAGE, "@@", ""]))}, {})
                    ),
                    "inline_data": json_values,
                    "functionCall": e(o({"name": e(texts)}, {"args": json_values, "id": e(texts)})),
                    "function_response": e(o({"name": e(texts)}, {"response": json_values})),
                    "fileData": json_values,
                },
            )
            g_user = g_user | o(
                {"role": e(st.sampled_from(["user", "model", "system", "function"]))},
                {"parts": e(st.lists(g_odd, max_size=3))},
            )
        g_turn = st.one_of(
            st.tuples(g_user).map(list),
            st.tuples(
                g_user,
                o({"role": st.just("model"), "parts": st.tuples(g_call).map(list)}, {}),
                o({"role": st.just("user"), "parts": st.tuples(g_resp).map(list)}, {}),
            ).map(list),
            st.tuples(
                g_user,
                o({"role": st.just("model"), "parts": st.tuples(g_text).map(list)}, {}),
                g_user,
            ).map(list),
        )
        self.gemini = o(
            {"contents": e(g_turn)},
            {
                "systemInstruction": e(o({"parts": st.tuples(g_text).map(list)}, {"role": st.just("user")})),
                "tools": e(
                    st.just(
                        [
                            {
                                "functionDeclarations": [
                                    {
                                        "name": "get_weather",
                                        "parameters": {
                                            "type": "object",
                                            "properties": {"city": {"type": "string"}},
                                        },
                                    }
                                ]
                            }
                        ]
                    )
                ),
                "toolConfig": e(st.just({"functionCallingConfig": {"mode": "AUTO"}})),
                "generationConfig": e(
                    o(
                        {},
                        {
                            "maxOutputTokens": e(small),
                            "temperature": e(st.floats(0, 2)),
                            "thinkingConfig": e(st.just({"thinkingBudget": 1024, "includeThoughts": True})),
                            "responseMimeType": e(st.sampled_from(["text/plain", "application/json"])),
                            "stopSequences": e(st.lists(words, max_size=2)),
                        },
                    )
                ),
                "safetySettings": e(
                    st.just([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}])
                ),
                **(
                    {
                        "system_instruction": json_values,
                        "cachedContent": json_values,
                        "generateContentRequest": json_values,
                        "generation_config": json_values,
                    }
                    if junk
                    else {}
                ),
            },
        )
        del b

    def either(self, good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """The right thing; in junk mode sometimes any JSON value instead."""
        return st.one_of(good, good, json_values) if self.junk else good

    def obj(
        self,
        required: dict[str, st.SearchStrategy[Any]],
        optional: dict[str, st.SearchStrategy[Any]],
    ) -> st.SearchStrategy[dict[str, Any]]:
        base = st.fixed_dictionaries(required, optional=optional)
        if not self.junk:
            return base
        unknown = st.dictionaries(texts.map(lambda t: "x_" + t), json_values, max_size=2)
        return st.tuples(base, unknown).map(lambda t: {**t[0], **t[1]})

    def route(self, name: str) -> st.SearchStrategy[dict[str, Any]]:
        return {
            "chat": self.chat,
            "completions": self.completions,
            "responses": self.responses,
            "messages": self.messages,
            "count_tokens": self.count_tokens,
        }.get(name, self.gemini)


VALID = Build(junk=False)
WILD = Build(junk=True)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid body with exactly one fault somewhere in it."""
    body = copy.deepcopy(draw(base))
    path = draw(st.sampled_from(_paths(body)))
    how = draw(st.sampled_from(["replace", "replace", "drop", "unknown"]))
    if not path:
        return draw(json_values) if how == "replace" else body
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = draw(json_values)
    elif how == "drop":
        parent.pop(last)  # works for dicts (key) and lists (index)
    else:
        target = parent[last]
        if isinstance(target, dict):
            target[draw(texts)] = draw(json_values)
        else:
            parent[last] = [target, draw(json_values)] if draw(st.booleans()) else {"x": target}
    return body


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; lone surrogates are escaped (ascii) or raw, i.e. invalid UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def malformed(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> bytes:
    raw = encode(draw(base), True)
    how = draw(
        st.sampled_from(["truncate", "insert", "replace", "binary", "trailing", "empty", "bom", "nan"])
    )
    if how == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    if how == "replace":
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        return (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\x00", b"{", b"]", b'"', b",", b"\\"]))
            + raw[at + 1 :]
        )
    if how == "binary":
        return draw(st.binary(max_size=64))
    if how == "trailing":
        return raw + draw(st.sampled_from([b"x", b"{}", b",", b"\x00", b" // comment"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "nan":
        return raw.replace(b"0", b"NaN", 1) if b"0" in raw else b'{"model": NaN}'
    return b""


def as_bytes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.tuples(values, st.booleans()).map(lambda t: encode(*t))


def bodies(name: str) -> st.SearchStrategy[bytes]:
    valid = VALID.route(name)
    return st.one_of(
        as_bytes(valid),
        as_bytes(mutated(valid)),
        as_bytes(WILD.route(name)),
        malformed(valid),
        as_bytes(json_values),  # any JSON at all
    )


# ---------------------------------------------------------------- regressions the fuzzers found
#
# Each was a 500 once (wrongly typed values reaching the translators); the
# fuzzers now send such bodies freely.


GEMINI_WRONG_TYPES = {
    "part-text-list": {"contents": [{"role": "user", "parts": [{"text": ["a"]}]}]},
    "part-text-number": {"contents": [{"role": "user", "parts": [{"text": 5}]}]},
    "part-text-null-beside-unknown": {"contents": [{"role": "user", "parts": [{"text": None, "x_": None}]}]},
    "thinkingConfig-string": {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"thinkingConfig": "on"},
    },
    "systemInstruction-parts-number": {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": 5},
    },
}


@pytest.mark.parametrize("case", list(GEMINI_WRONG_TYPES))
@pytest.mark.parametrize("route", [r for r in ROUTES if r.protocol == "gemini"], ids=lambda r: r.name)
def test_gemini_wrong_types_are_a_clean_400(fz: tuple[Daemon, httpx.Client], route: Route, case: str) -> None:
    _, client = fz
    body = json.dumps(GEMINI_WRONG_TYPES[case]).encode()
    resp = client.post(route.path, content=body, headers={"content-type": "application/json"})
    check(route.protocol, resp, case)
    assert resp.status_code == 400


WRONG_SCHEMAS = {
    "ref-to-a-list": {"type": "object", "$defs": {"n": [1]}, "properties": {"a": {"$ref": "#/$defs/n"}}},
    "ref-to-a-string": {
        "type": "object",
        "definitions": {"n": "x"},
        "properties": {"a": {"$ref": "#/definitions/n"}},
    },
    "allOf-beside-list-properties": {"allOf": [{"type": "object"}], "properties": [1]},
    "allOf-beside-number-required": {"allOf": [{"type": "object"}], "required": 5},
}


def tool_body(route: Route, schema: Any) -> dict[str, Any]:
    if route.protocol == "gemini":
        return {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}],
        }
    if route.name == "responses":
        return {
            "model": MODEL,
            "input": "hi",
            "tools": [{"type": "function", "name": "f", "parameters": schema}],
        }
    msgs = [{"role": "user", "content": "hi"}]
    if route.protocol == "anthropic":
        return {
            "model": MODEL,
            "max_tokens": 16,
            "messages": msgs,
            "tools": [{"name": "f", "input_schema": schema}],
        }
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    return {"model": MODEL, "messages": msgs, "tools": [tool]}


@pytest.mark.parametrize("case", list(WRONG_SCHEMAS))
@pytest.mark.parametrize("route", [r for r in ROUTES if r.name != "completions"], ids=lambda r: r.name)
def test_wrong_typed_tool_schema_is_not_a_500(
    fz: tuple[Daemon, httpx.Client], route: Route, case: str
) -> None:
    _, client = fz
    body = json.dumps(tool_body(route, WRONG_SCHEMAS[case])).encode()
    resp = client.post(route.path, content=body, headers={"content-type": "application/json"})
    check(route.protocol, resp, case)


# ---------------------------------------------------------------- proxy routes


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@FUZZ
@given(data=st.data())
def test_fuzz_proxy_route(
    fz: tuple[Daemon, httpx.Client], clean_log: None, route: Route, data: st.DataObject
) -> None:
    _, client = fz
    body = data.draw(bodies(route.name), label="body")
    content_type = data.draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]),
        label="content-type",
    )
    headers = {"content-type": content_type} if content_type else {}
    resp = client.post(route.path, content=body, headers=headers)
    check(route.protocol, resp, body[:600])


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_body_over_max_body_bytes_is_413(
    fz: tuple[Daemon, httpx.Client], clean_log: None, route: Route, chunked: bool
) -> None:
    _, client = fz
    big = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "x" * MAX_BODY}], "contents": []}
    ).encode()
    assert len(big) > MAX_BODY
    content: Any = big
    if chunked:
        content = iter([big[i : i + 65536] for i in range(0, len(big), 65536)])
    resp = client.post(route.path, content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text[:300]
    check(route.protocol, resp)
    # Just under the limit is read and judged on its content.
    ok = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "y" * (MAX_BODY - 200)}]}
    ).encode()
    assert len(ok) <= MAX_BODY
    resp = client.post(route.path, content=ok, headers={"content-type": "application/json"})
    assert resp.status_code != 413
    check(route.protocol, resp)


def nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    # a JSON schema, the one place where real clients do nest
    return '{"type":"object","properties":{"a":' * depth + '{"type":"string"}' + "}}" * depth


def deep_body(route: Route, depth: int, kind: str) -> bytes:
    inner = nested(depth, kind)
    if route.protocol == "gemini":
        return (
            '{"contents":[{"role":"user","parts":[{"text":"hi"}]}],'
            f'"tools":[{{"functionDeclarations":[{{"name":"f","parameters":{inner}}}]}}]}}'
        ).encode()
    msgs = '[{"role":"user","content":"hi"}]'
    if route.name == "completions":
        return f'{{"model":"{MODEL}","prompt":"hi","metadata":{inner}}}'.encode()
    if route.name == "responses":
        tool = f'{{"type":"function","name":"f","parameters":{inner}}}'
        return f'{{"model":"{MODEL}","input":"hi","tools":[{tool}]}}'.encode()
    if route.protocol == "anthropic":
        tool = f'{{"name":"f","input_schema":{inner}}}'
        return f'{{"model":"{MODEL}","max_tokens":16,"messages":{msgs},"tools":[{tool}]}}'.encode()
    tool = f'{{"type":"function","function":{{"name":"f","parameters":{inner}}}}}'
    return f'{{"model":"{MODEL}","messages":{msgs},"tools":[{tool}]}}'.encode()


def _deep_cases() -> list[Any]:
    cases = []
    for route in ROUTES:
        for depth in (600, 10_000):
            # completions has no tools: nest an unknown field instead (only the decoder sees it).
            kind = "schema" if route.name != "completions" else "object"
            cases.append(pytest.param(route, depth, kind, id=f"{route.name}-{depth}"))
    return cases


@pytest.mark.parametrize(("route", "depth", "kind"), _deep_cases())
def test_deep_nesting_is_a_clean_400(
    fz: tuple[Daemon, httpx.Client], route: Route, depth: int, kind: str
) -> None:
    _, client = fz
    resp = client.post(
        route.path,
        content=deep_body(route, depth, kind),
        headers={"content-type": "application/json"},
    )
    check(route.protocol, resp, f"{depth} levels of {kind}")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_moderate_nesting_is_served(fz: tuple[Daemon, httpx.Client], clean_log: None, route: Route) -> None:
    """A 64-level tool schema is unusual but legal: no 5xx, ideally served."""
    _, client = fz
    resp = client.post(
        route.path,
        content=deep_body(route, 64, "schema"),
        headers={"content-type": "application/json"},
    )
    check(route.protocol, resp, "64 levels")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_hostile_unicode_round_trips(fz: tuple[Daemon, httpx.Client], clean_log: None, route: Route) -> None:
    """NUL, RTL marks, BOM, astral characters: served; lone surrogates: a clean 400."""
    _, client = fz
    text = "a\x00b \u202edlrow\u202c \ufeff \U0001d54f \u0085 \u2028 end"
    body: dict[str, Any]
    if route.protocol == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    elif route.name == "completions":
        body = {"model": MODEL, "prompt": text}
    elif route.name == "responses":
        body = {"model": MODEL, "input": text}
    else:
        body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    resp = client.post(route.path, content=encode(body, False), headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text[:300]
    check(route.protocol, resp)
    # Escaped lone surrogates (raw ones as invalid UTF-8: test_invalid_utf8_is_a_clean_400).
    for lone in ("\ud800", "\udfff", "a\udbff"):
        bad = json.dumps(body).replace(json.dumps(text)[1:-1], json.dumps(lone)[1:-1]).encode()
        assert bad != json.dumps(body).encode()
        resp = client.post(route.path, content=bad, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text[:300]
        check(route.protocol, resp)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_invalid_utf8_is_a_clean_400(fz: tuple[Daemon, httpx.Client], route: Route) -> None:
    _, client = fz
    for raw in (b"\xed\xa0\x80", b"\xff", b"\xc3", b"\xf4\x90\x80\x80"):
        body = (
            b'{"model": "'
            + MODEL.encode()
            + b'", "messages": [{"role": "user", "content": "a'
            + raw
            + b'"}], '
        )
        body += (
            b'"contents": [{"role": "user", "parts": [{"text": "a'
            + raw
            + b'"}]}], "prompt": "a'
            + raw
            + b'"}'
        )
        resp = client.post(route.path, content=body, headers={"content-type": "application/json"})
        check(route.protocol, resp, body)
        assert resp.status_code == 400


# ---------------------------------------------------------------- admin API


@contextlib.contextmanager
def admin_daemon(fake: FakeGoogle, what: str) -> Iterator[tuple[Daemon, httpx.Client, dict[str, str]]]:
    fake.reset()
    home = Path(tempfile.mkdtemp(prefix="ag-a-", dir="/tmp"))
    email = f"fuzz-{what}-{uid()}@example.com"
    d = start_daemon(fake, home, [email], proxy={"auth_mode": "strict"})
    acct = d.admin("GET", "/accounts")["accounts"][0]
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://d", timeout=30)
    try:
        yield d, client, {"id": acct["id"], "email": email}
        st_ = client.get("/status")
        assert st_.status_code == 200 and st_.json()["daemon"]["pid"] == d.proc.pid  # type: ignore[union-attr]
        assert client.get("/accounts").status_code == 200
    finally:
        client.close()
        d.stop()
        shutil.rmtree(home, ignore_errors=True)
        fake.reset()


@pytest.fixture(scope="module")
def adm(fake: FakeGoogle) -> Iterator[tuple[Daemon, httpx.Client, dict[str, str]]]:
    """A daemon of its own for the admin fuzzing of accounts."""
    with admin_daemon(fake, "admin") as x:
        yield x


@pytest.fixture(scope="module")
def cfgd(fake: FakeGoogle) -> Iterator[tuple[Daemon, httpx.Client, dict[str, str]]]:
    """Another for the config fuzzing (keys get random values, URLs included)."""
    with admin_daemon(fake, "config") as x:
        yield x


@pytest.fixture
def clean_config_log(cfgd: tuple[Daemon, httpx.Client, dict[str, str]]) -> Iterator[None]:
    yield from _no_new_traceback(cfgd[0])


def pct(segment: str) -> str:
    """Percent-encode a path segment, lone surrogates as their (invalid) UTF-8 bytes."""
    return quote(segment.encode("utf-8", "surrogatepass"), safe="")


def _config_keys() -> list[str]:
    from daemon import config as config_mod

    return [k for k in config_mod.keys() if "<" not in k] + [
        "models.gpt-4o",
        "models.*",
        "proxy",
        "models",
        "",
    ]


def admin_bodies(good: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return st.one_of(as_bytes(good), as_bytes(mutated(good)), malformed(good), as_bytes(json_values))


either = WILD.either
obj = WILD.obj


config_values = st.one_of(
    texts,
    st.sampled_from(
        [
            "0",
            "-1",
            "1",
            "65536",
            "true",
            "off",
            "strict",
            "sk-short",
            "sk-" + "a" * 40,
            "[]",
            '["http://x"]',
            "{}",
            '{"a": "b"}',
            "http://[",
            "1e999",
            "nan",
        ]
    ),
)


@FUZZ
@given(data=st.data())
def test_fuzz_admin_config_set(
    cfgd: tuple[Daemon, httpx.Client, dict[str, str]], clean_config_log: None, data: st.DataObject
) -> None:
    _, client, _ = cfgd
    key = data.draw(st.one_of(st.sampled_from(_config_keys()), texts), label="key")
    body = data.draw(admin_bodies(obj({"value": either(config_values)}, {})), label="body")
    resp = client.put(f"/config/{pct(key)}", content=body, headers={"content-type": "application/json"})
    check("admin", resp, (key, body[:300]))


@FUZZ
@given(data=st.data())
def test_fuzz_admin_add_account(
    adm: tuple[Daemon, httpx.Client, dict[str, str]], clean_admin_log: None, data: st.DataObject
) -> None:
    _, client, _ = adm
    token = either(st.one_of(texts, texts.map(lambda t: "1//" + t)))
    body = data.draw(admin_bodies(obj({"refresh_token": token}, {})), label="body")
    resp = client.post("/accounts", content=body, headers={"content-type": "application/json"})
    check("admin", resp, body[:300])


@FUZZ
@given(data=st.data())
def test_fuzz_admin_account_action(
    adm: tuple[Daemon, httpx.Client, dict[str, str]], clean_admin_log: None, data: st.DataObject
) -> None:
    _, client, acct = adm
    ref = data.draw(
        st.one_of(
            st.sampled_from([acct["id"], acct["email"], acct["id"][:4], acct["email"].upper()]),
            texts,
        ),
        label="ref",
    )
    action = data.draw(
        st.one_of(st.sampled_from(["enable", "disable", "reset", "refresh"]), texts), label="action"
    )
    body = data.draw(admin_bodies(obj({}, {"reason": json_values})), label="body")
    resp = client.post(
        f"/accounts/{pct(ref)}/{pct(action)}",
        content=body,
        headers={"content-type": "application/json"},
    )
    check("admin", resp, (ref, action, body[:300]))
    if ref == acct["id"] and action == "disable" and resp.status_code == 200:
        client.post(f"/accounts/{acct['id']}/enable")


def test_admin_deep_nesting_is_a_clean_400(
    adm: tuple[Daemon, httpx.Client, dict[str, str]],
) -> None:
    _, client, acct = adm
    deep = ('{"value":' + "[" * 10_000 + "]" * 10_000 + "}").encode()
    for method, path in (
        ("PUT", "/config/proxy.request_timeout"),
        ("POST", "/accounts"),
        ("POST", f"/accounts/{acct['id']}/disable"),
    ):
        resp = client.request(method, path, content=deep, headers={"content-type": "application/json"})
        check("admin", resp, f"{method} {path} 10,000 levels")


def test_admin_invalid_utf8_is_a_clean_400(
    adm: tuple[Daemon, httpx.Client, dict[str, str]],
) -> None:
    _, client, _ = adm
    resp = client.put(
        "/config/proxy.request_timeout",
        content=b'{"value": "3\xff"}',
        headers={"content-type": "application/json"},
    )
    check("admin", resp)
    resp = client.post(
        "/accounts",
        content=b'{"refresh_token": "1//\xed\xa0\x80"}',
        headers={"content-type": "application/json"},
    )
    check("admin", resp)


def test_admin_huge_body_is_refused_cleanly(
    adm: tuple[Daemon, httpx.Client, dict[str, str]], clean_admin_log: None
) -> None:
    _, client, _ = adm
    huge = encode({"value": "x" * (12 * 1024 * 1024)}, True)
    resp = client.put(
        "/config/proxy.request_timeout", content=huge, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413, resp.text[:300]
    assert resp.json()["error"]["kind"] == "too_large"
    check("admin", resp)


@pytest.mark.parametrize("key", ["oauth.token_url", "oauth.auth_url", "oauth.userinfo_url", "zai.base_url"])
def test_config_rejects_a_url_that_is_not_one(
    cfgd: tuple[Daemon, httpx.Client, dict[str, str]], key: str
) -> None:
    _, client, _ = cfgd
    resp = client.put(f"/config/{key}", json={"value": "not a url"})
    check("admin", resp)
    assert resp.status_code == 400, resp.text
