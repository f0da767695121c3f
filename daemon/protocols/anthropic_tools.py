"""Anthropic-defined ("typed") client tools, declared to the upstream as plain
functions (pure data and one lookup).

Claude Code and the Anthropic SDK's tool helpers declare tools such as
``{"type": "bash_20250124", "name": "bash"}`` with no ``input_schema``:
Anthropic's own API knows the schema of each dated type. The upstream only
knows function declarations, so each KNOWN type gets its published input
schema here, under the name the client gave (the model's call comes back
under that name, so the client's ``tool_use`` block is the one it expects).

Facts relied on (Anthropic's tool-use docs and the input types of the
official ``anthropic`` SDK, 2.x, written out here in our own words):

- ``bash_20241022`` / ``bash_20250124``, name ``bash``: ``command`` (string,
  required unless restarting) and ``restart`` (boolean).
- ``text_editor_20241022`` / ``text_editor_20250124``, name
  ``str_replace_editor``: ``command`` one of view, create, str_replace,
  insert, undo_edit; ``path``; ``view_range`` (two integers, 1-based, -1 =
  to the end); ``file_text`` (create); ``old_str`` / ``new_str``
  (str_replace); ``insert_line`` (0 = top) and ``new_str`` (insert).
- ``text_editor_20250429`` / ``text_editor_20250728``, name
  ``str_replace_based_edit_tool``: the same without ``undo_edit``
  (``max_characters`` is a declaration option, not an input).
- ``computer_20241022`` / ``computer_20250124`` / ``computer_20251124``, name
  ``computer``: ``action`` (the actions each version lists; 20251124 adds
  ``zoom``), ``coordinate`` [x, y], ``start_coordinate`` (left_click_drag),
  ``text`` (key / type, or keys held during a click or scroll),
  ``duration`` (hold_key, wait: seconds), ``scroll_direction`` (up, down,
  left, right), ``scroll_amount``, ``region`` [x1, y1, x2, y2] (zoom).
  Declaration options (display size and number) go into the description.
- ``memory_20250818``, name ``memory``: ``command`` one of view, create,
  str_replace, insert, delete, rename; ``path``; ``view_range``;
  ``file_text``; ``old_str`` / ``new_str``; ``insert_line`` and
  ``insert_text`` (insert); ``old_path`` / ``new_path`` (rename).

Server tools (web search, web fetch, code execution, tool search, MCP
toolsets) run on Anthropic's side; the upstream has nothing to run them, so
they are reported as ignored (a separate path handles web search).
Any other typed tool is refused with a 400 naming its type: silently
dropping it would leave the model without a tool the client relies on.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

# Type prefixes of tools Anthropic's servers run (never sent upstream).
SERVER_TOOL_PREFIXES = (
    "web_search_",
    "web_fetch_",
    "code_execution_",
    "tool_search_tool_",
    "mcp_toolset",
)


def _str(desc: str) -> Json:
    return {"type": "string", "description": desc}


def _ints(desc: str, n: int) -> Json:
    return {"type": "array", "items": {"type": "integer"}, "minItems": n, "maxItems": n, "description": desc}


_PATH = _str("Absolute path to the file or directory.")
_VIEW_RANGE = _ints(
    "Optional for view on a file: [start, end] line numbers, 1-based; end -1 reads to the end.", 2
)


def _bash() -> Json:
    return {
        "type": "object",
        "properties": {
            "command": _str("The bash command to run (an empty string when restarting)."),
            "restart": {"type": "boolean", "description": "Set to true to restart the bash session."},
        },
        # Published as optional when restarting; required here because Claude
        # upstream (VALIDATED mode) wants a required property (UPSTREAM.md §6.2).
        "required": ["command"],
    }


def _editor(commands: list[str]) -> Json:
    return {
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": commands, "description": "The command to run."},
            "path": _PATH,
            "view_range": _VIEW_RANGE,
            "file_text": _str("For create: the content of the new file."),
            "old_str": _str("For str_replace: the exact text to replace (must match once)."),
            "new_str": _str("For str_replace: the replacement text. For insert: the text to insert."),
            "insert_line": {
                "type": "integer",
                "description": "For insert: the line after which to insert the text (0 for the top).",
            },
        },
        "required": ["command", "path"],
    }


def _memory() -> Json:
    return {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "enum": ["view", "create", "str_replace", "insert", "delete", "rename"],
                "description": "The memory command to run.",
            },
            "path": _str("Path inside the memory directory (for every command but rename)."),
            "view_range": _VIEW_RANGE,
            "file_text": _str("For create: the content of the file."),
            "old_str": _str("For str_replace: the exact text to replace."),
            "new_str": _str("For str_replace: the replacement text."),
            "insert_line": {"type": "integer", "description": "For insert: the line to insert at."},
            "insert_text": _str("For insert: the text to insert."),
            "old_path": _str("For rename: the current path."),
            "new_path": _str("For rename: the new path."),
        },
        "required": ["command"],
    }


_COMPUTER_2024 = [
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "screenshot",
    "cursor_position",
]
_COMPUTER_2025 = [
    *_COMPUTER_2024,
    "triple_click",
    "left_mouse_down",
    "left_mouse_up",
    "scroll",
    "hold_key",
    "wait",
]


def _computer(actions: list[str]) -> Json:
    props: Json = {
        "action": {"type": "string", "enum": actions, "description": "The action to perform."},
        "coordinate": _ints("[x, y] in pixels on the display, for mouse actions.", 2),
        "text": _str("For key and type: the keys or text. For clicks and scroll: keys to hold down."),
    }
    if "scroll" in actions:
        props |= {
            "start_coordinate": _ints("For left_click_drag: the [x, y] to start from.", 2),
            "duration": {"type": "number", "description": "For hold_key and wait: seconds."},
            "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
            "scroll_amount": {"type": "integer", "description": "For scroll: how many wheel clicks."},
        }
    if "zoom" in actions:
        props["region"] = _ints("For zoom: [x1, y1, x2, y2], the screen region to view.", 4)
    return {"type": "object", "properties": props, "required": ["action"]}


_EDITOR_OLD = ["view", "create", "str_replace", "insert", "undo_edit"]
_EDITOR_NEW = ["view", "create", "str_replace", "insert"]
_EDITOR_DESC = (
    "View, create and edit text files: view shows a file with line numbers or lists a directory; "
    "create writes a new file; str_replace replaces one exact occurrence of old_str; "
    "insert adds text after a line"
)

# type -> (published tool name, description, input schema). ONE table.
KNOWN: dict[str, tuple[str, str, Json]] = {
    "bash_20241022": ("bash", "Run commands in a persistent bash shell.", _bash()),
    "bash_20250124": ("bash", "Run commands in a persistent bash shell.", _bash()),
    "text_editor_20241022": (
        "str_replace_editor",
        _EDITOR_DESC + "; undo_edit reverts the last edit.",
        _editor(_EDITOR_OLD),
    ),
    "text_editor_20250124": (
        "str_replace_editor",
        _EDITOR_DESC + "; undo_edit reverts the last edit.",
        _editor(_EDITOR_OLD),
    ),
    "text_editor_20250429": ("str_replace_based_edit_tool", _EDITOR_DESC + ".", _editor(_EDITOR_NEW)),
    "text_editor_20250728": ("str_replace_based_edit_tool", _EDITOR_DESC + ".", _editor(_EDITOR_NEW)),
    "computer_20241022": (
        "computer",
        "Control the computer's screen, mouse and keyboard.",
        _computer(_COMPUTER_2024),
    ),
    "computer_20250124": (
        "computer",
        "Control the computer's screen, mouse and keyboard.",
        _computer(_COMPUTER_2025),
    ),
    "computer_20251124": (
        "computer",
        "Control the computer's screen, mouse and keyboard.",
        _computer([*_COMPUTER_2025, "zoom"]),
    ),
    "memory_20250818": (
        "memory",
        "A persistent memory directory (/memories) kept across conversations: read and write files there.",
        _memory(),
    ),
}


def is_server_tool(kind: str) -> bool:
    return kind.startswith(SERVER_TOOL_PREFIXES)


def declaration_parts(tool: Json) -> tuple[str, str, Json] | None:
    """(name, description, input schema) for a known typed tool, None if the
    type is unknown. The client's name wins over the published one."""
    known = KNOWN.get(str(tool.get("type")))
    if known is None:
        return None
    default_name, desc, schema = known
    name = tool.get("name") if isinstance(tool.get("name"), str) and tool.get("name") else default_name
    if tool.get("type", "").startswith("computer_"):
        size = (tool.get("display_width_px"), tool.get("display_height_px"))
        if all(isinstance(v, int) for v in size):
            desc = f"{desc} The display is {size[0]}x{size[1]} pixels."
    return str(name), desc, schema
