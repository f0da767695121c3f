"""Pure helpers for sending Anthropic requests to z.ai.

z.ai speaks the Anthropic Messages API itself (UPSTREAM.md, "z.ai"), so the
body goes through unchanged except for the model: Claude family names map to
``glm-*`` models from config ``zai.models``; ``glm-*`` names pass through.
"""

from __future__ import annotations

from typing import Any

from daemon.errors import ModelNotFound

# UPSTREAM.md: opus/sonnet -> glm-4.7, haiku -> glm-4.5-air by default
# (the same defaults as daemon.config.ZaiConfig.models).
DEFAULT_MODELS: dict[str, str] = {"opus": "glm-4.7", "sonnet": "glm-4.7", "haiku": "glm-4.5-air"}


def zai_model(client_model: str, mapping: dict[str, str]) -> str:
    """The z.ai model for a client's model name.

    Order: an exact key of ``mapping``; a ``glm-*`` name as is; the longest
    key of ``mapping`` found in the name (``claude-sonnet-4-5`` -> "sonnet").
    An empty mapping means the defaults.
    """
    table = mapping or DEFAULT_MODELS
    if client_model in table:
        return table[client_model]
    lowered = client_model.lower()
    if lowered.startswith("glm-"):
        return client_model
    for key in sorted(table, key=len, reverse=True):
        if key and key.lower() in lowered:
            return table[key]
    raise ModelNotFound(
        f"no z.ai model for {client_model!r}: use a glm-* model name or add a "
        f"family to zai.models (known: {', '.join(sorted(table))})"
    )


def zai_request_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The client's Anthropic body with only ``model`` replaced."""
    return {**body, "model": model}
