"""The model catalog and client model name -> upstream model id.

Pure: no I/O, imports only the stdlib, msgspec and ``daemon.errors``, so the
translators in ``daemon.protocols`` can ask it for limits.

The catalog
-----------
``parse_catalog`` reads one ``fetchAvailableModels`` answer (UPSTREAM.md §4.1)
into a :class:`Catalog`; ``merge`` unions the catalogs of the pool's accounts.
It never raises: a field of the wrong type reads as missing. Ids are the keys
(enums change between days, §4.1). Display names are trusted for the version
and effort of an id only when they name the same family: ``gemini-3-flash-agent``
*is* "Gemini 3.5 Flash (High)", but the ``gemini-2.5-flash*`` ids all display
"Gemini 3.1 Flash Lite" (§4.1 "Display-name traps").

A model is *listed* (shown by ``/v1/models`` and the Gemini models list) unless
it is internal (``isInternal``/``API_PROVIDER_INTERNAL``), an IDE completion
model (``tab_*``, ``chat_*``, ``tabModelIds``), has no display name (the
``*-tiered`` runtime ids), or is a deprecated id that the catalog itself
renames (``gemini-3.1-pro-high`` -> ``gemini-pro-agent``; the old id 400s for
agent streams per PIA, §4.1). The commit-message / mquery / web-search model
(``gemini-3.1-flash-lite``) is an ordinary chat model and stays listed.

Resolution (``resolve``), first hit wins
----------------------------------------
1. Strip ``models/``, ``google/``, ``antigravity/``; empty -> ModelNotFound.
2. ``[models]`` in config: exact key, then globs (case-insensitive); the
   target is used as given ("config": the user's word beats the catalog).
3. A ``deprecatedModelIds`` old id -> its ``newModelId`` ("renamed"). This runs
   *before* the exact match because the old id may still be listed beside its
   replacement while no longer working.
4. An id the catalog serves -> itself ("exact"). Internal/tab models are never
   served to chat clients.
5. Claude names resolve by FAMILY and TIER, never across vendor:
   - dated ids, ``[1m]`` and ``-latest`` suffixes are dropped; if that names a
     served id, or its ``-thinking`` twin, it is used ("alias"):
     ``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5`` where served,
     ``claude-opus-4-6`` -> ``claude-opus-4-6-thinking``;
   - else the best model of the same family ("family"): ``opus``,
     ``claude-opus-5-5`` (Claude Code 2.1.332's default, in no catalog) ->
     the newest Opus served; ``sonnet``, ``claude-sonnet-4-5`` -> the newest
     Sonnet. A ``-thinking`` request prefers a thinking-capable id
     (``claude-sonnet-4-6`` is the thinking Sonnet; it has no ``-thinking`` id).
   - Decision: Opus and Sonnet never fall to another tier. An Opus request
     answered by Sonnet (or a Sonnet request by Opus, which spends the shared
     "Claude and GPT models" quota several times faster) is a silent change of
     the product the user picked; a 404 that says how to map the name is
     honest, and ``agctl config set models.<name> <model>`` is one command.
     Haiku is the exception CLIENTS.md asks for: Claude Code sends haiku-class
     side requests (titles, checks) on its own, and no catalog has had a
     Haiku, so ``haiku`` -> the cheapest Claude tier served (Haiku, else
     Sonnet, else Opus), preferring an id without ``-thinking``. A Claude name
     is never served by Gemini or GPT-OSS: the client would get another
     vendor's behaviour (thinking signatures, tool formats) under a Claude name.
6. OpenAI names (``gpt-*``, ``chatgpt-*``, ``o1``/``o3``/``o4-mini``,
   ``codex-*``), which OpenAI-SDK users send by default ("alias"):
   ``gpt-oss*`` -> the best GPT-OSS served when there is one; ``*nano*`` ->
   the best Gemini Flash Lite (else Flash); ``*mini*`` -> the best Gemini
   Flash; anything else (gpt-4o, gpt-5, o3, codex names) -> the catalog's
   ``defaultAgentModelId`` when it is a Gemini model (Google's own pick for
   agent work, and it moves with the catalog), else the best Gemini Pro.
   Never Claude: those names mean "a default model", and the Claude pool is
   the scarcer one (§4.2).
7. Gemini names: ``-preview``, ``-latest``, ``-exp`` and ``-001``-style
   suffixes are dropped and a served id is used ("alias":
   ``gemini-3-flash-preview`` -> ``gemini-3-flash``). Else the Gemini CLI
   rewrote the name (``-m gemini-3-flash`` goes out as ``gemini-3.8-flash``,
   CLIENTS.md): ``*image*`` -> the best image model, ``*flash-lite*`` -> the
   best Flash Lite, ``*flash*`` -> the best Flash, ``*pro*`` -> the best Gemini
   Pro ("family"). "Best" is the newest version, then the requested effort
   (``-low`` asks for a Low variant), then the higher effort, then the
   catalog's default / tiered / recommended ids. Never Claude.
8. Anything else -> ModelNotFound listing the listed ids and the
   ``agctl config set models.<name> <model>`` command.

``Resolved.how != "exact"`` means the served model differs from the name the
client sent: the daemon logs ``Resolved.note`` and says which model served in
a response header.

Limits
------
``limits`` and ``output_cap`` give a model's caps (§4.1); the rules that
apply them to a request (output cap, Claude's thinking budget, §6.4) live in
``daemon.protocols.rules``, the one place that changes a request for the
serving model.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from daemon.errors import ModelNotFound
from daemon.timeparse import parse_timestamp

# --------------------------------------------------------------------------- constants

#: ``ModelInfo.provider`` values (from ``apiProvider``).
PROVIDERS: Final = ("google", "anthropic", "openai", "internal")
#: ``ModelInfo.family`` values.
FAMILIES: Final = (
    "gemini-flash",
    "gemini-flash-lite",
    "gemini-pro",
    "gemini-image",
    "claude-opus",
    "claude-sonnet",
    "claude-haiku",
    "gpt-oss",
    "other",
)
#: ``Resolved.how`` values.
HOW: Final = ("exact", "config", "renamed", "alias", "family")

#: Output cap when the catalog gives none, and the cap in any case: peers
#: disagree whether Gemini takes its advertised 65535/65536 (a user saw 65536
#: fail and 64000 pass on 3.6 Flash, 3.7 Flash tiered and 3.1 Pro), and
#: UPSTREAM.md §4.1's safe rule is "≤ maxOutputTokens, and ≤ 64000 when in doubt".
SAFE_OUTPUT_CAP: Final = 64000
#: Claude rejects prompts above 200 000 tokens despite ``maxTokens: 250000`` (§4.1).
CLAUDE_PROMPT_LIMIT: Final = 200_000
#: Claude thinking budgets below this mean no thinking (§6.4).
CLAUDE_MIN_THINKING_BUDGET: Final = 1024

_PROVIDER_OF_API = {
    "API_PROVIDER_GOOGLE_GEMINI": "google",
    "API_PROVIDER_ANTHROPIC_VERTEX": "anthropic",
    "API_PROVIDER_OPENAI_VERTEX": "openai",
    "API_PROVIDER_INTERNAL": "internal",
}
# Tier inside a vendor line: bigger is dearer/stronger. Only used to pick
# "the cheapest Claude" for haiku and for ordering; fallbacks never cross it.
_TIER = {
    "gemini-image": 1,
    "gemini-flash-lite": 1,
    "gemini-flash": 2,
    "gemini-pro": 3,
    "claude-haiku": 1,
    "claude-sonnet": 2,
    "claude-opus": 3,
    "gpt-oss": 2,
}
# Effort names (display "(High)" or id suffix "-high") -> score; §4.1: the
# Low/Medium/High ids of one version differ only by default thinking budget.
_EFFORT_SCORE = {"high": 4, "medium": 3, "low": 2, "extra-low": 1, "minimal": 1, "tiered": 0}
_EFFORTS_LONGEST_FIRST = sorted(_EFFORT_SCORE, key=len, reverse=True)
_PREFIXES = ("models/", "google/", "antigravity/")

_GEMINI_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?(?![\d.])")
# claude-opus-4-6, claude-opus-4-6-20260101, claude-sonnet-4-20250514 (4, not 4.20)
_CLAUDE_VERSION = re.compile(r"(opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?!\d)")
# claude-3-5-haiku-20241022, claude-3-opus
_CLAUDE_OLD_VERSION = re.compile(r"claude-(\d+)(?:[-.](\d{1,2}))?-(opus|sonnet|haiku)")
_DISPLAY = re.compile(r"^\s*gemini\s+(\d+)(?:\.(\d+))?\s+([^(]*?)\s*(?:\(([^)]*)\))?\s*$", re.IGNORECASE)
_DATE_SUFFIX = re.compile(r"[-@](?:\d{8}|\d{4}-\d{2}-\d{2})$")  # -20250929, @20250929
_GEMINI_SUFFIX = re.compile(r"-(?:preview(?:-\d{2}-\d{2,4})?|latest|exp(?:-\d+)?|\d{3})$")
_OPENAI_NAME = re.compile(r"^(?:gpt-|chatgpt-|codex|o\d)")
_PRO = re.compile(r"(?:^|-)pro(?:-|$)")


# --------------------------------------------------------------------------- records


class ModelInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One catalog entry, read tolerantly from ``fetchAvailableModels``."""

    id: str
    display_name: str = ""
    provider: str = "google"  # one of PROVIDERS
    family: str = "other"  # one of FAMILIES
    version: str = ""  # "3.7", "4.6"; "" when the id/display name shows none
    effort: str = ""  # "high" | "medium" | "low" | "extra-low" | "tiered" | ""
    tier: int = 0  # inside the vendor line, bigger = dearer (flash-lite 1 < flash 2 < pro 3)
    rank: int = 0  # inside the family, bigger = better: version, then effort
    max_tokens: int | None = None  # context window as advertised
    max_output_tokens: int | None = None  # as advertised (see output_cap)
    thinking_budget: int | None = None  # default budget; -1 = dynamic
    min_thinking_budget: int | None = None
    supports_thinking: bool = False
    supports_images: bool = False
    recommended: bool = False
    quota_group: str = "gemini"  # "gemini" | "3p" (Claude + GPT-OSS share it, §4.2) | "internal"
    listed: bool = True  # offered to clients (see the module docstring)
    # The per-model quotaInfo (§4.1): None = the entry had none; a quotaInfo
    # without remainingFraction means 0 (protobuf omits zero).
    remaining_fraction: float | None = None
    reset_time: float | None = None  # epoch seconds


class Catalog(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one account (or, merged, the pool) can be asked for."""

    models: dict[str, ModelInfo] = {}
    default_model: str = ""  # defaultAgentModelId
    recommended: list[str] = []  # agentModelSorts, in order
    deprecated: dict[str, str] = {}  # old id -> newModelId
    image_models: list[str] = []  # imageGenerationModelIds
    web_search_models: list[str] = []  # webSearchModelIds
    tiered: dict[str, list[str]] = {}  # tieredModelIds: "flash", "pro", "flashLite", ...

    def get(self, model_id: str) -> ModelInfo | None:
        return self.models.get(model_id)


class Resolved(msgspec.Struct, kw_only=True, frozen=True):
    """The upstream model for a client name, and how it was found."""

    model: str
    how: str  # one of HOW
    note: str = ""  # for people: why this model (log it when how != "exact")
    requested: str = ""  # the name the client sent

    @property
    def changed(self) -> bool:
        """True when the served model is not the name the client sent."""
        return self.how != "exact"


class Limits(msgspec.Struct, kw_only=True, frozen=True):
    max_output_tokens: int  # the cap to send at most
    context_tokens: int | None  # prompt limit in practice (Claude: 200 000)
    thinking_budget: int | None  # the model's default; -1 = dynamic
    min_thinking_budget: int | None
    supports_thinking: bool


# --------------------------------------------------------------------------- tolerant readers


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in (_text(x) for x in value) if v]


# --------------------------------------------------------------------------- names


def strip_prefix(name: str) -> str:
    """``models/x``, ``google/x``, ``antigravity/x`` -> ``x`` (also nested)."""
    name = name.strip()
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                changed = True
    return name


def family_of(model_id: str) -> str:
    """The family a model id (or a client name) belongs to, from the name alone."""
    s = model_id.lower()
    if s.startswith(("tab_", "chat_")):
        return "other"
    for fam in ("opus", "sonnet", "haiku"):
        if fam in s and ("claude" in s or s.split("[")[0] == fam):
            return "claude-" + fam
    if s.startswith("gpt-oss"):
        return "gpt-oss"
    if "gemini" in s:
        if "image" in s:
            return "gemini-image"
        if "flash-lite" in s or "flash_lite" in s:
            return "gemini-flash-lite"
        if "flash" in s:
            return "gemini-flash"
        if _PRO.search(s):
            return "gemini-pro"
    return "other"


def _provider_of_id(model_id: str) -> str:
    s = model_id.lower()
    if s.startswith("chat_"):
        return "internal"
    if "claude" in s:
        return "anthropic"
    if s.startswith("gpt-"):
        return "openai"
    return "google"


def _version_of_id(model_id: str) -> str:
    s = model_id.lower()
    m = _GEMINI_VERSION.search(s)
    if m:
        return m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
    m = _CLAUDE_OLD_VERSION.search(s)
    if m:
        return m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
    m = _CLAUDE_VERSION.search(s)
    if m:
        return m.group(2) + (f".{m.group(3)}" if m.group(3) else "")
    return ""


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("."):
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts)


def _effort_word(text: str) -> str:
    word = text.strip().lower().replace(" ", "-").replace("_", "-")
    return word if word in _EFFORT_SCORE else ""


def _effort_of_id(model_id: str) -> str:
    s = model_id.lower()
    for e in _EFFORTS_LONGEST_FIRST:
        if s.endswith("-" + e):
            return e
    return ""


def _version_and_effort(model_id: str, family: str, display: str) -> tuple[str, str]:
    version, effort = _version_of_id(model_id), _effort_of_id(model_id)
    m = _DISPLAY.match(display)
    # Trust the display name only when it names the same family (§4.1 traps:
    # gemini-3-flash-agent is 3.5 Flash High; gemini-2.5-flash says Flash Lite).
    if m and family_of("gemini-" + m.group(3).strip().lower().replace(" ", "-")) == family:
        version = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
        effort = _effort_word(m.group(4) or "") or effort
    return version, effort


def _rank(version: str, effort: str, thinking_budget: int | None) -> int:
    key = _version_key(version)
    major = key[0] if key else 0
    minor = key[1] if len(key) > 1 else 0
    if effort:
        score = _EFFORT_SCORE[effort]
    else:
        score = 4 if thinking_budget == -1 else 3  # a plain id: its own default effort
    return (min(major, 999) * 100 + min(minor, 99)) * 10 + score


def _servable(m: ModelInfo) -> bool:
    """Chat clients may ask for it by id (internal and IDE-completion models: no, §4.1)."""
    return m.provider != "internal" and not m.id.startswith(("tab_", "chat_"))


# --------------------------------------------------------------------------- parsing


def _parse_model(model_id: str, entry: Mapping[str, Any], *, hidden: bool) -> ModelInfo:
    display = _text(entry.get("displayName"))
    api = _text(entry.get("apiProvider"))
    provider = _PROVIDER_OF_API.get(api) or _provider_of_id(model_id)
    internal = _flag(entry.get("isInternal")) or provider == "internal"
    if internal:
        provider = "internal"
    family = "other" if internal else family_of(model_id)
    version, effort = _version_and_effort(model_id, family, display)
    budget = _int(entry.get("thinkingBudget"))
    frac = reset = None
    quota = entry.get("quotaInfo")
    if isinstance(quota, dict):
        raw = _float(quota.get("remainingFraction"))
        # Missing means 0 (protobuf omits zero); values above 1 are clamped.
        frac = min(max(raw if raw is not None else 0.0, 0.0), 1.0)
        raw_reset = quota.get("resetTime")
        # Google sends RFC 3339 text; anything else is not a reset time.
        reset = parse_timestamp(raw_reset) if isinstance(raw_reset, str) else None
    listed = not (internal or hidden or not display or model_id.startswith(("tab_", "chat_")))
    max_tokens = _int(entry.get("maxTokens"))
    max_out = _int(entry.get("maxOutputTokens"))
    min_budget = _int(entry.get("minThinkingBudget"))
    return ModelInfo(
        id=model_id,
        display_name=display,
        provider=provider,
        family=family,
        version=version,
        effort=effort,
        tier=_TIER.get(family, 0),
        rank=_rank(version, effort, budget),
        max_tokens=max_tokens if max_tokens and max_tokens > 0 else None,
        max_output_tokens=max_out if max_out and max_out > 0 else None,
        thinking_budget=budget,
        min_thinking_budget=min_budget if min_budget and min_budget > 0 else None,
        supports_thinking=_flag(entry.get("supportsThinking")),
        supports_images=_flag(entry.get("supportsImages")),
        recommended=_flag(entry.get("recommended")),
        quota_group="internal" if internal else ("3p" if provider in ("anthropic", "openai") else "gemini"),
        listed=listed,
        remaining_fraction=frac,
        reset_time=reset,
    )


def _recommended(value: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(value, list):
        return out
    for sort in value:
        groups = sort.get("groups") if isinstance(sort, dict) else None
        for group in groups if isinstance(groups, list) else ():
            for mid in _str_list(group.get("modelIds") if isinstance(group, dict) else None):
                if mid not in out:
                    out.append(mid)
    return out


def parse_catalog(data: Any) -> Catalog:
    """A :class:`Catalog` from a raw ``fetchAvailableModels`` answer (§4.1).

    Never raises: anything of the wrong type reads as missing."""
    if not isinstance(data, dict):
        return Catalog()
    deprecated: dict[str, str] = {}
    raw_dep = data.get("deprecatedModelIds")
    if isinstance(raw_dep, dict):
        for old, value in raw_dep.items():
            # old id -> {newModelId, oldModelEnum, newModelEnum}; only newModelId matters.
            new = _text(value.get("newModelId")) if isinstance(value, dict) else _text(value)
            if isinstance(old, str) and old and new and new != old:
                deprecated[old] = new
    tab_ids = set(_str_list(data.get("tabModelIds")))
    models: dict[str, ModelInfo] = {}
    raw_models = data.get("models")
    if isinstance(raw_models, dict):
        for mid, entry in raw_models.items():
            if not isinstance(mid, str) or not mid.strip() or not isinstance(entry, dict):
                continue
            mid = mid.strip()
            models[mid] = _parse_model(mid, entry, hidden=mid in tab_ids or mid in deprecated)
    tiered: dict[str, list[str]] = {}
    raw_tiered = data.get("tieredModelIds")
    if isinstance(raw_tiered, dict):
        for key, ids in raw_tiered.items():
            if isinstance(key, str) and _str_list(ids):
                tiered[key] = _str_list(ids)
    return Catalog(
        models=models,
        default_model=_text(data.get("defaultAgentModelId")),
        recommended=_recommended(data.get("agentModelSorts")),
        deprecated=deprecated,
        image_models=_str_list(data.get("imageGenerationModelIds")),
        web_search_models=_str_list(data.get("webSearchModelIds")),
        tiered=tiered,
    )


def _union(lists: Iterable[list[str]]) -> list[str]:
    out: list[str] = []
    for ids in lists:
        out.extend(i for i in ids if i not in out)
    return out


def merge(catalogs: Iterable[Catalog]) -> Catalog:
    """The pool's catalog: every model any account lists.

    Static fields come from the first catalog naming the model; the quota is
    the best account's (highest remaining fraction, with its reset time), so
    it answers "can anybody serve it now". Per-account quota stays with the
    account."""
    cats = list(catalogs)
    models: dict[str, ModelInfo] = {}
    for cat in cats:
        for mid, info in cat.models.items():
            have = models.get(mid)
            if have is None:
                models[mid] = info
            elif info.remaining_fraction is not None and (
                have.remaining_fraction is None or info.remaining_fraction > have.remaining_fraction
            ):
                models[mid] = msgspec.structs.replace(
                    have, remaining_fraction=info.remaining_fraction, reset_time=info.reset_time
                )
    deprecated: dict[str, str] = {}
    tiered: dict[str, list[str]] = {}
    for cat in cats:
        for old, new in cat.deprecated.items():
            deprecated.setdefault(old, new)
        for key, ids in cat.tiered.items():
            tiered[key] = _union([tiered.get(key, []), ids])
    return Catalog(
        models=models,
        default_model=next((c.default_model for c in cats if c.default_model), ""),
        recommended=_union(c.recommended for c in cats),
        deprecated=deprecated,
        image_models=_union(c.image_models for c in cats),
        web_search_models=_union(c.web_search_models for c in cats),
        tiered=tiered,
    )


def catalog_from_ids(ids: Iterable[str]) -> Catalog:
    """A catalog from bare ids (callers that know only names): what the
    fallback catalog knows of an id, else what its name says. Every id but
    internal/tab ones is listed: the caller already chose what to show."""
    models: dict[str, ModelInfo] = {}
    for mid in ids:
        info = DEFAULT_CATALOG.models.get(mid) or _guess(mid)
        models[mid] = msgspec.structs.replace(info, listed=_servable(info))
    if not models:
        return DEFAULT_CATALOG
    return Catalog(
        models=models,
        default_model=DEFAULT_CATALOG.default_model if DEFAULT_CATALOG.default_model in models else "",
        deprecated={o: n for o, n in DEFAULT_CATALOG.deprecated.items() if n in models},
        image_models=[m for m in DEFAULT_CATALOG.image_models if m in models],
        web_search_models=[m for m in DEFAULT_CATALOG.web_search_models if m in models],
        tiered={k: [m for m in v if m in models] for k, v in DEFAULT_CATALOG.tiered.items()},
    )


def _as_catalog(catalog: Catalog | Iterable[str]) -> Catalog:
    if isinstance(catalog, Catalog):
        return catalog if catalog.models else DEFAULT_CATALOG
    return catalog_from_ids(catalog)


# --------------------------------------------------------------------------- listing


def listed_models(catalog: Catalog) -> list[ModelInfo]:
    """What ``/v1/models`` and the Gemini models list show, by id.
    An empty catalog (no account has listed its models yet) shows the fallback."""
    cat = _as_catalog(catalog)
    return sorted((m for m in cat.models.values() if m.listed), key=lambda m: m.id)


def client_names(mapping: Mapping[str, str], catalog: Catalog | Iterable[str]) -> list[str]:
    """Model ids to list to clients: the listed models plus configured names (not globs)."""
    names = {m.id for m in listed_models(_as_catalog(catalog))}
    names.update(k for k in mapping if not any(ch in k for ch in "*?["))
    return sorted(names)


# --------------------------------------------------------------------------- resolution


def _config_target(name: str, mapping: Mapping[str, str]) -> str | None:
    if name in mapping:
        return strip_prefix(mapping[name])
    lower = name.lower()
    for pattern, target in mapping.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(lower, pattern.lower()):
            return strip_prefix(target)
    return None


def _follow_renames(name: str, cat: Catalog) -> str:
    seen = {name}
    while name in cat.deprecated:
        name = cat.deprecated[name]
        if name in seen:  # a loop in the catalog: stop where we are
            break
        seen.add(name)
    return name


def _best(cat: Catalog, family: str, *, thinking: bool | None = None, effort: str = "") -> ModelInfo | None:
    """The best served model of ``family``: newest version, then the wanted
    effort, then the wanted thinking variant, then higher effort, then the
    catalog's own preferences (default, tiered, recommended)."""
    pool = [
        m for m in cat.models.values() if m.family == family and _servable(m) and m.id not in cat.deprecated
    ]
    choices = [m for m in pool if m.listed] or pool  # unlisted *-tiered ids only when nothing else
    if not choices:
        return None
    tiered = {i for ids in cat.tiered.values() for i in ids}

    def key(m: ModelInfo) -> tuple[Any, ...]:
        if thinking is None:
            think = 0
        elif thinking:
            think = 2 if m.id.endswith("-thinking") else int(m.supports_thinking)
        else:
            think = int(not m.id.endswith("-thinking"))
        return (
            _version_key(m.version),
            int(bool(effort) and m.effort == effort),
            think,
            m.rank,
            m.id == cat.default_model,
            m.id in tiered,
            m.recommended,
            m.id,
        )

    return max(choices, key=key)


def _family_label(family: str) -> str:
    return {
        "claude-opus": "Claude Opus",
        "claude-sonnet": "Claude Sonnet",
        "claude-haiku": "Claude Haiku",
        "gemini-flash": "Gemini Flash",
        "gemini-flash-lite": "Gemini Flash Lite",
        "gemini-pro": "Gemini Pro",
        "gemini-image": "Gemini image",
        "gpt-oss": "GPT-OSS",
    }.get(family, family)


def _not_found(requested: str, name: str, cat: Catalog, why: str = "") -> ModelNotFound:
    available = ", ".join(m.id for m in listed_models(cat)) or "none yet"
    return ModelNotFound(
        f"model {requested!r} is not available{why}. Available: {available}. "
        f"To serve that name with one of them: `agctl config set models.{name} <model>`.",
        param="model",
    )


def _resolve_claude(requested: str, lower: str, cat: Catalog) -> Resolved:
    base = lower.replace("[1m]", "").strip()
    base = _DATE_SUFFIX.sub("", base.removesuffix("-latest"))
    want_thinking = base.endswith("-thinking")
    base = base.removesuffix("-thinking")
    base = _DATE_SUFFIX.sub("", base)
    twins = (base + "-thinking", base) if want_thinking else (base, base + "-thinking")
    for twin in twins:
        m = cat.models.get(twin)
        # A "-thinking" request never lands on a twin that cannot think.
        if m is not None and _servable(m) and twin != lower and (m.supports_thinking or not want_thinking):
            return Resolved(
                model=twin, how="alias", note=f"{requested!r} is served by {twin}", requested=requested
            )
    family = family_of(lower)
    if family not in ("claude-opus", "claude-sonnet", "claude-haiku"):
        raise _not_found(requested, lower, cat, ": it names no Claude family (opus, sonnet or haiku)")
    # Haiku: the cheapest Claude tier served (CLIENTS.md); Opus and Sonnet stay in their tier.
    order = ["claude-haiku", "claude-sonnet", "claude-opus"] if family == "claude-haiku" else [family]
    for fam in order:
        m = _best(cat, fam, thinking=want_thinking)
        if m is not None:
            what = (
                f"the best {_family_label(fam)}"
                if fam == family
                else f"the cheapest Claude ({_family_label(fam)})"
            )
            return Resolved(
                model=m.id,
                how="family",
                note=f"{requested!r} is not served; using {m.id}, {what} served",
                requested=requested,
            )
    label = _family_label(family)
    raise _not_found(
        requested,
        lower,
        cat,
        f": no account serves a {label} model, and a {label} request is never served "
        "by another Claude tier or another vendor",
    )


def _resolve_openai(requested: str, lower: str, cat: Catalog) -> Resolved:
    if lower.startswith("gpt-oss"):
        m = _best(cat, "gpt-oss")
        if m is not None:
            note = f"{requested!r} is not served; using {m.id}, the best GPT-OSS served"
            return Resolved(model=m.id, how="family", note=note, requested=requested)
    pick: ModelInfo | None = None
    why = ""
    if "nano" in lower:
        pick = _best(cat, "gemini-flash-lite") or _best(cat, "gemini-flash")
        why = "the best Gemini Flash Lite served (an OpenAI nano-class name)"
    elif "mini" in lower:
        pick = _best(cat, "gemini-flash")
        why = "the best Gemini Flash served (an OpenAI mini-class name)"
    else:
        default = cat.models.get(cat.default_model)
        if default is not None and _servable(default) and default.provider == "google":
            pick, why = default, "the catalog's default agent model (an OpenAI name)"
        else:
            pick = _best(cat, "gemini-pro") or _best(cat, "gemini-flash")
            why = "the best Gemini model served (an OpenAI name)"
    if pick is None:
        raise _not_found(requested, lower, cat, ": OpenAI names are served by Gemini, and none is served")
    return Resolved(
        model=pick.id, how="alias", note=f"{requested!r} is served by {pick.id}, {why}", requested=requested
    )


def _resolve_gemini(requested: str, lower: str, cat: Catalog) -> Resolved:
    base = _GEMINI_SUFFIX.sub("", lower)
    if base != lower:
        target = _follow_renames(base, cat)
        m = cat.models.get(target)
        if m is not None and _servable(m):
            return Resolved(
                model=target, how="alias", note=f"{requested!r} is served by {target}", requested=requested
            )
    family = family_of(lower)
    if family not in ("gemini-flash", "gemini-flash-lite", "gemini-pro", "gemini-image"):
        raise _not_found(requested, lower, cat, ": it names no Gemini family (flash, flash-lite, pro, image)")
    best = _best(cat, family, effort=_effort_of_id(base))
    if best is None:
        label = _family_label(family)
        raise _not_found(requested, lower, cat, f": no account serves a {label} model")
    return Resolved(
        model=best.id,
        how="family",
        note=f"{requested!r} is not served; using {best.id}, the best {_family_label(family)} served",
        requested=requested,
    )


def resolve(
    client_model: str, mapping: Mapping[str, str] | None, catalog: Catalog | Iterable[str]
) -> Resolved:
    """The upstream model for ``client_model`` (rules in the module docstring).

    ``catalog``: the pool's merged catalog (empty -> ``DEFAULT_CATALOG``), or
    bare ids for older callers. Raises ModelNotFound, whose message lists the
    listed models and the ``agctl config set models.<name> <model>`` command."""
    cat = _as_catalog(catalog)
    name = strip_prefix(client_model)
    if not name:
        raise ModelNotFound("model is required: name one of the models GET /v1/models lists", param="model")
    target = _config_target(name, mapping or {})
    if target:
        return Resolved(
            model=target, how="config", note=f"{name!r} is mapped to {target} in [models]", requested=name
        )
    lower = name.lower()
    renamed = _follow_renames(lower, cat)
    if renamed != lower:
        m = cat.models.get(renamed)
        if m is not None and _servable(m):
            return Resolved(
                model=renamed,
                how="renamed",
                note=f"{name!r} is deprecated upstream; its replacement {renamed} serves it",
                requested=name,
            )
    for cand in (name, lower):
        m = cat.models.get(cand)
        if m is not None and _servable(m):
            return Resolved(model=cand, how="exact", requested=name)
    # A rename to an id nobody serves: resolve the new name like any other.
    lower = renamed
    family = family_of(lower)
    if family.startswith("claude-") or lower.startswith("claude"):
        return _resolve_claude(name, lower, cat)
    if _OPENAI_NAME.match(lower):
        return _resolve_openai(name, lower, cat)
    if lower.startswith("gemini"):
        return _resolve_gemini(name, lower, cat)
    raise _not_found(name, lower, cat)


def thinking_variant(catalog: Catalog | Iterable[str], model_id: str) -> str:
    """The id to use when the client wants thinking: ``model_id`` itself when
    it thinks, else its ``-thinking`` twin when served and able to think
    (older catalogs had ``claude-sonnet-4-5`` beside ``claude-sonnet-4-5-thinking``;
    ``gemini-2.5-flash-thinking`` today does not think, §4.1)."""
    cat = _as_catalog(catalog)
    twin = None if model_id.endswith("-thinking") else cat.models.get(model_id + "-thinking")
    return twin.id if twin is not None and twin.supports_thinking else model_id


# --------------------------------------------------------------------------- limits


def model_info(catalog: Catalog | Iterable[str], model_id: str) -> ModelInfo:
    """What is known of ``model_id``: its catalog entry, else the fallback
    catalog's, else what the name says (no advertised limits)."""
    cat = _as_catalog(catalog)
    return cat.models.get(model_id) or DEFAULT_CATALOG.models.get(model_id) or _guess(model_id)


def _guess(model_id: str) -> ModelInfo:
    """What the name alone says of an id no catalog describes (unlisted, no limits)."""
    info = _parse_model(model_id, {}, hidden=True)
    # Ids of thinking families may think; let the upstream decide.
    thinks = (
        model_id.endswith("-thinking")
        or info.family.startswith("claude-")
        or info.family in ("gemini-flash", "gemini-pro", "gpt-oss")
    )
    return msgspec.structs.replace(info, supports_thinking=thinks)


def output_cap(model: ModelInfo) -> int:
    """The most output tokens to ask for: ≤ the advertised cap and ≤ 64000 (§4.1)."""
    advertised = model.max_output_tokens
    if advertised is None or advertised <= 0:
        return SAFE_OUTPUT_CAP
    return min(advertised, SAFE_OUTPUT_CAP)


def limits(catalog: Catalog | Iterable[str], model_id: str) -> Limits:
    m = model_info(catalog, model_id)
    context = m.max_tokens
    if m.provider == "anthropic":
        context = min(context or CLAUDE_PROMPT_LIMIT, CLAUDE_PROMPT_LIMIT)
    return Limits(
        max_output_tokens=output_cap(m),
        context_tokens=context,
        thinking_budget=m.thinking_budget,
        min_thinking_budget=CLAUDE_MIN_THINKING_BUDGET
        if m.provider == "anthropic"
        else m.min_thinking_budget,
        supports_thinking=m.supports_thinking,
    )


# --------------------------------------------------------------------------- fallback catalog


def _fallback_entry(
    display: str,
    api: str,
    *,
    budget: int | None = None,
    min_budget: int | None = None,
    max_tokens: int | None = 1048576,
    max_out: int | None = 65536,
    images: bool = True,
    recommended: bool = False,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"apiProvider": api, "maxTokens": max_tokens, "maxOutputTokens": max_out}
    if display:
        entry["displayName"] = display
    if budget is not None:
        entry.update(supportsThinking=True, thinkingBudget=budget)
    if min_budget is not None:
        entry["minThinkingBudget"] = min_budget
    entry.update(supportsImages=images, recommended=recommended)
    return entry


_G = "API_PROVIDER_GOOGLE_GEMINI"


def _fallback_data() -> dict[str, Any]:
    """The listed models of the live 2026-08-22 catalog (UPSTREAM.md §4.1),
    plus the tiered Flash id and the deprecated rename, without quota."""
    flash: dict[str, Any] = dict(min_budget=32, recommended=True)
    pro: dict[str, Any] = dict(min_budget=128, max_out=65535)
    lite: dict[str, Any] = dict(max_out=65535, images=False)
    claude: dict[str, Any] = dict(budget=1024, max_tokens=250000, max_out=64000)
    models = {
        "gemini-3.7-flash-high": _fallback_entry("Gemini 3.7 Flash (High)", _G, budget=-1, **flash),
        "gemini-3.7-flash-medium": _fallback_entry("Gemini 3.7 Flash (Medium)", _G, budget=4000, **flash),
        "gemini-3.7-flash-low": _fallback_entry("Gemini 3.7 Flash (Low)", _G, budget=1000, **flash),
        "gemini-3.7-flash-tiered": _fallback_entry("", _G, budget=-1, min_budget=32),
        "gemini-3.6-flash-high": _fallback_entry("Gemini 3.6 Flash (High)", _G, budget=-1, **flash),
        "gemini-3.6-flash-medium": _fallback_entry("Gemini 3.6 Flash (Medium)", _G, budget=4000, **flash),
        "gemini-3.6-flash-low": _fallback_entry("Gemini 3.6 Flash (Low)", _G, budget=1000, **flash),
        "gemini-3-flash-agent": _fallback_entry("Gemini 3.5 Flash (High)", _G, budget=-1, **flash),
        "gemini-3.5-flash-low": _fallback_entry("Gemini 3.5 Flash (Medium)", _G, budget=4000, **flash),
        "gemini-3.5-flash-extra-low": _fallback_entry("Gemini 3.5 Flash (Low)", _G, budget=1000, **flash),
        "gemini-3-flash": _fallback_entry("Gemini 3 Flash", _G, budget=-1, min_budget=32),
        "gemini-pro-agent": _fallback_entry(
            "Gemini 3.1 Pro (High)", _G, budget=10001, recommended=True, **pro
        ),
        "gemini-3.1-pro-low": _fallback_entry(
            "Gemini 3.1 Pro (Low)", _G, budget=1001, recommended=True, **pro
        ),
        "gemini-3.1-flash-lite": _fallback_entry("Gemini 3.1 Flash Lite", _G, **lite),
        "gemini-3.1-flash-image": _fallback_entry(
            "Gemini 3.1 Flash Image", _G, max_tokens=None, max_out=None
        ),
        "gemini-2.5-pro": _fallback_entry("Gemini 2.5 Pro", _G, budget=1024, **pro),
        "gemini-2.5-flash": _fallback_entry("Gemini 3.1 Flash Lite", _G, **lite),
        "gemini-2.5-flash-lite": _fallback_entry("Gemini 3.1 Flash Lite", _G, **lite),
        "gemini-2.5-flash-thinking": _fallback_entry("Gemini 3.1 Flash Lite", _G, **lite),
        "claude-opus-4-6-thinking": _fallback_entry(
            "Claude Opus 4.6 (Thinking)", "API_PROVIDER_ANTHROPIC_VERTEX", **claude
        ),
        "claude-sonnet-4-6": _fallback_entry(
            "Claude Sonnet 4.6 (Thinking)", "API_PROVIDER_ANTHROPIC_VERTEX", **claude
        ),
        "gpt-oss-120b-medium": _fallback_entry(
            "GPT-OSS 120B (Medium)",
            "API_PROVIDER_OPENAI_VERTEX",
            budget=8192,
            max_tokens=131072,
            max_out=32768,
            images=False,
        ),
    }
    return {
        "models": models,
        "defaultAgentModelId": "gemini-3.7-flash-high",
        "imageGenerationModelIds": ["gemini-3.1-flash-image"],
        "webSearchModelIds": ["gemini-3.1-flash-lite"],
        "deprecatedModelIds": {"gemini-3.1-pro-high": {"newModelId": "gemini-pro-agent"}},
        "tieredModelIds": {
            "flashLite": ["gemini-3.1-flash-lite"],
            "flash": ["gemini-3.7-flash-tiered"],
            "pro": ["gemini-3.1-pro-low"],
        },
    }


#: Used before any account has listed its models.
DEFAULT_CATALOG: Final[Catalog] = parse_catalog(_fallback_data())
