"""Client model name -> upstream model id.

Order: ``[models]`` in config (exact, then glob), a name the pool lists, the
built-in aliases for names clients hard-code (Claude Code, OpenAI SDK
defaults), then a family fallback (an unknown "*flash*" -> the best flash
model the pool has: the Gemini CLI rewrites names, CLIENTS.md). Unknown
names get an error listing what is available.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable

from daemon.errors import ModelNotFound

log = logging.getLogger(__name__)

# Used before any account has listed its models.
DEFAULT_MODELS = (
    "gemini-3-pro-high",
    "gemini-3-pro-low",
    "gemini-3-flash",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-thinking",
    "claude-opus-4-5-thinking",
)

# (glob over the lower-cased client name, preferred upstream models in order)
BUILTIN_ALIASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("claude-opus-*", ("claude-opus-4-5-thinking", "claude-sonnet-4-5-thinking", "claude-sonnet-4-5")),
    ("claude-*opus*", ("claude-opus-4-5-thinking", "claude-sonnet-4-5-thinking")),
    ("claude-sonnet-*thinking*", ("claude-sonnet-4-5-thinking", "claude-sonnet-4-5")),
    ("claude-*sonnet*", ("claude-sonnet-4-5", "claude-sonnet-4-5-thinking")),
    ("claude-*haiku*", ("gemini-3-flash", "gemini-2.5-flash", "claude-sonnet-4-5")),
    ("claude-*", ("claude-sonnet-4-5", "claude-sonnet-4-5-thinking")),
    ("gpt-*mini*", ("gemini-3-flash", "gemini-2.5-flash")),
    ("gpt-*nano*", ("gemini-2.5-flash-lite", "gemini-3-flash")),
    ("gpt-*codex*", ("gemini-3-pro-high", "claude-sonnet-4-5")),
    ("gpt-*", ("gemini-3-pro-high", "gemini-2.5-pro", "gemini-3-flash")),
    ("o[0-9]*mini*", ("gemini-3-flash", "gemini-2.5-flash")),
    ("o[0-9]*", ("gemini-3-pro-high", "gemini-2.5-pro")),
    ("chatgpt-*", ("gemini-3-pro-high", "gemini-3-flash")),
)
FAMILY_FALLBACKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("*flash-lite*", ("gemini-2.5-flash-lite", "gemini-3-flash", "gemini-2.5-flash")),
    ("*flash*", ("gemini-3-flash", "gemini-2.5-flash")),
    ("*pro*", ("gemini-3-pro-high", "gemini-3-pro-low", "gemini-2.5-pro")),
    ("gemini-*", ("gemini-3-flash", "gemini-3-pro-high")),
)


def strip_prefix(name: str) -> str:
    name = name.strip()
    for prefix in ("models/", "google/", "antigravity/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _first_available(prefs: Iterable[str], available: set[str]) -> str | None:
    for p in prefs:
        if p in available:
            return p
    return None


def resolve(client_model: str, mapping: dict[str, str], available: Iterable[str]) -> str:
    avail = set(available) or set(DEFAULT_MODELS)
    name = strip_prefix(client_model)
    if not name:
        raise ModelNotFound("model is required", param="model")
    if name in mapping:
        return strip_prefix(mapping[name])
    lower = name.lower()
    for pattern, target in mapping.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(lower, pattern.lower()):
            return strip_prefix(target)
    if name in avail:
        return name
    for pattern, prefs in BUILTIN_ALIASES:
        if fnmatch.fnmatchcase(lower, pattern):
            hit = _first_available(prefs, avail)
            if hit:
                return hit
    for pattern, prefs in FAMILY_FALLBACKS:
        if fnmatch.fnmatchcase(lower, pattern):
            hit = _first_available(prefs, avail)
            if hit:
                log.info("model %r is not listed; using %s (family fallback)", client_model, hit)
                return hit
    raise ModelNotFound(
        f"model {client_model!r} is not available; available: {', '.join(sorted(avail))} "
        "(or map it with `agctl config set models.<name> <model>`)",
        param="model",
    )


def client_names(mapping: dict[str, str], available: Iterable[str]) -> list[str]:
    """Model ids to list to clients: the pool's models plus configured aliases."""
    names = set(available) or set(DEFAULT_MODELS)
    names.update(k for k in mapping if not any(ch in k for ch in "*?["))
    return sorted(names)
