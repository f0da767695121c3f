"""The upstream rules applied to every translated request (daemon.protocols.rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from daemon.protocols import rules


@dataclass(frozen=True)
class Limits:
    max_output_tokens: int | None = None
    supports_thinking: bool = True
    min_thinking_budget: int | None = None


CLAUDE = Limits(max_output_tokens=64000, min_thinking_budget=None)
FLASH = Limits(max_output_tokens=65536, min_thinking_budget=32)
LITE = Limits(max_output_tokens=65535, supports_thinking=False)


def _req(gen: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    if gen is not None:
        req["generationConfig"] = gen
    if tools is not None:
        req["tools"] = [{"functionDeclarations": tools}]
    return req


@pytest.mark.parametrize(
    ("model", "limits", "asked", "sent"),
    [
        ("gemini-3-flash", FLASH, 65536, 64000),  # safe cap under the catalog's 65536
        ("gemini-3-flash", FLASH, 1000, 1000),
        ("claude-sonnet-4-6", CLAUDE, 128000, 64000),
        ("gpt-oss-120b-medium", Limits(max_output_tokens=32768), 64000, 32768),
        ("unknown-model", None, 100000, 64000),
    ],
)
def test_max_output_capped(model: str, limits: Limits | None, asked: int, sent: int) -> None:
    req = _req({"maxOutputTokens": asked})
    notes = rules.apply(req, model=model, limits=limits)
    assert req["generationConfig"]["maxOutputTokens"] == sent
    assert bool(notes) == (asked != sent)


def test_claude_budget_stays_below_max_output() -> None:
    req = _req(
        {"maxOutputTokens": 128000, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 64000}}
    )
    rules.apply(req, model="claude-opus-4-6-thinking", limits=CLAUDE)
    gen = req["generationConfig"]
    assert gen["maxOutputTokens"] == 64000
    assert gen["thinkingConfig"]["thinkingBudget"] == 63999


def test_claude_thinking_off_when_no_room() -> None:
    req = _req({"maxOutputTokens": 900, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2000}})
    notes = rules.apply(req, model="claude-sonnet-4-6", limits=CLAUDE)
    assert "thinkingConfig" not in req["generationConfig"]
    assert any("1024" in n for n in notes)


def test_claude_budget_raised_to_minimum() -> None:
    req = _req({"maxOutputTokens": 8000, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 200}})
    rules.apply(req, model="claude-sonnet-4-6", limits=CLAUDE)
    assert req["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024


def test_non_thinking_model_loses_thinking_config() -> None:
    req = _req({"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 4000}})
    rules.apply(req, model="gemini-3.1-flash-lite", limits=LITE)
    assert "generationConfig" not in req


@pytest.mark.parametrize(
    ("budget", "level"), [(-1, "high"), (1000, "low"), (4000, "medium"), (24576, "high"), (0, None)]
)
def test_gemini3_levels_when_configured(budget: int, level: str | None) -> None:
    req = _req({"thinkingConfig": {"includeThoughts": budget != 0, "thinkingBudget": budget}})
    rules.apply(req, model="gemini-3.7-flash-high", limits=FLASH, gemini_thinking="level")
    tc = req["generationConfig"]["thinkingConfig"]
    if level is None:
        assert "thinkingLevel" not in tc
    else:
        assert tc == {"includeThoughts": True, "thinkingLevel": level}  # never both


def test_gemini_budget_mode_keeps_integers_and_min() -> None:
    req = _req({"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 10}})
    rules.apply(req, model="gemini-3-flash", limits=FLASH)
    assert req["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 32}


def test_level_never_sent_with_budget() -> None:
    req = _req({"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 500, "thinkingLevel": "low"}})
    rules.apply(req, model="gemini-2.5-pro", limits=Limits(min_thinking_budget=128))
    assert "thinkingLevel" not in req["generationConfig"]["thinkingConfig"]


def test_claude_tools_get_validated_mode_placeholder_and_clean_schema() -> None:
    tools = [
        {"name": "noargs", "description": "x"},
        {"name": "json_schema_style", "parametersJsonSchema": {"type": "object", "properties": {}}},
        {
            "name": "edit",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "minLength": 1, "pattern": "^/", "description": "file"},
                    "n": {"type": "integer", "minimum": 0, "maximum": 9},
                    "tags": {"type": "array", "items": {"type": "string", "format": "uri"}, "maxItems": 3},
                },
                "required": ["path"],
            },
        },
    ]
    req = _req(tools=tools)
    rules.apply(req, model="claude-sonnet-4-6", limits=CLAUDE)
    decls = req["tools"][0]["functionDeclarations"]
    assert decls[0]["parameters"] == rules.PLACEHOLDER_SCHEMA
    assert "parametersJsonSchema" not in decls[1]
    assert decls[1]["parameters"] == rules.PLACEHOLDER_SCHEMA
    props = decls[2]["parameters"]["properties"]
    assert props["path"] == {"type": "string", "description": "file (minLength: 1; pattern: ^/)"}
    assert props["n"] == {"type": "integer", "description": "(minimum: 0; maximum: 9)"}
    assert props["tags"]["items"] == {"type": "string", "description": "(format: uri)"}
    assert "maxItems" not in props["tags"]
    assert req["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}
    assert rules.placeholder_tools(req) == {"noargs", "json_schema_style"}


@pytest.mark.parametrize("mode", ["ANY", "NONE"])
def test_claude_forced_modes_kept(mode: str) -> None:
    req = _req(
        tools=[{"name": "t", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]
    )
    req["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
    rules.apply(req, model="claude-sonnet-4-6", limits=CLAUDE)
    assert req["toolConfig"]["functionCallingConfig"]["mode"] == mode


def test_gemini_tools_untouched() -> None:
    tools = [{"name": "noargs"}]
    req = _req(tools=tools)
    rules.apply(req, model="gemini-3-flash", limits=FLASH)
    assert req["tools"][0]["functionDeclarations"] == [{"name": "noargs"}]
    assert "toolConfig" not in req


def test_placeholder_stripped_from_answer() -> None:
    resp = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"name": "noargs", "args": {"reason": "because"}}},
                        {"functionCall": {"name": "other", "args": {"reason": "kept"}}},
                    ]
                }
            }
        ]
    }
    rules.strip_placeholder_calls(resp, frozenset({"noargs"}))
    parts = resp["candidates"][0]["content"]["parts"]
    assert parts[0]["functionCall"]["args"] == {}
    assert parts[1]["functionCall"]["args"] == {"reason": "kept"}


def test_claude_gets_declarations_for_tools_called_in_its_history() -> None:
    """Codex's local compaction: the history's calls, no tools declared."""
    req: dict[str, Any] = {
        "contents": [
            {"role": "user", "parts": [{"text": "run it"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "exec_command", "args": {"cmd": "ls"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "exec_command", "response": {}}}]},
            {"role": "user", "parts": [{"text": "summarise"}]},
        ]
    }
    notes = rules.apply(req, model="claude-sonnet-4-6", limits=None)
    names = [d["name"] for t in req["tools"] for d in t["functionDeclarations"]]
    assert names == ["exec_command"]
    assert req["toolConfig"]["functionCallingConfig"]["mode"] == "NONE"  # nothing to call now
    assert req["tools"][0]["functionDeclarations"][0]["parameters"] == rules.PLACEHOLDER_SCHEMA
    assert any("exec_command" in n for n in notes)
    # Declared ones are left alone; a Gemini model is not touched.
    gem: dict[str, Any] = {"contents": req["contents"]}
    rules.apply(gem, model="gemini-3-flash", limits=None)
    assert "tools" not in gem
