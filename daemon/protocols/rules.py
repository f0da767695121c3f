"""The upstream's rules for a translated request, in one place (pure).

Every client protocol's translator produces a Gemini ``GenerateContentRequest``;
this module then makes it acceptable to the model that will serve it, from
that model's catalog entry (``fetchAvailableModels``, UPSTREAM.md §4.1). No
translator repeats these rules: they ask :func:`apply`.

Rules and the facts behind them:

- ``maxOutputTokens`` is at most the catalog's ``maxOutputTokens`` and, in any
  case, 64000: requesting more returns 400 (§4.1 "Output caps"; a sub2api user
  saw 65536 fail where 64000 passed on Flash models, so 64000 is the safe cap).
- Thinking: a model without ``supportsThinking`` gets no ``thinkingConfig``.
  A budget below the model's ``minThinkingBudget`` is raised to it. For Claude
  the budget must stay below ``maxOutputTokens`` and at least 1024, else
  thinking is switched off (§6.4: CPA lowers the budget to ``max-1`` and drops
  it under 1024).
- Gemini 3 thinking on the wire (§7.1 DISAGREE): ``thinkingBudget`` integers
  (what the agy CLI is reported to send; its numbers equal the catalog's
  default budgets) unless ``upstream.gemini_thinking = "level"``, which sends
  lowercase ``thinkingLevel`` (CPA, sub2api). Never both.
- Claude tools (§6.2, §6.3): the schema lives in ``parameters`` (never
  ``parametersJsonSchema``); a tool with no parameters gets a one-property
  placeholder (``reason``) because VALIDATED mode needs a required property;
  keywords Claude rejects in VALIDATED mode are moved into the description;
  ``toolConfig`` mode becomes VALIDATED unless the client forced ANY/NONE.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from daemon.models import CLAUDE_MIN_THINKING_BUDGET, SAFE_OUTPUT_CAP

# The caps live with the catalog (§4.1: "≤ the catalog maxOutputTokens, and
# ≤ 64000 when in doubt"; Anthropic's minimum budget, §6.4).
SAFE_MAX_OUTPUT = SAFE_OUTPUT_CAP
CLAUDE_MIN_BUDGET = CLAUDE_MIN_THINKING_BUDGET
# The placeholder property for parameterless Claude tools (§6.3, CPA's name).
PLACEHOLDER = "reason"
PLACEHOLDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        PLACEHOLDER: {"type": "string", "description": "Brief explanation of why you are calling this tool"}
    },
    "required": [PLACEHOLDER],
}
# Keywords Claude rejects in VALIDATED mode (§6.3, CPA's list); their meaning
# goes into the description so the model still sees it.
_CLAUDE_HINT_KEYS = (
    "minLength",
    "maxLength",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "format",
    "default",
    "examples",
    "example",
    "minimum",
    "maximum",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
    "title",
)
# Budget -> level thresholds when levels are sent (the catalog's own defaults:
# Flash low 1000, medium 4000, high -1; §4.1, §7.1).
_LEVELS = ((0, "minimal"), (1024, "low"), (8192, "medium"))

GeminiThinking = Literal["budget", "level"]


class ModelLimits(Protocol):
    """What the rules need to know of a model (the catalog entry)."""

    @property
    def max_output_tokens(self) -> int | None: ...
    @property
    def supports_thinking(self) -> bool: ...
    @property
    def min_thinking_budget(self) -> int | None: ...


def is_claude(model: str) -> bool:
    return model.startswith("claude")


def uses_levels(model: str, mode: GeminiThinking) -> bool:
    return mode == "level" and model.startswith("gemini-3")


def level_for_budget(budget: int) -> str:
    if budget < 0:
        return "high"  # -1: dynamic, the model's most
    for ceiling, level in _LEVELS:
        if budget <= ceiling:
            return level
    return "high"


def apply(
    request: dict[str, Any],
    *,
    model: str,
    limits: ModelLimits | None,
    gemini_thinking: GeminiThinking = "budget",
) -> list[str]:
    """Make ``request`` (a GenerateContentRequest, changed in place) fit
    ``model``; returns notes on what was changed, for the request log."""
    notes: list[str] = []
    claude = is_claude(model)
    gen = request.get("generationConfig")
    if not isinstance(gen, dict):
        gen = {}
    cap = SAFE_MAX_OUTPUT
    if limits is not None and limits.max_output_tokens:
        cap = min(cap, limits.max_output_tokens)
    max_out = gen.get("maxOutputTokens")
    if isinstance(max_out, int) and not isinstance(max_out, bool) and max_out > cap:
        gen["maxOutputTokens"] = cap
        notes.append(f"maxOutputTokens {max_out} lowered to {cap}, the most {model} can answer")
    _thinking(gen, model=model, claude=claude, limits=limits, mode=gemini_thinking, notes=notes)
    if gen:
        request["generationConfig"] = gen
    else:
        request.pop("generationConfig", None)
    if claude:
        _declare_called_tools(request, notes)
        _claude_tools(request, notes)
    return notes


def _declare_called_tools(request: dict[str, Any], notes: list[str]) -> None:
    """Claude refuses a conversation with tool calls in its history when the
    request does not define those tools (Anthropic's API: tool_use blocks
    need a ``tools`` list naming them). Clients send such requests: Codex's
    local compaction asks for its summary with the history's calls and no
    tools. Each called but undeclared name gets a declaration; when the
    request had no tools at all, calling them is turned off."""
    called: set[str] = set()
    for content in request.get("contents") or []:
        for part in (content.get("parts") or []) if isinstance(content, dict) else []:
            fc = part.get("functionCall") if isinstance(part, dict) else None
            if isinstance(fc, dict) and isinstance(fc.get("name"), str):
                called.add(fc["name"])
    if not called:
        return
    tools = request.get("tools")
    if not isinstance(tools, list):
        tools = []
    declared = {
        decl.get("name")
        for tool in tools
        if isinstance(tool, dict)
        for decl in (tool.get("functionDeclarations") or [])
        if isinstance(decl, dict)
    }
    missing = sorted(called - declared)
    if not missing:
        return
    had_tools = bool(declared)
    tools.append(
        {
            "functionDeclarations": [
                {"name": name, "description": "A tool called earlier in this conversation."}
                for name in missing
            ]
        }
    )
    request["tools"] = tools
    if not had_tools:
        request["toolConfig"] = {"functionCallingConfig": {"mode": "NONE"}}
    notes.append(f"declared the tools called earlier but not offered now: {', '.join(missing)}")


def _thinking(
    gen: dict[str, Any],
    *,
    model: str,
    claude: bool,
    limits: ModelLimits | None,
    mode: GeminiThinking,
    notes: list[str],
) -> None:
    tc = gen.get("thinkingConfig")
    if not isinstance(tc, dict):
        return
    if limits is not None and not limits.supports_thinking:
        del gen["thinkingConfig"]
        notes.append(f"thinking dropped: {model} does not think")
        return
    if not tc.get("includeThoughts", True) and not tc.get("thinkingBudget"):
        tc.pop("thinkingLevel", None)
        return  # thinking off: nothing to adjust
    budget = tc.get("thinkingBudget")
    if "thinkingLevel" in tc and budget is not None:
        tc.pop("thinkingLevel")  # §7.1: never both
    if not isinstance(budget, int) or isinstance(budget, bool):
        return
    floor = limits.min_thinking_budget if limits is not None and limits.min_thinking_budget else 0
    if claude:
        floor = max(floor, CLAUDE_MIN_BUDGET)
    if 0 < budget < floor:
        tc["thinkingBudget"] = budget = floor
    if claude:
        max_out = gen.get("maxOutputTokens")
        if max_out is None and budget > 0:
            # §6.4: maxOutputTokens must exceed the budget; an effort-only
            # request (OpenAI reasoning_effort) names no length, and the
            # upstream's own default is unknown: send the model's cap.
            cap = SAFE_MAX_OUTPUT
            if limits is not None and limits.max_output_tokens:
                cap = min(cap, limits.max_output_tokens)
            gen["maxOutputTokens"] = max_out = cap
        if isinstance(max_out, int) and budget >= max_out:
            budget = max_out - 1
            if budget < CLAUDE_MIN_BUDGET:
                del gen["thinkingConfig"]
                notes.append("thinking turned off: maxOutputTokens leaves no room for a 1024-token budget")
                return
            tc["thinkingBudget"] = budget
            notes.append(f"thinking budget lowered to {budget}: it must stay below maxOutputTokens")
        return
    if uses_levels(model, mode) and budget != 0:
        tc.pop("thinkingBudget")
        tc["thinkingLevel"] = level_for_budget(budget)


def _claude_tools(request: dict[str, Any], notes: list[str]) -> None:
    tools = request.get("tools")
    if not isinstance(tools, list):
        return
    has_functions = False
    for tool in tools:
        decls = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        if not isinstance(decls, list):
            continue
        for decl in decls:
            if not isinstance(decl, dict):
                continue
            has_functions = True
            schema = decl.pop("parametersJsonSchema", None)
            if "parameters" not in decl and schema is not None:
                decl["parameters"] = schema
            params = decl.get("parameters")
            if not isinstance(params, dict) or not params.get("properties"):
                decl["parameters"] = PLACEHOLDER_SCHEMA
                notes.append(f"tool {decl.get('name')!r}: a placeholder parameter (Claude needs one)")
                continue
            decl["parameters"] = _claude_schema(params)
    if not has_functions:
        return
    tc = request.setdefault("toolConfig", {})
    fcc = tc.setdefault("functionCallingConfig", {})
    if fcc.get("mode") in (None, "AUTO", "MODE_UNSPECIFIED"):
        fcc["mode"] = "VALIDATED"


def _claude_schema(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    hints: list[str] = []
    for key, val in node.items():
        if key in _CLAUDE_HINT_KEYS:
            if key != "title" and not isinstance(val, dict | list):
                hints.append(f"{key}: {val}")
            continue
        if key == "properties" and isinstance(val, dict):
            out[key] = {k: _claude_schema(v) for k, v in val.items()}
        elif key == "items":
            out[key] = _claude_schema(val)
        elif key == "anyOf" and isinstance(val, list):
            out[key] = [_claude_schema(v) for v in val]
        else:
            out[key] = val
    if hints:
        desc = out.get("description")
        text = "; ".join(hints)
        out["description"] = f"{desc} ({text})" if isinstance(desc, str) and desc else f"({text})"
    return out


def strip_placeholder_calls(resp: dict[str, Any], names: frozenset[str]) -> None:
    """Remove the placeholder argument from the answer's calls of ``names``
    (in place), so the client's tool gets the arguments it declared."""
    if not names:
        return
    for cand in resp.get("candidates") or []:
        content = cand.get("content") if isinstance(cand, dict) else None
        for part in (content.get("parts") or []) if isinstance(content, dict) else []:
            fc = part.get("functionCall") if isinstance(part, dict) else None
            if isinstance(fc, dict) and fc.get("name") in names and isinstance(fc.get("args"), dict):
                fc["args"].pop(PLACEHOLDER, None)


def placeholder_tools(request: dict[str, Any]) -> frozenset[str]:
    """Names of the declarations that carry only the placeholder."""
    names: set[str] = set()
    for tool in request.get("tools") or []:
        for decl in (tool.get("functionDeclarations") or []) if isinstance(tool, dict) else []:
            if isinstance(decl, dict) and decl.get("parameters") == PLACEHOLDER_SCHEMA:
                names.add(str(decl.get("name")))
    return frozenset(names)
