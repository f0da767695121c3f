"""daemon.models: catalog parsing, listing, name resolution and limits (pure)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon import models as M
from daemon.errors import ModelNotFound

GOLDEN = Path(__file__).parent.parent / "golden" / "catalog_2026_08_22.json"
RAW: dict[str, Any] = json.loads(GOLDEN.read_text())
CAT = M.parse_catalog(RAW)

LISTED_2026_08_22 = {
    "gemini-3.7-flash-high",
    "gemini-3.7-flash-medium",
    "gemini-3.7-flash-low",
    "gemini-3.6-flash-high",
    "gemini-3.6-flash-medium",
    "gemini-3.6-flash-low",
    "gemini-3-flash-agent",
    "gemini-3.5-flash-low",
    "gemini-3.5-flash-extra-low",
    "gemini-3-flash",
    "gemini-pro-agent",
    "gemini-3.1-pro-low",
    "gemini-3.1-flash-lite",
    "gemini-3.1-flash-image",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-flash-thinking",
    "claude-opus-4-6-thinking",
    "claude-sonnet-4-6",
    "gpt-oss-120b-medium",
}


def catalog_without(*ids: str) -> M.Catalog:
    data = copy.deepcopy(RAW)
    for mid in ids:
        data["models"].pop(mid)
    return M.parse_catalog(data)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


# --------------------------------------------------------------------------- parsing


def test_golden_catalog_top_level() -> None:
    assert len(CAT.models) == 28
    assert CAT.default_model == "gemini-3.7-flash-high"
    assert CAT.deprecated == {"gemini-3.1-pro-high": "gemini-pro-agent"}
    assert CAT.image_models == ["gemini-3.1-flash-image"]
    assert CAT.web_search_models == ["gemini-3.1-flash-lite"]
    assert CAT.tiered == {
        "flashLite": ["gemini-3.1-flash-lite"],
        "flash": ["gemini-3.7-flash-tiered"],
        "pro": ["gemini-3.1-pro-low"],
    }
    assert CAT.recommended[:2] == ["gemini-3.7-flash-high", "gemini-3.7-flash-medium"]
    assert CAT.recommended[-1] == "gpt-oss-120b-medium"
    assert len(CAT.recommended) == 14


@pytest.mark.parametrize(
    ("mid", "expected"),
    [
        (
            "gemini-3.7-flash-medium",
            dict(
                display_name="Gemini 3.7 Flash (Medium)",
                provider="google",
                family="gemini-flash",
                version="3.7",
                effort="medium",
                tier=2,
                max_tokens=1048576,
                max_output_tokens=65536,
                thinking_budget=4000,
                min_thinking_budget=32,
                supports_thinking=True,
                supports_images=True,
                recommended=True,
                quota_group="gemini",
                listed=True,
                remaining_fraction=0.9783466,
                reset_time=epoch("2026-08-22T17:36:20Z"),
            ),
        ),
        # Display-name traps (§4.1): the display name wins when it names the same family...
        (
            "gemini-3-flash-agent",
            dict(family="gemini-flash", version="3.5", effort="high", thinking_budget=-1),
        ),
        ("gemini-3.5-flash-low", dict(version="3.5", effort="medium")),
        ("gemini-3.5-flash-extra-low", dict(version="3.5", effort="low")),
        (
            "gemini-pro-agent",
            dict(family="gemini-pro", version="3.1", effort="high", min_thinking_budget=128),
        ),
        # ... and is ignored when it names another one.
        ("gemini-2.5-flash", dict(family="gemini-flash", version="2.5", supports_thinking=False)),
        ("gemini-2.5-flash-lite", dict(family="gemini-flash-lite")),
        ("gemini-3.1-flash-image", dict(family="gemini-image", max_output_tokens=None, listed=True)),
        ("gemini-3.1-pro-high", dict(family="gemini-pro", listed=False)),  # deprecated
        ("gemini-3.7-flash-tiered", dict(family="gemini-flash", listed=False, display_name="")),
        (
            "claude-opus-4-6-thinking",
            dict(
                provider="anthropic",
                family="claude-opus",
                version="4.6",
                tier=3,
                quota_group="3p",
                thinking_budget=1024,
                max_output_tokens=64000,
                remaining_fraction=0.999976,
            ),
        ),
        (
            "claude-sonnet-4-6",
            dict(provider="anthropic", family="claude-sonnet", tier=2, supports_thinking=True),
        ),
        (
            "gpt-oss-120b-medium",
            dict(provider="openai", family="gpt-oss", quota_group="3p", max_output_tokens=32768),
        ),
        ("tab_flash_lite_preview", dict(provider="google", family="other", listed=False)),
        (
            "chat_20706",
            dict(
                provider="internal",
                family="other",
                quota_group="internal",
                listed=False,
                remaining_fraction=1.0,
            ),
        ),
    ],
)
def test_golden_model_fields(mid: str, expected: dict[str, Any]) -> None:
    info = CAT.models[mid]
    assert info.id == mid
    for field, value in expected.items():
        assert getattr(info, field) == value, field


def test_rank_orders_version_then_effort() -> None:
    r = {mid: m.rank for mid, m in CAT.models.items()}
    assert r["gemini-3.7-flash-high"] > r["gemini-3.7-flash-medium"] > r["gemini-3.7-flash-low"]
    assert (
        r["gemini-3.7-flash-low"]
        > r["gemini-3.6-flash-high"]
        > r["gemini-3-flash-agent"]
        > r["gemini-3-flash"]
    )
    assert r["gemini-pro-agent"] > r["gemini-3.1-pro-low"] > r["gemini-2.5-pro"]


def test_listing_filter() -> None:
    assert {m.id for m in M.listed_models(CAT)} == LISTED_2026_08_22
    ids = [m.id for m in M.listed_models(CAT)]
    assert ids == sorted(ids)


def test_default_catalog_matches_the_live_listing() -> None:
    """The fallback is the 2026-08-22 catalog: same listed ids and limits."""
    assert {m.id for m in M.listed_models(M.DEFAULT_CATALOG)} == LISTED_2026_08_22
    for m in M.listed_models(M.DEFAULT_CATALOG):
        live = CAT.models[m.id]
        for field in (
            "display_name", "provider", "family", "version", "effort", "rank", "max_tokens",
            "max_output_tokens", "thinking_budget", "min_thinking_budget", "supports_thinking",
        ):  # fmt: skip
            assert getattr(m, field) == getattr(live, field), (m.id, field)
        assert m.remaining_fraction is None  # the fallback knows no quota
    assert M.DEFAULT_CATALOG.default_model == CAT.default_model
    assert M.DEFAULT_CATALOG.deprecated == CAT.deprecated
    assert M.DEFAULT_CATALOG.tiered == CAT.tiered


@pytest.mark.parametrize(
    "data",
    [None, [], "x", 3, {"models": []}, {"models": "x"}, {"models": {"a": 1, "": {}, "b": None}}],
)
def test_parse_garbage_gives_an_empty_catalog(data: Any) -> None:
    assert M.parse_catalog(data).models == {}


@pytest.mark.parametrize(
    ("entry", "field", "expected"),
    [
        ({"maxTokens": "abc"}, "max_tokens", None),
        ({"maxTokens": True}, "max_tokens", None),
        ({"maxTokens": "32768"}, "max_tokens", 32768),
        ({"maxOutputTokens": 65536.0}, "max_output_tokens", 65536),
        ({"maxOutputTokens": 1.5}, "max_output_tokens", None),
        ({"maxOutputTokens": -1}, "max_output_tokens", None),
        ({"thinkingBudget": "4000"}, "thinking_budget", 4000),
        ({"thinkingBudget": {"x": 1}}, "thinking_budget", None),
        ({"supportsThinking": "true"}, "supports_thinking", True),
        ({"supportsThinking": 1}, "supports_thinking", False),
        ({"displayName": 7}, "display_name", ""),
        ({"displayName": 7}, "listed", False),
        ({"apiProvider": ["x"]}, "provider", "google"),
        ({"apiProvider": "API_PROVIDER_SOMETHING_NEW"}, "provider", "google"),
        ({"quotaInfo": {}}, "remaining_fraction", 0.0),  # protobuf omits zero
        ({"quotaInfo": {"remainingFraction": "0.5"}}, "remaining_fraction", 0.5),
        ({"quotaInfo": {"remainingFraction": 1.7}}, "remaining_fraction", 1.0),
        ({"quotaInfo": {"remainingFraction": "nan"}}, "remaining_fraction", 0.0),
        ({"quotaInfo": "full"}, "remaining_fraction", None),
        ({"quotaInfo": {"resetTime": "soon"}}, "reset_time", None),
        ({"quotaInfo": {"resetTime": 12}}, "reset_time", None),
        (
            {"quotaInfo": {"resetTime": "2026-08-22T17:36:20.5Z"}},
            "reset_time",
            epoch("2026-08-22T17:36:20Z") + 0.5,
        ),
        (
            {"quotaInfo": {"resetTime": "2026-08-22T19:36:20+02:00"}},
            "reset_time",
            epoch("2026-08-22T17:36:20Z"),
        ),
        ({"isInternal": True, "displayName": "X"}, "listed", False),
    ],
)
def test_parse_tolerates_odd_fields(entry: dict[str, Any], field: str, expected: Any) -> None:
    cat = M.parse_catalog({"models": {"gemini-9-flash": {"displayName": "Gemini 9 Flash", **entry}}})
    assert getattr(cat.models["gemini-9-flash"], field) == expected


def test_parse_tolerates_odd_top_level() -> None:
    cat = M.parse_catalog(
        {
            "models": {"gemini-3-flash": {"displayName": "Gemini 3 Flash"}},
            "defaultAgentModelId": 5,
            "deprecatedModelIds": {"a": "b", "c": {"newModelId": 3}, "d": {"newModelId": "d"}, "e": []},
            "tieredModelIds": {"flash": "gemini-3-flash", "pro": [1, "gemini-3-pro"]},
            "agentModelSorts": [{"groups": "x"}, 4, {"groups": [{"modelIds": ["a", 2, "a", "b"]}]}],
            "imageGenerationModelIds": {"x": 1},
            "tabModelIds": "chat_1",
        }
    )
    assert cat.default_model == ""
    assert cat.deprecated == {"a": "b"}  # a plain string is read as the new id; self-renames are dropped
    assert cat.tiered == {"pro": ["gemini-3-pro"]}
    assert cat.recommended == ["a", "b"]
    assert cat.image_models == []


def test_merge_is_the_union_with_the_best_quota() -> None:
    a = M.parse_catalog(
        {
            "models": {
                "gemini-3-flash": {"displayName": "Gemini 3 Flash", "quotaInfo": {"remainingFraction": 0.2}},
                "claude-sonnet-4-6": {"displayName": "Claude Sonnet 4.6 (Thinking)", "quotaInfo": {}},
            },
            "deprecatedModelIds": {"old": {"newModelId": "gemini-3-flash"}},
            "imageGenerationModelIds": ["img-a"],
        }
    )
    b = M.parse_catalog(
        {
            "models": {
                "gemini-3-flash": {
                    "displayName": "Other name",
                    "quotaInfo": {"remainingFraction": 0.9, "resetTime": "2026-08-22T17:36:20Z"},
                },
                "gemini-2.5-pro": {"displayName": "Gemini 2.5 Pro"},
            },
            "defaultAgentModelId": "gemini-3-flash",
            "deprecatedModelIds": {"old": {"newModelId": "elsewhere"}},
            "imageGenerationModelIds": ["img-b", "img-a"],
            "tieredModelIds": {"flash": ["gemini-3-flash"]},
        }
    )
    merged = M.merge([a, b])
    assert set(merged.models) == {"gemini-3-flash", "claude-sonnet-4-6", "gemini-2.5-pro"}
    flash = merged.models["gemini-3-flash"]
    assert flash.display_name == "Gemini 3 Flash"  # first catalog's static fields
    assert flash.remaining_fraction == 0.9 and flash.reset_time == epoch("2026-08-22T17:36:20Z")
    assert merged.models["claude-sonnet-4-6"].remaining_fraction == 0.0
    assert merged.default_model == "gemini-3-flash"
    assert merged.deprecated == {"old": "gemini-3-flash"}
    assert merged.image_models == ["img-a", "img-b"]
    assert merged.tiered == {"flash": ["gemini-3-flash"]}
    assert M.merge([]).models == {}
    assert M.merge([CAT]) == CAT


# --------------------------------------------------------------------------- resolution

RESOLVE_CASES = [
    # exact, prefixes, case
    ("gemini-3.7-flash-high", "gemini-3.7-flash-high", "exact"),
    ("gemini-2.5-pro", "gemini-2.5-pro", "exact"),
    ("models/gemini-3-flash", "gemini-3-flash", "exact"),
    ("google/gemini-3-flash", "gemini-3-flash", "exact"),
    ("antigravity/models/claude-sonnet-4-6", "claude-sonnet-4-6", "exact"),
    ("Gemini-3-Flash", "gemini-3-flash", "exact"),
    ("gemini-3.7-flash-tiered", "gemini-3.7-flash-tiered", "exact"),  # unlisted but servable
    ("gpt-oss-120b-medium", "gpt-oss-120b-medium", "exact"),
    # deprecatedModelIds
    ("gemini-3.1-pro-high", "gemini-pro-agent", "renamed"),
    ("models/gemini-3.1-pro-high", "gemini-pro-agent", "renamed"),
    # Claude: same model line
    ("claude-opus-4-6", "claude-opus-4-6-thinking", "alias"),
    ("claude-opus-4-6-20260101", "claude-opus-4-6-thinking", "alias"),
    ("claude-opus-4-6@20260101", "claude-opus-4-6-thinking", "alias"),
    ("claude-opus-4-6[1m]", "claude-opus-4-6-thinking", "alias"),
    ("claude-opus-4-6-thinking[1m]", "claude-opus-4-6-thinking", "alias"),
    ("claude-sonnet-4-6-thinking", "claude-sonnet-4-6", "alias"),  # no -thinking id: the Sonnet thinks
    ("claude-sonnet-4-6-20260301", "claude-sonnet-4-6", "alias"),
    ("claude-sonnet-4-6[1m]", "claude-sonnet-4-6", "alias"),
    # Claude: family and tier
    ("claude-opus-5-5", "claude-opus-4-6-thinking", "family"),  # Claude Code 2.1.332's default
    ("claude-opus-5-5[1m]", "claude-opus-4-6-thinking", "family"),
    ("claude-opus-5", "claude-opus-4-6-thinking", "family"),
    ("claude-opus-4-5-thinking", "claude-opus-4-6-thinking", "family"),
    ("opus", "claude-opus-4-6-thinking", "family"),
    ("opus[1m]", "claude-opus-4-6-thinking", "family"),
    ("claude-3-opus-20240229", "claude-opus-4-6-thinking", "family"),
    ("sonnet", "claude-sonnet-4-6", "family"),
    ("claude-sonnet-4-5", "claude-sonnet-4-6", "family"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-6", "family"),
    ("claude-sonnet-4-5-thinking", "claude-sonnet-4-6", "family"),
    ("claude-sonnet-5", "claude-sonnet-4-6", "family"),
    ("haiku", "claude-sonnet-4-6", "family"),  # the cheapest Claude served
    ("claude-3-5-haiku-20241022", "claude-sonnet-4-6", "family"),
    ("claude-haiku-4-5-20251001", "claude-sonnet-4-6", "family"),
    # Gemini: suffixes of a served id
    ("gemini-3-flash-preview", "gemini-3-flash", "alias"),
    ("gemini-2.5-pro-latest", "gemini-2.5-pro", "alias"),
    ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite", "alias"),
    ("gemini-2.5-pro-001", "gemini-2.5-pro", "alias"),
    ("gemini-3.1-pro-high-preview", "gemini-pro-agent", "alias"),  # suffix, then the rename
    # Gemini: names the CLI rewrites -> best of the family
    ("gemini-3.8-flash", "gemini-3.7-flash-high", "family"),
    ("gemini-3.8-flash-high", "gemini-3.7-flash-high", "family"),
    ("gemini-3.8-flash-low", "gemini-3.7-flash-low", "family"),  # the asked effort, newest version
    ("gemini-3.8-flash-medium", "gemini-3.7-flash-medium", "family"),
    ("gemini-3.8-flash-tiered", "gemini-3.7-flash-high", "family"),  # tiered ids are unlisted
    ("gemini-flash-latest", "gemini-3.7-flash-high", "family"),
    ("gemini-2.0-flash", "gemini-3.7-flash-high", "family"),
    ("gemini-3-pro-preview", "gemini-pro-agent", "family"),
    ("gemini-3-pro-high", "gemini-pro-agent", "family"),
    ("gemini-3-pro-low", "gemini-3.1-pro-low", "family"),
    ("gemini-4-pro", "gemini-pro-agent", "family"),
    ("gemini-3.5-flash-lite", "gemini-3.1-flash-lite", "family"),
    ("gemini-2.0-flash-lite", "gemini-3.1-flash-lite", "family"),
    ("gemini-3-pro-image-preview", "gemini-3.1-flash-image", "family"),
    ("gemini-2.5-flash-image", "gemini-3.1-flash-image", "family"),
    # OpenAI names -> Gemini (documented in the module docstring)
    ("gpt-4o", "gemini-3.7-flash-high", "alias"),
    ("gpt-5", "gemini-3.7-flash-high", "alias"),
    ("gpt-5.1-codex-max", "gemini-3.7-flash-high", "alias"),
    ("o3", "gemini-3.7-flash-high", "alias"),
    ("o3-pro", "gemini-3.7-flash-high", "alias"),
    ("chatgpt-4o-latest", "gemini-3.7-flash-high", "alias"),
    ("gpt-4o-mini", "gemini-3.7-flash-high", "alias"),
    ("o4-mini", "gemini-3.7-flash-high", "alias"),
    ("codex-mini-latest", "gemini-3.7-flash-high", "alias"),
    ("gpt-4.1-nano", "gemini-3.1-flash-lite", "alias"),
    ("gpt-oss-20b", "gpt-oss-120b-medium", "family"),
]


@pytest.mark.parametrize(("name", "model", "how"), RESOLVE_CASES)
def test_resolve(name: str, model: str, how: str) -> None:
    res = M.resolve(name, {}, CAT)
    assert (res.model, res.how) == (model, how)
    assert res.changed == (how != "exact")
    if how != "exact":
        assert model in res.note and res.note  # loggable: says which model serves


@pytest.mark.parametrize(
    ("name", "mapping", "model"),
    [
        ("claude-opus-5-5", {"claude-opus-5-5": "gemini-pro-agent"}, "gemini-pro-agent"),
        ("claude-opus-5-5", {"claude-opus-*": "models/claude-sonnet-4-6"}, "claude-sonnet-4-6"),
        ("Claude-Opus-5-5", {"claude-opus-*": "claude-sonnet-4-6"}, "claude-sonnet-4-6"),  # globs ignore case
        ("models/my-alias", {"my-alias": "gemini-3-flash"}, "gemini-3-flash"),
        # The user's word beats the catalog, even for served or deprecated ids.
        ("gemini-3-flash", {"gemini-3-flash": "gemini-2.5-pro"}, "gemini-2.5-pro"),
        ("x", {"x": "gemini-3.1-pro-high"}, "gemini-3.1-pro-high"),
        # Exact keys win over globs.
        ("gpt-4o", {"gpt-*": "gemini-2.5-pro", "gpt-4o": "gemini-3-flash"}, "gemini-3-flash"),
    ],
)
def test_resolve_config(name: str, mapping: dict[str, str], model: str) -> None:
    res = M.resolve(name, mapping, CAT)
    assert (res.model, res.how) == (model, "config")


def _no_claude_or(*keep: str) -> M.Catalog:
    drop = [m for m in RAW["models"] if m.startswith("claude") and m not in keep]
    return catalog_without(*drop)


@pytest.mark.parametrize(
    ("name", "catalog", "message_has"),
    [
        # An Opus request is never served by another tier, nor by another vendor.
        ("claude-opus-5-5", _no_claude_or("claude-sonnet-4-6"), "a Claude Opus request is never served"),
        ("opus", _no_claude_or("claude-sonnet-4-6"), "no account serves a Claude Opus model"),
        ("claude-opus-4-6", _no_claude_or(), "Claude Opus"),
        # A Sonnet request is not served by Opus.
        ("sonnet", _no_claude_or("claude-opus-4-6-thinking"), "a Claude Sonnet request is never served"),
        ("claude-sonnet-4-5-20250929", _no_claude_or("claude-opus-4-6-thinking"), "Claude Sonnet"),
        # Haiku takes any Claude tier, but never Gemini or GPT-OSS.
        ("haiku", _no_claude_or(), "Claude Haiku"),
        (
            "claude-3-5-haiku-20241022",
            _no_claude_or(),
            "never served by another Claude tier or another vendor",
        ),
        # Gemini names are never served by Claude.
        (
            "gemini-3.8-flash",
            catalog_without(*[m for m in RAW["models"] if "flash" in m and "lite" not in m]),
            "no account serves a Gemini Flash model",
        ),
        (
            "gemini-4-pro",
            catalog_without("gemini-pro-agent", "gemini-3.1-pro-low", "gemini-2.5-pro"),
            "Gemini Pro",
        ),
        # Names of no family.
        ("claude-instant-1", CAT, "no Claude family"),
        ("gemini-ultra", CAT, "no Gemini family"),
        ("llama-3.3-70b", CAT, "is not available"),
        ("glm-4.7", CAT, "is not available"),
        # Internal / completion models are never served to chat clients.
        ("chat_20706", CAT, "is not available"),
        ("tab_flash_lite_preview", CAT, "is not available"),
    ],
)
def test_resolve_refuses(name: str, catalog: M.Catalog, message_has: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        M.resolve(name, {}, catalog)
    msg = err.value.message
    assert message_has in msg
    assert err.value.param == "model"
    assert f"`agctl config set models.{name} <model>`" in msg


def test_not_found_lists_only_listed_models() -> None:
    with pytest.raises(ModelNotFound) as err:
        M.resolve("llama-3.3-70b", {}, CAT)
    msg = err.value.message
    assert msg.startswith("model 'llama-3.3-70b' is not available. Available: ")
    listed = msg.split("Available: ", 1)[1].split(". To serve", 1)[0].split(", ")
    assert set(listed) == LISTED_2026_08_22
    for hidden in ("chat_20706", "tab_flash_lite_preview", "gemini-3.7-flash-tiered", "gemini-3.1-pro-high"):
        assert hidden not in msg


@pytest.mark.parametrize("name", ["", "   ", "models/"])
def test_resolve_empty_name(name: str) -> None:
    with pytest.raises(ModelNotFound, match="model is required"):
        M.resolve(name, {}, CAT)


def test_rename_to_an_unserved_id_resolves_the_new_name() -> None:
    data = copy.deepcopy(RAW)
    data["deprecatedModelIds"]["gemini-3.6-flash-high"] = {"newModelId": "gemini-3.9-flash-high"}
    data["models"].pop("gemini-3.6-flash-high")
    res = M.resolve("gemini-3.6-flash-high", {}, M.parse_catalog(data))
    assert (res.model, res.how) == ("gemini-3.7-flash-high", "family")


def test_rename_loop_does_not_hang() -> None:
    cat = M.parse_catalog(
        {
            "models": {"gemini-3-flash": {"displayName": "Gemini 3 Flash"}},
            "deprecatedModelIds": {
                "a-flash": {"newModelId": "b-flash"},
                "b-flash": {"newModelId": "a-flash"},
            },
        }
    )
    with pytest.raises(ModelNotFound):
        M.resolve("a-flash", {}, cat)


def test_thinking_request_prefers_the_thinking_twin() -> None:
    """Older catalogs listed both claude-sonnet-4-5 and claude-sonnet-4-5-thinking."""
    cat = M.parse_catalog(
        {
            "models": {
                "claude-sonnet-4-5": {
                    "displayName": "Claude Sonnet 4.5",
                    "apiProvider": "API_PROVIDER_ANTHROPIC_VERTEX",
                },
                "claude-sonnet-4-5-thinking": {
                    "displayName": "Claude Sonnet 4.5 (Thinking)",
                    "supportsThinking": True,
                    "apiProvider": "API_PROVIDER_ANTHROPIC_VERTEX",
                },
            }
        }
    )
    cases = {
        "claude-sonnet-4-5-20250929": "claude-sonnet-4-5",
        "claude-sonnet-4-5-thinking-20250929": "claude-sonnet-4-5-thinking",
        "sonnet": "claude-sonnet-4-5",
        "claude-sonnet-4-6-thinking": "claude-sonnet-4-5-thinking",
        "haiku": "claude-sonnet-4-5",  # side requests: the id without -thinking
    }
    for name, model in cases.items():
        assert M.resolve(name, {}, cat).model == model, name
    assert M.thinking_variant(cat, "claude-sonnet-4-5") == "claude-sonnet-4-5-thinking"
    assert M.thinking_variant(cat, "claude-sonnet-4-5-thinking") == "claude-sonnet-4-5-thinking"
    assert M.thinking_variant(CAT, "claude-sonnet-4-6") == "claude-sonnet-4-6"
    assert M.thinking_variant(CAT, "gemini-2.5-flash") == "gemini-2.5-flash"


def test_thinking_request_never_lands_on_a_twin_that_cannot_think() -> None:
    cat = M.parse_catalog(
        {
            "models": {
                "claude-opus-4-6": {
                    "displayName": "Claude Opus 4.6",
                    "apiProvider": "API_PROVIDER_ANTHROPIC_VERTEX",
                }
            }
        }
    )
    # Not the same-line alias (cannot think), but still the best Opus: the family rule.
    res = M.resolve("claude-opus-4-6-thinking", {}, cat)
    assert (res.model, res.how) == ("claude-opus-4-6", "family")


def test_openai_names_without_a_gemini_default() -> None:
    cat = M.parse_catalog({**copy.deepcopy(RAW), "defaultAgentModelId": "claude-sonnet-4-6"})
    assert M.resolve("gpt-5", {}, cat).model == "gemini-pro-agent"  # never Claude
    no_gemini = M.parse_catalog(
        {"models": {k: v for k, v in RAW["models"].items() if k.startswith("claude")}}
    )
    with pytest.raises(ModelNotFound, match="OpenAI names are served by Gemini"):
        M.resolve("gpt-4o", {}, no_gemini)


def test_empty_catalog_uses_the_fallback() -> None:
    for cat in (M.Catalog(), []):
        assert M.resolve("claude-opus-5-5", {}, cat).model == "claude-opus-4-6-thinking"
        assert M.resolve("gemini-3.8-flash", {}, cat).model == "gemini-3.7-flash-high"
    assert {m.id for m in M.listed_models(M.Catalog())} == LISTED_2026_08_22


def test_bare_ids_still_work() -> None:
    """Older callers pass the pool's ids; names the fallback does not know are inferred."""
    ids = [
        "gemini-3-flash",
        "gemini-3-pro-high",
        "gemini-3-pro-low",
        "claude-sonnet-4-5",
        "claude-opus-4-5-thinking",
    ]
    assert M.resolve("claude-opus-5-5", {}, ids).model == "claude-opus-4-5-thinking"
    assert M.resolve("claude-sonnet-4-5-20250929", {}, ids).how == "alias"
    assert M.resolve("gemini-3-pro-preview", {}, ids).model == "gemini-3-pro-high"
    assert M.resolve("gemini-3.8-flash", {}, ids).model == "gemini-3-flash"
    assert M.resolve("gpt-4o", {}, ids).model == "gemini-3-pro-high"  # no default in the pool: best Pro
    assert M.thinking_variant(ids, "claude-sonnet-4-5") == "claude-sonnet-4-5"  # no twin in the pool
    assert (
        M.thinking_variant([*ids, "claude-sonnet-4-5-thinking"], "claude-sonnet-4-5")
        == "claude-sonnet-4-5-thinking"
    )
    assert M.client_names({"my-alias": "x", "gpt-*": "y"}, ids) == sorted([*ids, "my-alias"])
    assert M.client_names({}, ids + ["chat_20706", "tab_x"]) == sorted(ids)


# --------------------------------------------------------------------------- limits


def test_limits() -> None:
    flash = M.limits(CAT, "gemini-3.7-flash-high")
    assert flash == M.Limits(
        max_output_tokens=64000,  # advertised 65536; 64000 is the safe cap (§4.1)
        context_tokens=1048576,
        thinking_budget=-1,
        min_thinking_budget=32,
        supports_thinking=True,
    )
    claude = M.limits(CAT, "claude-opus-4-6-thinking")
    assert (claude.max_output_tokens, claude.context_tokens, claude.min_thinking_budget) == (
        64000,
        200000,
        1024,
    )
    assert M.limits(CAT, "gpt-oss-120b-medium").max_output_tokens == 32768
    assert M.limits(CAT, "tab_flash_lite_preview").max_output_tokens == 4096
    assert M.limits(CAT, "gemini-3.1-flash-image").max_output_tokens == 64000  # unknown -> safe cap
    unknown = M.limits(CAT, "gemini-9-flash")
    assert (unknown.max_output_tokens, unknown.context_tokens, unknown.supports_thinking) == (
        64000,
        None,
        True,
    )
    # The fallback catalog answers for ids the given catalog lacks.
    assert M.limits(M.Catalog(models={}), "gpt-oss-120b-medium").max_output_tokens == 32768


def test_strip_prefix_and_family_of() -> None:
    assert M.strip_prefix("  models/google/gemini-3-flash ") == "gemini-3-flash"
    assert M.strip_prefix("antigravity/claude-opus-5-5") == "claude-opus-5-5"
    table = {
        "opus": "claude-opus",
        "claude-3-5-haiku-20241022": "claude-haiku",
        "gemini-3.1-flash-lite": "gemini-flash-lite",
        "gemini-3-pro-image-preview": "gemini-image",
        "gemini-pro-agent": "gemini-pro",
        "gemini-3-flash-agent": "gemini-flash",
        "gpt-oss-120b-medium": "gpt-oss",
        "gemini-3-proactive": "other",
        "tab_flash_lite_preview": "other",
        "gpt-4o": "other",
    }
    for mid, fam in table.items():
        assert M.family_of(mid) == fam, mid
