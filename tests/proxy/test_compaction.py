"""Issue 24: long sessions survive. Codex's remote compaction (a
``compaction_trigger`` on /v1/responses, and /v1/responses/compact) answered
with one sealed compaction item; that item coming back as the summary in the
upstream conversation; context overflow in each client's own shape.

One daemon for the module, with its own account whose catalog gives
``gemini-3.1-flash-lite`` and ``claude-sonnet-4-6`` a small input limit.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from openai import OpenAI

from daemon.protocols.openai_compaction import SUMMARY_INSTRUCTION
from tests.conftest import Daemon, pooled_daemon
from tests.ctl.test_real_clients import client_bin, function_responses, run
from tests.fakes.google import FakeGoogle, Reply

EMAIL = "compaction@example.com"
GEMINI = "gemini-3-flash"
CLAUDE = "claude-sonnet-4-6"
SMALL = "gemini-3.1-flash-lite"
LIMIT = 8000  # tokens: the input limit of SMALL and CLAUDE in this account's catalog
SUMMARY = "SUMMARY: the user is fixing the parser in src/parse.py; tests 3 and 7 still fail."
TRIGGER = {"type": "compaction_trigger"}
CONVERSATION: list[dict[str, Any]] = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix src/parse.py"}]},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "I looked at it; tests 3 and 7 fail."}],
    },
    {"type": "message", "role": "user", "content": "keep going"},
]


@pytest.fixture(scope="module")
def daemon(fake: FakeGoogle) -> Iterator[Daemon]:
    fake.add_account(
        email=EMAIL, models={GEMINI: {}, SMALL: {"maxTokens": LIMIT}, CLAUDE: {"maxTokens": LIMIT}}
    )
    with pooled_daemon(fake, [EMAIL], "ag-cmp-") as d:
        yield d


@pytest.fixture
def proxy(daemon: Daemon, fake: FakeGoogle) -> Iterator[Daemon]:
    fake.reset()
    yield daemon
    fake.reset()


@pytest.fixture
def client(proxy: Daemon) -> Iterator[OpenAI]:
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0, timeout=30) as c:
        yield c


def wait_running(d: Daemon) -> None:
    """After a restart the proxy comes back on its own (state.json)."""
    for _ in range(200):
        state = d.status["proxy"]["state"]
        if state == "running":
            return
        if state == "stopped":
            d.admin("POST", "/proxy/start")
        time.sleep(0.05)
    raise AssertionError(f"the proxy did not come back: {d.status['proxy']}")


def generate_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent")]


def upstream_texts(call: Any) -> list[str]:
    """Every text part the upstream got, in order (system instruction first)."""
    req = call.body["request"]
    texts = [p["text"] for p in (req.get("systemInstruction") or {}).get("parts", []) if "text" in p]
    for content in req["contents"]:
        texts += [p["text"] for p in content["parts"] if "text" in p]
    return texts


def compaction_items(output: list[Any]) -> list[Any]:
    return [it for it in output if getattr(it, "type", None) == "compaction"]


# ------------------------------------------------------------ compaction


def test_trigger_non_stream_answers_one_compaction_item(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text(SUMMARY)])
    resp = client.responses.create(
        model=GEMINI,
        instructions="You are a coding agent.",
        input=[*CONVERSATION, TRIGGER],  # type: ignore[list-item]
    )
    assert resp.status == "completed"
    assert len(resp.output) == 1
    (item,) = compaction_items(resp.output)
    assert item.encrypted_content and SUMMARY not in item.encrypted_content  # opaque
    # The upstream was asked for a summary of the conversation, with no trigger in it.
    (call,) = generate_calls(fake)
    texts = upstream_texts(call)
    assert "fix src/parse.py" in texts and "keep going" in texts[-2]
    assert "summary" in texts[-1].lower() and "compaction_trigger" not in str(call.body)


def test_trigger_stream_events(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text(SUMMARY, chunks=3)])
    tools: Any = [
        {
            "type": "function",
            "name": "exec_command",
            "description": "run a command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        }
    ]
    with client.responses.stream(
        model=GEMINI,
        input=[*CONVERSATION, TRIGGER],
        tools=tools,  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    done = [e for e in events if e.type == "response.output_item.done"]
    # What Codex's remote compaction v2 counts: exactly one compaction item
    # among the output_item.done events, then response.completed.
    assert [d.item.type for d in done] == ["compaction"]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index("response.output_item.done")
    assert "response.output_text.delta" not in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [it.type for it in final.output] == ["compaction"]
    assert final.output[0].encrypted_content == done[0].item.encrypted_content  # type: ignore[union-attr]
    # Tools stay declared (the history may hold calls) but cannot be called.
    (call,) = generate_calls(fake)
    assert call.body["request"]["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_compact_endpoint_with_the_sdk(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text(SUMMARY)])
    resp = client.responses.compact(model=GEMINI, input=CONVERSATION)  # type: ignore[arg-type]
    assert resp.object == "response.compaction"
    assert resp.id.startswith("resp_") and resp.created_at > 0
    # "a list of all user messages, followed by a single compaction item"
    assert [it.type for it in resp.output] == ["message", "message", "compaction"]
    assert [getattr(it, "role", None) for it in resp.output[:2]] == ["user", "user"]
    assert resp.usage.total_tokens >= 0
    # The item goes back in the next turn: the upstream sees the summary.
    fake.script([Reply.text("carrying on")])
    item = resp.output[-1]
    nxt = client.responses.create(
        model=GEMINI,
        input=[
            {"type": "compaction", "encrypted_content": item.encrypted_content},  # type: ignore[union-attr]
            {"role": "user", "content": "what next?"},
        ],
    )
    assert nxt.output_text == "carrying on"
    assert any(SUMMARY in t for t in upstream_texts(generate_calls(fake)[-1]))


def test_compaction_item_round_trip(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text(SUMMARY)])
    first = client.responses.create(model=GEMINI, input=[*CONVERSATION, TRIGGER])  # type: ignore[list-item]
    blob = first.output[0].encrypted_content  # type: ignore[union-attr]
    # Codex's next history: the user messages, the compaction item, the new turn.
    fake.script([Reply.text("done")])
    client.responses.create(
        model=GEMINI,
        input=[
            {"role": "user", "content": "fix src/parse.py"},
            {"type": "compaction", "encrypted_content": blob},
            {"role": "user", "content": "now run the tests"},
        ],
    )
    texts = upstream_texts(generate_calls(fake)[-1])
    summary = [t for t in texts if SUMMARY in t]
    assert summary and summary[0].startswith("Summary of the earlier part of this conversation")
    assert texts[-1] == "now run the tests"
    # A second compaction over a history that holds the first one works too.
    fake.script([Reply.text(SUMMARY + " Tests pass now.")])
    again = client.responses.create(
        model=GEMINI,
        input=[{"type": "compaction", "encrypted_content": blob}, {"role": "user", "content": "x"}, TRIGGER],
    )
    assert [it.type for it in again.output] == ["compaction"]
    assert any(SUMMARY in t for t in upstream_texts(generate_calls(fake)[-1]))


def test_tampered_or_foreign_blob_is_a_400(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text(SUMMARY)])
    blob = client.responses.create(model=GEMINI, input=[*CONVERSATION, TRIGGER])  # type: ignore[list-item]
    good = base64.urlsafe_b64decode(blob.output[0].encrypted_content)  # type: ignore[union-attr]
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    n = len(generate_calls(fake))
    for bad in (base64.urlsafe_b64encode(flipped).decode(), "gAAAAABnot-ours", "x"):
        with pytest.raises(openai.BadRequestError) as err:
            client.responses.create(
                model=GEMINI,
                input=[{"type": "compaction", "encrypted_content": bad}, {"role": "user", "content": "go"}],
            )
        assert err.value.status_code == 400
        assert err.value.code == "invalid_encrypted_content"
        assert "cannot open" in err.value.message and err.value.param == "input[0].encrypted_content"
    assert len(generate_calls(fake)) == n  # nothing went upstream


def test_key_survives_a_restart(proxy: Daemon, fake: FakeGoogle) -> None:
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0) as c:
        fake.script([Reply.text(SUMMARY)])
        blob = c.responses.create(model=GEMINI, input=[*CONVERSATION, TRIGGER])  # type: ignore[list-item]
    key_file = proxy.home / "data" / "compaction.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes()) == 32
    proxy.stop()
    proxy.start()
    wait_running(proxy)
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0) as c:
        fake.script([Reply.text("still here")])
        nxt = c.responses.create(
            model=GEMINI,
            input=[
                {"type": "compaction", "encrypted_content": blob.output[0].encrypted_content},  # type: ignore[union-attr]
                {"role": "user", "content": "go on"},
            ],
        )
    assert nxt.output_text == "still here"
    assert any(SUMMARY in t for t in upstream_texts(generate_calls(fake)[-1]))


# ------------------------------------------------------------ context overflow

BIG = "word " * (LIMIT * 2)  # 5 bytes a word: about 2.5 x LIMIT tokens at bytes/4


def test_openai_context_length_exceeded(client: OpenAI, fake: FakeGoogle) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": BIG}])
    assert chat.value.code == "context_length_exceeded" and chat.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as resp:
        client.responses.create(model=SMALL, input=BIG)
    assert resp.value.code == "context_length_exceeded" and str(LIMIT) in resp.value.message
    with pytest.raises(openai.BadRequestError) as streamed:
        client.responses.create(model=SMALL, input=BIG, stream=True)
    assert streamed.value.code == "context_length_exceeded"
    assert not generate_calls(fake)  # refused before any account was asked


def test_anthropic_prompt_is_too_long(proxy: Daemon, fake: FakeGoogle) -> None:
    c = anthropic.Anthropic(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as err:
        c.messages.create(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": BIG}])
    assert err.value.status_code == 400
    body: Any = err.value.body
    assert body["error"]["type"] == "invalid_request_error"
    message = body["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith(f" tokens > {LIMIT} maximum")
    assert not generate_calls(fake)


def test_gemini_input_token_count(proxy: Daemon, fake: FakeGoogle) -> None:
    client = genai.Client(api_key=proxy.api_key, http_options={"base_url": proxy.base_url})
    with pytest.raises(genai_errors.ClientError) as err:
        client.models.generate_content(model=SMALL, contents=BIG)
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert f"exceeds the maximum number of tokens allowed ({LIMIT})" in str(err.value.message)


def test_google_too_long_answer_is_mapped_without_cooldown(proxy: Daemon, fake: FakeGoogle) -> None:
    """Google's own "too long" (a prompt under the gateway's estimate):
    the client's shape, a 400, and the account stays usable."""
    too_long = "The input token count (1234567) exceeds the maximum number of tokens allowed (1048576)."
    fake.script([Reply.error(400, message=too_long)])
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as err:
            c.responses.create(model=GEMINI, input="hello")
        assert err.value.code == "context_length_exceeded"
        fake.script([Reply.error(400, message="prompt is too long: 202007 tokens > 200000 maximum")])
        a = anthropic.Anthropic(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as aerr:
            a.messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        body: Any = aerr.value.body
        assert body["error"]["message"] == "prompt is too long: 202007 tokens > 200000 maximum"
        # The same account answers the next request at once: no cooldown.
        assert c.responses.create(model=GEMINI, input="hello again").output_text
    accounts = proxy.admin("GET", "/accounts")["accounts"]
    assert all(a["state"] == "active" for a in accounts)


def test_count_tokens_is_never_refused(proxy: Daemon) -> None:
    """Counting a long prompt is how a client decides to compact: no refusal there."""
    r = httpx.post(
        proxy.base_url + "/v1/messages/count_tokens",
        headers={"x-api-key": proxy.api_key, "anthropic-version": "2023-06-01"},
        json={"model": CLAUDE, "messages": [{"role": "user", "content": BIG}]},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["input_tokens"] > 0


# ------------------------------------------------------------ the real Codex

#: How Codex's LOCAL compaction asks for its summary (codex-rs ``templates/compact/
#: prompt.md``, seen from 0.171 on the wire): an ordinary /v1/responses turn whose
#: last user text starts so ...
LOCAL_SUMMARY_PROMPT = "You are performing a CONTEXT CHECKPOINT COMPACTION"
#: ... and the user text that carries the summary back on every later turn
#: (``summary_prefix.md``), followed by the summary itself.
LOCAL_SUMMARY_PREFIX = "Another language model started to solve this problem"
#: Three tool calls, then the answer: Codex with a tiny auto-compact limit
#: compacts after each tool result, so at least twice before it answers.
STEPS = [
    Reply.function_call("exec_command", {"cmd": "echo step-$((1+1))"}),
    Reply.function_call("exec_command", {"cmd": "echo step-$((2+1))"}),
    Reply.function_call("exec_command", {"cmd": "echo step-$((3+1))"}),
    Reply.text("The commands printed step-2, step-3 and step-4."),
]
STEP_OUTPUTS = ["step-2", "step-3", "step-4"]


def _asks_for_summary(req: dict[str, Any]) -> bool:
    return _last_user_text_has(req, SUMMARY_INSTRUCTION)


def _asks_for_local_summary(req: dict[str, Any]) -> bool:
    return _last_user_text_has(req, LOCAL_SUMMARY_PROMPT)


def _last_user_text_has(req: dict[str, Any], marker: str) -> bool:
    contents = req.get("contents") or []
    last = contents[-1] if contents else {}
    return any(marker in str(p.get("text", "")) for p in last.get("parts", []))


def _codex(proxy: Daemon, short_tmp: Any, provider_name: str) -> subprocess.CompletedProcess[str]:
    """``codex exec`` on a three-step task, with an auto-compact limit far under
    one turn's size (instructions and tools alone are several thousand tokens)."""
    exe = client_bin("codex")
    if not exe:
        pytest.skip("Codex is not installed (npm install @openai/codex)")
    work = short_tmp / "work"
    home = work / "codex"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f'model = "{GEMINI}"\nmodel_provider = "ag"\napproval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\nmodel_auto_compact_token_limit = 2000\n\n'
        f'[model_providers.ag]\nname = "{provider_name}"\n'
        f'base_url = "{proxy.base_url}/v1"\nenv_key = "AG_KEY"\nwire_api = "responses"\n'
    )
    return run(
        [exe, "exec", "--skip-git-repo-check", "Run echo step-$((N+1)) for N = 1, 2, 3 and report"],
        {"CODEX_HOME": str(home), "AG_KEY": proxy.api_key, "HOME": str(work)},
        work,
    )


def test_real_codex_compacts_remotely(proxy: Daemon, fake: FakeGoogle, short_tmp: Any) -> None:
    """Codex with a provider named "OpenAI" compacts remotely (compaction v2);
    a tiny auto-compact limit makes it compact mid-task, after each tool call.
    The multi-turn session compacts at least twice and completes, and the turn
    after each compaction carries the summary (the fake's default answer to the
    summary request), opened from the sealed item."""
    # Summary requests get the fake's default answer ("Hello from <model> ..."):
    # whenever Codex compacts, the scripted task replies stay in order.
    fake.unscripted_when = _asks_for_summary
    fake.script(STEPS)
    res = _codex(proxy, short_tmp, "OpenAI")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "step-2, step-3 and step-4" in res.stdout
    calls = [c for c in generate_calls(fake) if c.status == 200]
    summaries = [i for i, c in enumerate(calls) if _asks_for_summary(c.body["request"])]
    assert len(summaries) >= 2, f"Codex compacted {len(summaries)} time(s)"
    assert not _asks_for_summary(calls[-1].body["request"])  # it finished with an ordinary turn
    for n, i in enumerate(summaries):
        # The next turn carried the summary back (opened from the item) ...
        nxt = calls[i + 1]
        assert not _asks_for_summary(nxt.body["request"])
        assert any("Summary of the earlier part" in t and "Hello from" in t for t in upstream_texts(nxt))
        # ... and the tool ran before the compaction: its output was in what got
        # summarised (Codex keeps only user messages and the item afterwards).
        assert any(STEP_OUTPUTS[n] in str(r) for r in function_responses(calls[i]))
    # Nothing of Codex's own local compaction: the gateway wrote the summaries.
    assert not any(_asks_for_local_summary(c.body["request"]) for c in calls)


def test_real_codex_compacts_locally(proxy: Daemon, fake: FakeGoogle, short_tmp: Any) -> None:
    """Codex with a provider NOT named "OpenAI" compacts locally: an ordinary
    streamed /v1/responses turn (0.171 declares no tools on it, though the
    history holds tool calls) whose history ends with Codex's own
    summarisation prompt as a user message; the answer's text
    becomes a user message (``LOCAL_SUMMARY_PREFIX`` + the summary) in the next
    history, after the user's own messages. Nothing compaction-specific reaches
    the gateway, so this checks that an ordinary turn carries it through: the
    tool session compacts at least twice and completes."""
    fake.unscripted_when = _asks_for_local_summary
    fake.script(STEPS)
    res = _codex(proxy, short_tmp, "ag")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "step-2, step-3 and step-4" in res.stdout
    assert res.stderr.count("context compacted") >= 2, res.stderr
    calls = [c for c in generate_calls(fake) if c.status == 200]
    summaries = [i for i, c in enumerate(calls) if _asks_for_local_summary(c.body["request"])]
    assert len(summaries) >= 2, f"Codex compacted {len(summaries)} time(s)"
    assert not _asks_for_local_summary(calls[-1].body["request"])
    for n, i in enumerate(summaries):
        assert STEP_OUTPUTS[n] in str(function_responses(calls[i]))
        assert calls[i].method == "streamGenerateContent"
        nxt = calls[i + 1]
        texts = upstream_texts(nxt)
        carried = [t for t in texts if t.startswith(LOCAL_SUMMARY_PREFIX)]
        assert carried and "Hello from" in carried[0], texts
        # The history was replaced: no earlier tool call or result is left.
        assert not function_responses(nxt)
    # Not the gateway's remote compaction: no summary instruction of its own.
    assert not any(_asks_for_summary(c.body["request"]) for c in calls)


# ------------------------------------------------------------ the real Claude Code

CC_EMAIL = "compaction-cc@example.com"
CC_MODEL = "claude-opus-4-6-thinking"
#: Claude Code's first request alone is about 12 000 tokens by the gateway's
#: estimate (system prompt, tools, reminders; 2.1.332 on its default Opus;
#: 21 000 with --model claude-sonnet-4-6); each tool result below adds about
#: 7 000. Over this limit (x 1.1, the gateway's margin) the session overflows at
#: the fourth result and again at the sixth; a summary and the latest result fit.
CC_LIMIT = 30000
#: How Claude Code asks for its summary: a last user text (2.1.332).
CC_SUMMARY_PROMPT = "CRITICAL: Respond with TEXT ONLY. Do NOT call any tools."
#: How the summary comes back at the head of the compacted conversation.
CC_CONTINUED = "This session is being continued from a previous conversation that ran out of context."
CC_SUMMARY = (
    "<analysis>Six commands to run.</analysis>\n"
    "<summary>1. Primary Request: run the commands; this is summary {n}.</summary>"
)


@pytest.fixture
def claude_proxy(fake: FakeGoogle) -> Iterator[Daemon]:
    """A daemon whose one account serves a single Claude model (the Opus that
    Claude Code's own default name resolves to) with a small input limit."""
    fake.add_account(email=CC_EMAIL, models={CC_MODEL: {"maxTokens": CC_LIMIT}, GEMINI: {}})
    with pooled_daemon(fake, [CC_EMAIL], "ag-cmpcc-") as d:
        fake.reset()
        yield d
        fake.reset()


def _asks_claude_code_summary(req: dict[str, Any]) -> bool:
    return _last_user_text_has(req, CC_SUMMARY_PROMPT)


def test_real_claude_code_compacts_on_prompt_too_long(
    claude_proxy: Daemon, fake: FakeGoogle, short_tmp: Any
) -> None:
    """Claude Code with a model whose input limit is smaller than its session.

    How Claude Code 2.1.332 compacts. Proactively, when the prompt nears a
    threshold taken from its own table of context windows by model name
    (at least 100 000 tokens, as is its CLAUDE_CODE_AUTO_COMPACT_WINDOW
    setting; it asks no endpoint for a window), or a percentage of that
    window set by CLAUDE_AUTOCOMPACT_PCT_OVERRIDE: no help for a limit it
    cannot know. And REACTIVELY, which needs nothing from the user: on a 400
    ``invalid_request_error`` whose message says "prompt is too long" (it
    reads the gap from "N tokens > M maximum") it summarises the oldest
    rounds (a request ending with ``CC_SUMMARY_PROMPT``, tools still
    declared), puts ``CC_CONTINUED`` + the summary in their place and
    retries, within the same ``claude -p`` run. The gateway refuses an
    over-long prompt in that shape before asking any account (its estimate
    over the catalog's limit), which is all it takes."""
    exe = client_bin("claude")
    if not exe:
        pytest.skip("Claude Code is not installed (npm install @anthropic-ai/claude-code)")
    work = short_tmp / "work"
    home = work / "home"
    home.mkdir(parents=True)
    summaries: list[str] = []

    def summary_reply(req: dict[str, Any]) -> Reply | None:
        if not _asks_claude_code_summary(req):
            return None
        summaries.append(CC_SUMMARY.format(n=len(summaries) + 1))
        return Reply.text(summaries[-1])

    # Side requests (no tools) get the default answer; summary requests a summary
    # in the shape Claude Code asks for; the task's replies stay in order.
    fake.unscripted_when = lambda req: not req.get("tools")
    fake.reply_when = summary_reply
    # Each command prints about 28 KB (under Claude Code's 30 000-character cut of
    # a command's output), then its marker.
    steps = [f"seq {10000 * i} {10000 * i + 3999}; echo marker-{i}" for i in range(1, 7)]
    fake.script(
        [Reply.function_call("Bash", {"command": cmd, "description": "print numbers"}) for cmd in steps]
        + [Reply.text("The last command printed marker-6.")]
    )
    res = run(
        [
            exe,
            "-p",
            "Run the six commands I will be given and report the last marker",
            "--dangerously-skip-permissions",
        ],
        {
            "ANTHROPIC_BASE_URL": claude_proxy.base_url,
            "ANTHROPIC_API_KEY": claude_proxy.api_key,
            "IS_SANDBOX": "1",
            "HOME": str(home),
            "DISABLE_AUTOUPDATER": "1",
        },
        work,
    )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "marker-6" in res.stdout
    # The gateway refused over-long prompts (answered as Anthropic's "prompt is
    # too long: N tokens > M maximum", see test_anthropic_prompt_is_too_long) ...
    calls = [c for c in generate_calls(fake) if c.status == 200]
    # (The request log is written off the event loop, in batches: the last
    # rows may land a moment after the CLI exits.)
    deadline = time.monotonic() + 10
    while True:
        rows = claude_proxy.admin("GET", "/logs")["rows"]
        # Every request that was not refused made one call; Claude Code may
        # have given up on one before its answer ended (a row of another status).
        not_refused = [r for r in rows if r["route"] == "messages" and r["status"] != 400]
        if len(not_refused) >= len(calls) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    refused = [r for r in rows if r["route"] == "messages" and r["status"] == 400]
    assert refused and all("maximum context length is 30000" in r["error"] for r in refused), rows
    # ... none of them reached an account ...
    assert len(calls) == len(not_refused), [(r["status"], r["error"]) for r in not_refused]
    assert all(c.model == CC_MODEL for c in calls)
    # ... and Claude Code compacted, twice over the six commands: each summary
    # request ended with its prompt, each got its summary.
    asked = [c for c in calls if _asks_claude_code_summary(c.body["request"])]
    assert len(summaries) >= 2 and len(asked) == len(summaries), "Claude Code compacted less than twice"
    # Each summary request was answered, then the request after it carried that
    # summary back (the retry of the turn that was refused).
    for n, c in enumerate(asked):
        nxt = calls[calls.index(c) + 1]
        carried = [t for t in upstream_texts(nxt) if CC_CONTINUED in t]
        assert carried and f"this is summary {n + 1}." in carried[0], upstream_texts(nxt)
        assert not _asks_claude_code_summary(nxt.body["request"])
    # The session finished on the latest summary and the last command's output;
    # the first commands' outputs are gone.
    last = calls[-1]
    assert not _asks_claude_code_summary(last.body["request"])
    assert any(f"this is summary {len(summaries)}." in t for t in upstream_texts(last))
    outputs = json.dumps(function_responses(last))
    assert "marker-6" in outputs and "marker-1" not in outputs


# ------------------------------------------------------------ units


def test_sealer_opens_only_its_own_blobs(tmp_path: Any) -> None:
    from daemon.compaction import Sealer

    a, b = Sealer(tmp_path / "a" / "compaction.key"), Sealer(tmp_path / "b" / "compaction.key")
    blob = a.seal("the summary")
    assert a.open(blob) == "the summary"
    assert Sealer(tmp_path / "a" / "compaction.key").open(blob) == "the summary"  # key reread
    assert b.open(blob) is None  # another key
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[0] = 2
    assert a.open(base64.urlsafe_b64encode(bytes(raw)).decode()) is None  # another version
    assert a.open("") is None and a.open("***") is None


def test_token_counts_from_upstream_texts() -> None:
    from daemon.errors import token_counts

    assert token_counts("prompt is too long: 202007 tokens > 200000 maximum") == (202007, 200000)
    assert token_counts(
        "The input token count (1234567) exceeds the maximum number of tokens allowed (1048576)."
    ) == (1234567, 1048576)
    assert token_counts("Request payload size exceeds the limit") == (None, None)
