"""Find the Antigravity logins already on this machine (``agctl accounts import``).

Sources, in the order UPSTREAM.md §3.2 derives from the evidence:

1. the OS keyring entry of the Antigravity >= 2.0 app and ``agy`` (service
   ``gemini``, user ``antigravity``; raw JSON, or ``go-keyring-base64:`` +
   base64 JSON on macOS), read through the ``keyring`` library (an optional
   extra, imported only here) - never by running a program;
2. agy's token file ``~/.gemini/antigravity-cli/antigravity-oauth-token``;
3. the app's ``~/.gemini/jetski-standalone-oauth-token`` (written once at
   sign-in; its access token is stale, its refresh token is what counts);
4. the IDE's ``state.vscdb``, unified key then legacy key (ide_import).

Only refresh tokens are taken; the daemon refreshes each one itself. A
FoundLogin never shows its token in repr, and every message here names
places, never values.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from daemon.accounts import ide_import

Source = Literal["keyring", "agy", "app", "ide", "file"]
SOURCES: tuple[Source, ...] = ("keyring", "agy", "app", "ide")

KEYRING_SERVICE = "gemini"
KEYRING_USER = "antigravity"
GO_KEYRING_PREFIX = "go-keyring-base64:"
SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_TOKEN_FILE = 1 << 20

# RFC 3339 with any number of fraction digits (agy writes nanoseconds,
# §3.2b); Python's fromisoformat takes at most six.
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


@dataclass(frozen=True)
class FoundLogin:
    """One login found on this machine. ``refresh_token`` stays out of repr."""

    source: Source
    location: str
    refresh_token: str = field(repr=False)
    email: str | None = None
    expiry: float | None = None
    path: str | None = None  # the file it came from (None: the keyring)

    def public(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "location": self.location,
            "path": self.path,
            "email": self.email,
            "expiry": self.expiry,
        }


@dataclass
class Search:
    """What a search found, and a line for every place it looked."""

    found: list[FoundLogin] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    # Places that exist but could not be read (locked, unknown format): worth
    # a word even when a login was found elsewhere.
    problems: list[str] = field(default_factory=list)

    def problem(self, line: str) -> None:
        self.tried.append(line)
        self.problems.append(line)

    def add(self, login: FoundLogin) -> None:
        # The keyring and a token file often hold the same login: list it once.
        if not any(x.refresh_token == login.refresh_token for x in self.found):
            self.found.append(login)
        else:
            self.tried.append(f"{login.location}: the same login as one found before")


def parse_expiry(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    m = _RFC3339.match(value.strip())
    if not m:
        return None
    whole, frac, zone = m.groups()
    zone = "+00:00" if zone.upper() == "Z" else zone
    try:
        stamp = datetime.fromisoformat(whole + zone).timestamp()
    except ValueError:
        return None
    return stamp + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _jwt_email(token: Any) -> str | None:
    """The email claim of an id_token, for display only (not verified: the
    daemon learns the real email from Google after refreshing)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) and "@" in email else None


def parse_token_blob(raw: bytes | str) -> tuple[str, str | None, float | None] | None:
    """(refresh token, email, expiry) from the JSON agy and the app store, raw
    or behind ``go-keyring-base64:``; also ``{"refresh_token": …}`` at the top
    level and the V1 backup's ``{"token": {"refresh_token": …}}``. None when
    the blob holds no refresh token."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip().lstrip("\ufeff")
    if text.startswith(GO_KEYRING_PREFIX):
        try:
            text = base64.b64decode(text[len(GO_KEYRING_PREFIX) :].strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    nested = data.get("token")
    token: dict[str, Any] = nested if isinstance(nested, dict) else data
    refresh = token.get("refresh_token")
    if not isinstance(refresh, str) or not refresh.strip():
        # The V1 backup keeps the legacy IDE value under its state key (§3.2a).
        legacy = data.get(ide_import.LEGACY_KEY)
        got = ide_import.legacy_token(legacy) if isinstance(legacy, str) else None
        return (got[0], ide_import.legacy_email(legacy or ""), got[1]) if got else None
    email = data.get("email") if isinstance(data.get("email"), str) else None
    email = email or _jwt_email(data.get("id_token")) or _jwt_email(token.get("id_token"))
    return refresh.strip(), email, parse_expiry(token.get("expiry"))


# ------------------------------------------------------------------ places


def gemini_dir() -> Path:
    return Path.home() / ".gemini"


def agy_token_file() -> Path:
    return gemini_dir() / "antigravity-cli" / "antigravity-oauth-token"


def app_token_file() -> Path:
    return gemini_dir() / "jetski-standalone-oauth-token"


KEYRING_PLACE = f"OS keyring (service {KEYRING_SERVICE!r}, user {KEYRING_USER!r})"

KeyringGet = Callable[[str, str], "str | None"]


# Windows: go-keyring keeps the entry as a generic credential named
# "service:user" whose blob is the UTF-8 text (UPSTREAM.md §3.2b). keyring's
# own Windows backend looks for "service" and "user@service" and reads the
# blob as UTF-16, so it would never find it: the credential is read here,
# through win32ctypes (the package keyring uses on Windows).
_ERROR_NOT_FOUND = 1168


def windows_credential(service: str, user: str) -> str | None:
    from win32ctypes.pywin32 import pywintypes, win32cred  # type: ignore[import-not-found]

    try:
        cred = win32cred.CredRead(f"{service}:{user}", win32cred.CRED_TYPE_GENERIC)
    except pywintypes.error as exc:
        if getattr(exc, "winerror", None) == _ERROR_NOT_FOUND:
            return None
        raise
    blob = cred.get("CredentialBlob") or b""
    if isinstance(blob, str):  # some versions hand the blob back as text
        blob = blob.encode("latin-1")
    return bytes(blob).decode("utf-8", "replace")


def _keyring_get() -> KeyringGet | str:
    """How the OS keyring is read (keyring.get_password; on Windows the
    credential go-keyring writes), or why it cannot be."""
    if sys.platform == "win32":
        try:
            import win32ctypes.pywin32  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            return "the `keyring` package is not installed (pip install 'antigravity[keyring]')"
        return windows_credential
    try:
        import keyring
    except ImportError:
        return "the `keyring` package is not installed (pip install 'antigravity[keyring]')"
    get: KeyringGet = keyring.get_password
    return get


def read_keyring(search: Search, get: KeyringGet | None = None) -> None:
    getter = get or _keyring_get()
    if isinstance(getter, str):
        search.tried.append(f"{KEYRING_PLACE}: skipped, {getter}")
        return
    try:
        value = getter(KEYRING_SERVICE, KEYRING_USER)
    except Exception as exc:  # noqa: BLE001 - every backend has its own errors
        # A locked keyring is not forced open: say so and move on (issue 15).
        name = type(exc).__name__
        if name == "NoKeyringError":
            search.tried.append(f"{KEYRING_PLACE}: no keyring service on this system")
        elif "lock" in (name + str(exc)).lower():
            search.problem(
                f"{KEYRING_PLACE}: locked ({name}); unlock it (the desktop session's keyring) and try again"
            )
        else:
            search.problem(f"{KEYRING_PLACE}: not readable ({name})")
        return
    if value is None:
        search.tried.append(f"{KEYRING_PLACE}: no entry")
        return
    got = parse_token_blob(value)
    if got is None:
        search.problem(f"{KEYRING_PLACE}: an entry in an unknown format (no refresh token)")
        return
    search.tried.append(f"{KEYRING_PLACE}: found a login")
    search.add(FoundLogin("keyring", KEYRING_PLACE, got[0], got[1], got[2]))


def read_token_file(search: Search, path: Path, source: Source) -> None:
    try:
        if path.stat().st_size > _MAX_TOKEN_FILE:
            search.tried.append(f"{path}: too large to be a token file")
            return
        raw = path.read_bytes()
    except FileNotFoundError:
        search.tried.append(f"{path}: not there")
        return
    except OSError as exc:
        search.problem(f"{path}: not readable ({exc.strerror or type(exc).__name__})")
        return
    got = parse_token_blob(raw)
    if got is None:
        search.problem(f"{path}: an unknown format (no refresh token)")
        return
    search.tried.append(f"{path}: found a login")
    search.add(FoundLogin(source, str(path), got[0], got[1], got[2], str(path)))


def read_state_db(search: Search, path: Path, source: Source = "ide") -> None:
    from daemon.errors import GatewayError

    if not path.exists():
        search.tried.append(f"{path}: not there")
        return
    try:
        logins = ide_import.read_vscdb(path)
    except GatewayError as exc:
        search.problem(exc.message)
        return
    for login in logins:
        search.tried.append(f"{path} ({login.key}): found a login")
        search.add(
            FoundLogin(
                source, f"{path} ({login.key})", login.refresh_token, login.email, login.expiry, str(path)
            )
        )


def read_any_file(search: Search, path: Path) -> None:
    """``--from file PATH``: a state database or a token / backup JSON file."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        search.tried.append(f"{path}: not there")
        return
    except OSError as exc:
        search.problem(f"{path}: not readable ({exc.strerror or type(exc).__name__})")
        return
    if head == SQLITE_MAGIC:
        read_state_db(search, path, "file")
    else:
        read_token_file(search, path, "file")


def discover(
    sources: Iterable[Source] = SOURCES,
    *,
    file: Path | None = None,
    keyring_get: KeyringGet | None = None,
    state_paths: list[Path] | None = None,
) -> Search:
    """Look in ``sources`` (in §3.2 order) or only in ``file``."""
    search = Search()
    if file is not None:
        if tuple(sources) == ("ide",):  # the IDE's database, whatever its first bytes say
            read_state_db(search, file)
        else:
            read_any_file(search, file)
        return search
    wanted = set(sources)
    if wanted & {"keyring", "agy", "app"}:
        # The 2.x app and agy share one keyring entry (§3.2b).
        read_keyring(search, keyring_get)
    if "agy" in wanted:
        read_token_file(search, agy_token_file(), "agy")
    if "app" in wanted:
        read_token_file(search, app_token_file(), "app")
    if "ide" in wanted:
        for p in state_paths if state_paths is not None else ide_import.default_paths():
            read_state_db(search, p)
    return search


def sources_for(choice: str | None) -> tuple[Source, ...]:
    """``--from`` to the sources searched: ide, app, agy, or all of them."""
    if choice in (None, "", "auto"):
        return SOURCES
    if choice == "ide":
        return ("ide",)
    if choice == "app":
        return ("keyring", "app")
    if choice == "agy":
        return ("keyring", "agy")
    raise ValueError(f"unknown source {choice!r}: ide, app, agy or file PATH")


def home_relative(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path
