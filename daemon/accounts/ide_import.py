"""Read the refresh token from the Antigravity IDE's local state.

The IDE keeps its login in a VS Code-style SQLite file ``state.vscdb``, table
``ItemTable``, key ``jetskiStateSync.agentManagerInitState``: a base64
protobuf that holds the refresh token (UPSTREAM.md). The protobuf schema is
not public, so the message is walked generically and the string that looks
like a Google refresh token (``1//…``) is taken.
"""

from __future__ import annotations

import base64
import binascii
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from daemon.errors import BadRequest, NotFound

STATE_KEY = "jetskiStateSync.agentManagerInitState"
_MAX_DEPTH = 8


def default_paths() -> list[Path]:
    home = Path.home()
    rel = Path("Antigravity") / "User" / "globalStorage" / "state.vscdb"
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support" / rel]
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA")
        return [Path(appdata) / rel] if appdata else []
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return [Path(xdg) / rel if xdg else home / ".config" / rel]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def iter_strings(buf: bytes, depth: int = 0) -> Iterator[str]:
    """Every length-delimited field that decodes as text, nested messages included."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            chunk = buf[pos : pos + length]
            if len(chunk) != length:
                raise ValueError("truncated field")
            pos += length
            try:
                text = chunk.decode("utf-8")
                if text.isprintable():
                    yield text
            except UnicodeDecodeError:
                pass
            if depth < _MAX_DEPTH:
                try:
                    yield from iter_strings(chunk, depth + 1)
                except ValueError:
                    pass
        else:
            raise ValueError(f"unsupported wire type {wire}")


def refresh_token_from_value(value: str | bytes) -> str | None:
    raw = value.encode() if isinstance(value, str) else value
    raw = raw.strip()
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    try:
        for s in iter_strings(data):
            if s.startswith("1//") and len(s) > 20:
                return s
    except ValueError:
        return None
    return None


def read_refresh_token(path: str | None) -> tuple[str, Path]:
    tried = [Path(path).expanduser()] if path else default_paths()
    for p in tried:
        if not p.exists():
            continue
        try:
            con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=2)
            try:
                row = con.execute("SELECT value FROM ItemTable WHERE key = ?", (STATE_KEY,)).fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise BadRequest(f"{p} is not a readable Antigravity state database ({exc})") from None
        if row is None:
            raise BadRequest(
                f"{p} has no {STATE_KEY} entry: sign in to the Antigravity IDE first, "
                "or add the account with `agctl accounts add`"
            )
        token = refresh_token_from_value(row[0])
        if not token:
            raise BadRequest(f"{p}: the IDE's login state has an unknown format (no refresh token found)")
        return token, p
    names = ", ".join(str(p) for p in tried) or "(no default path on this platform)"
    raise NotFound(
        f"no Antigravity IDE state found; tried {names}. Pass the path: `agctl accounts import-ide PATH`"
    )
