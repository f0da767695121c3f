"""Read the login of the Antigravity IDE from its ``state.vscdb``.

The IDE keeps its state in a VS Code-style SQLite file, table
``ItemTable(key, value)``. Two formats hold the OAuth login
(UPSTREAM.md §3.2a):

- IDE >= 1.16.5, key ``antigravityUnifiedStateSync.oauthToken``: base64 of a
  *Topic* whose field 1 entries are *DataEntry* {1 key, 2 Row}; the entry
  keyed ``oauthTokenInfoSentinelKey`` holds a Row whose field 1 is a string,
  itself base64 of an *OAuthTokenInfo* {1 access, 2 type, 3 refresh, 4 expiry
  Timestamp{1 seconds, 2 nanos}}. Early third-party writers put the
  OAuthTokenInfo (raw or base64) straight into DataEntry field 2: accepted.
- IDE < 1.16.5, key ``jetskiStateSync.agentManagerInitState``: base64 of a
  message whose field 6 is the OAuthTokenInfo; field 2 may hold the email.

Only the refresh token matters: the daemon refreshes it itself and never
trusts the stored access token (§3.2, import procedure). The database is
opened read-only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

from daemon.accounts import protowire as pw
from daemon.errors import BadRequest, NotFound

UNIFIED_KEY = "antigravityUnifiedStateSync.oauthToken"
UNIFIED_SENTINEL = "oauthTokenInfoSentinelKey"
USER_STATUS_KEY = "antigravityUnifiedStateSync.userStatus"
USER_STATUS_SENTINEL = "userStatusSentinelKey"
LEGACY_KEY = "jetskiStateSync.agentManagerInitState"
STATE_KEY = LEGACY_KEY  # the name older callers used
KEYS = (UNIFIED_KEY, LEGACY_KEY)
# The 2.x line ships a separate "Antigravity IDE" product next to the app (§3.2a).
FOLDERS = ("Antigravity", "Antigravity IDE")

# OAuthTokenInfo field numbers (§3.2a).
_TOKEN_ACCESS, _TOKEN_REFRESH, _TOKEN_EXPIRY = 1, 3, 4
_LEGACY_TOKEN_FIELD, _LEGACY_EMAIL_FIELD = 6, 2
_USER_STATUS_EMAIL_FIELDS = (3, 7)
_MAX_DEPTH = 8
_URLSAFE = re.compile(rb"^[A-Za-z0-9_-]*={0,2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Google refresh tokens are "1//" + ~100 URL-safe characters; anything much
# shorter is not one (a test value, a cut-off field).
_MIN_TOKEN_LEN = 20


@dataclass(frozen=True)
class IdeLogin:
    refresh_token: str = field(repr=False)
    key: str
    email: str | None = None
    expiry: float | None = None


def _folder_roots() -> list[Path]:
    home = Path.home()
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support"]
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA")
        return [Path(appdata)] if appdata else []
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return [Path(xdg) if xdg else home / ".config"]


def default_paths() -> list[Path]:
    """Where the IDE keeps ``state.vscdb`` on this OS, both product folders."""
    rel = Path("User") / "globalStorage" / "state.vscdb"
    return [root / folder / rel for root in _folder_roots() for folder in FOLDERS]


def _b64decode(raw: str | bytes) -> bytes | None:
    data = raw.encode() if isinstance(raw, str) else raw
    data = data.strip()
    if not data:
        return None
    padded = data + b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        pass
    if not _URLSAFE.match(padded):  # some writers use the URL-safe alphabet
        return None
    try:
        return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        return None


def _plausible_token(s: str | None) -> bool:
    return bool(s) and len(s or "") >= _MIN_TOKEN_LEN and not any(c.isspace() for c in s or "")


def _email(s: str | None) -> str | None:
    return s if s and _EMAIL.match(s) else None


def token_info(buf: bytes) -> tuple[str, float | None] | None:
    """(refresh token, expiry) from OAuthTokenInfo bytes, or None."""
    fields = pw.try_parse(buf)
    if not fields:
        return None
    refresh = pw.text(pw.first_bytes(fields, _TOKEN_REFRESH))
    if not refresh or not _plausible_token(refresh):
        return None
    expiry: float | None = None
    ts = pw.first_bytes(fields, _TOKEN_EXPIRY)
    if ts is not None:
        ts_fields = pw.try_parse(ts) or []
        seconds = pw.first_int(ts_fields, 1)
        if seconds is not None:
            expiry = seconds + (pw.first_int(ts_fields, 2) or 0) / 1e9
    return refresh, expiry


def _topic_payloads(value: str | bytes, sentinel: str) -> list[bytes]:
    """What the Topic entry keyed ``sentinel`` may hold, most likely first:
    the Row's base64 string decoded; then (early writers) DataEntry field 2
    itself, base64-decoded or raw."""
    outer = _b64decode(value)
    if outer is None:
        return []
    for entry in pw.all_bytes(pw.try_parse(outer) or [], 1):
        entry_fields = pw.try_parse(entry)
        if not entry_fields or pw.text(pw.first_bytes(entry_fields, 1)) != sentinel:
            continue
        row = pw.first_bytes(entry_fields, 2)
        if row is None:
            continue
        out: list[bytes] = []
        inner = pw.text(pw.first_bytes(pw.try_parse(row) or [], 1))
        if inner and (decoded := _b64decode(inner)) is not None:
            out.append(decoded)
        if pw.text(row) and (decoded := _b64decode(row)) is not None:
            out.append(decoded)
        out.append(row)
        return out
    return []


def unified_token(value: str | bytes) -> tuple[str, float | None] | None:
    for payload in _topic_payloads(value, UNIFIED_SENTINEL):
        got = token_info(payload)
        if got:
            return got
    return None


def unified_email(value: str | bytes) -> str | None:
    for payload in _topic_payloads(value, USER_STATUS_SENTINEL):
        fields = pw.try_parse(payload) or []
        for num in _USER_STATUS_EMAIL_FIELDS:
            found = _email(pw.text(pw.first_bytes(fields, num)))
            if found:
                return found
    return None


def _strings(buf: bytes, depth: int = 0) -> list[str]:
    """Every text field, nested messages included (the last-resort walk)."""
    out: list[str] = []
    for f in pw.try_parse(buf) or []:
        if not isinstance(f.value, bytes):
            continue
        s = pw.text(f.value)
        if s:
            out.append(s)
        if depth < _MAX_DEPTH:
            out.extend(_strings(f.value, depth + 1))
    return out


def legacy_token(value: str | bytes) -> tuple[str, float | None] | None:
    data = _b64decode(value)
    if data is None:
        return None
    fields = pw.try_parse(data)
    if fields is None:
        return None
    inner = pw.first_bytes(fields, _LEGACY_TOKEN_FIELD)
    got = token_info(inner) if inner is not None else None
    if got:
        return got
    # Not where MGR's writer puts it: take the one string shaped like a
    # Google refresh token, wherever it is nested.
    for s in _strings(data):
        if s.startswith("1//") and _plausible_token(s):
            return s, None
    return None


def legacy_email(value: str | bytes) -> str | None:
    data = _b64decode(value)
    fields = pw.try_parse(data) if data is not None else None
    if not fields:
        return None
    # Only where the writer puts it: a wrong email shown before the import
    # would mislead more than none (the daemon then asks Google).
    return _email(pw.text(pw.first_bytes(fields, _LEGACY_EMAIL_FIELD)))


def refresh_token_from_value(value: str | bytes) -> str | None:
    """The refresh token in a value of either key, or None."""
    got = unified_token(value) or legacy_token(value)
    return got[0] if got else None


def read_vscdb(path: Path) -> list[IdeLogin]:
    """The logins in one state database (unified key first). Raises
    BadRequest when the file is not such a database, or holds neither key,
    or holds one in an unknown format."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            rows = dict(
                con.execute(
                    "SELECT key, value FROM ItemTable WHERE key IN (?, ?, ?)",
                    (UNIFIED_KEY, LEGACY_KEY, USER_STATUS_KEY),
                ).fetchall()
            )
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise BadRequest(f"{path} is not a readable Antigravity state database ({exc})") from None
    if not any(k in rows for k in KEYS):
        raise BadRequest(
            f"{path} has no login ({UNIFIED_KEY} or {LEGACY_KEY}): sign in to the Antigravity IDE "
            "first, or add the account with `agctl accounts add`"
        )
    logins: list[IdeLogin] = []
    unknown: list[str] = []
    if UNIFIED_KEY in rows:
        got = unified_token(rows[UNIFIED_KEY])
        if got:
            email = unified_email(rows[USER_STATUS_KEY]) if USER_STATUS_KEY in rows else None
            logins.append(IdeLogin(got[0], UNIFIED_KEY, email, got[1]))
        else:
            unknown.append(UNIFIED_KEY)
    if LEGACY_KEY in rows:
        got = legacy_token(rows[LEGACY_KEY])
        if got:
            if not any(x.refresh_token == got[0] for x in logins):
                logins.append(IdeLogin(got[0], LEGACY_KEY, legacy_email(rows[LEGACY_KEY]), got[1]))
        else:
            unknown.append(LEGACY_KEY)
    if not logins:
        raise BadRequest(
            f"{path}: the IDE's login state has an unknown format (no refresh token found "
            f"under {' or '.join(unknown)})"
        )
    return logins


def read_refresh_token(path: str | None) -> tuple[str, Path]:
    """The first login of the first state database found (``path`` or the defaults)."""
    tried = [Path(path).expanduser()] if path else default_paths()
    for p in tried:
        if not p.exists():
            continue
        return read_vscdb(p)[0].refresh_token, p
    names = ", ".join(str(p) for p in tried) or "(no default path on this platform)"
    raise NotFound(
        f"no Antigravity IDE state found; tried {names}. Pass the path: "
        "`agctl accounts import --from file PATH`"
    )
