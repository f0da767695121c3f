"""Who the daemon says it is to Google: the client version and User-Agent.

Facts (UPSTREAM.md §2):

- Google refuses old builds: an inference call answers 503 "This version of
  Antigravity is no longer supported…" (§2.2.2), and resolves the newer model
  ids only for a client reporting at least 2.9.0 (404 otherwise, §2.2.1).
- Two User-Agent families are in use in late 2026 (§2.1): the desktop app
  ("hub") sends ``antigravity/hub/<X.Y.Z> darwin/arm64`` (the platform is a
  constant there, whatever the real OS), the ``agy`` CLI sends
  ``antigravity/cli/<X.Y.Z> <os>/<arch>``. Peers moved between the two within
  months (§2.3 DISAGREE), so the family is a config key (``upstream.client_family``).
- The current version is published by the updaters (§2.3): the hub's
  electron-builder manifest (YAML, a ``version: X.Y.Z`` line) and the agy
  manifests (JSON, ``{"version": "X.Y.Z", ...}``). Peers refresh it every few
  hours with a short timeout.

So the version is a run-time value with this precedence: ``upstream.client_version``
(the user's word) > the version last read from the updater manifest, when it
is newer than the built-in default > the built-in default. The manifest is
read in the background (``VersionWatcher``) and never blocks start-up; its
last answer is cached in the data dir so a restart without network keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from daemon.fsutil import atomic_write

log = logging.getLogger(__name__)

# The newest versions seen in the evidence (UPSTREAM.md §2.3): Antigravity
# 2.14.0 (2026-09-16) and agy 1.2.6 (2026-09-18). Both are above the 2.9.0
# model gate; the updater manifest replaces them when it knows a newer one.
DEFAULT_VERSIONS: dict[str, str] = {"hub": "2.14.0", "cli": "1.2.6"}
# The electron-builder manifest of the hub and the agy manifest for this
# platform (§2.3); ``upstream.version_url`` overrides, "" turns the check off.
HUB_MANIFEST_URL = (
    "https://antigravity-hub-auto-updater-974169037036.us-central1.run.app/manifest/latest-arm64-mac.yml"
)
CLI_MANIFEST_URL = (
    "https://antigravity-cli-auto-updater-974169037036.us-central1.run.app/manifests/{plat}.json"
)
# CPA's figures (§2.3): refresh every 3 h, 10 s timeout, read at most 4 KiB.
REFRESH_INTERVAL = 3 * 3600.0
RETRY_INTERVAL = 15 * 60.0
FETCH_TIMEOUT = 10.0
MANIFEST_MAX_BYTES = 4096

_VERSION_RE = re.compile(r"^\d{1,4}\.\d{1,4}\.\d{1,6}$")
_YAML_VERSION_RE = re.compile(r"^version:\s*['\"]?(\d{1,4}\.\d{1,4}\.\d{1,6})['\"]?\s*$", re.MULTILINE)

# What ``Fetch`` must do: GET the URL, return (status, at most ``limit`` bytes of body).
Fetch = Callable[[str, dict[str, str], int, float], Awaitable[tuple[int, bytes]]]


def valid_version(text: str) -> bool:
    return bool(_VERSION_RE.match(text))


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")) if valid_version(text) else (0,)


def _os_arch() -> tuple[str, str]:
    """agy's own spelling (§2.1): darwin/linux/windows, arm64/amd64."""
    system = platform.system().lower()
    os_name = {"darwin": "darwin", "windows": "windows"}.get(system, "linux")
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "amd64"
    return os_name, arch


def user_agent(family: str, version: str) -> str:
    """The User-Agent of a family (§2.1)."""
    if family == "cli":
        os_name, arch = _os_arch()
        return f"antigravity/cli/{version} {os_name}/{arch}"
    return f"antigravity/hub/{version} darwin/arm64"


def onboard_user_agent(family: str, version: str) -> str:
    """``onboardUser`` goes out with the Node API client's long form (§3.4)."""
    return f"{user_agent(family, version)} google-api-nodejs-client/10.3.0"


def manifest_url(family: str) -> str:
    if family == "cli":
        os_name, arch = _os_arch()
        return CLI_MANIFEST_URL.format(plat=f"{os_name}_{arch}")
    return HUB_MANIFEST_URL


def parse_manifest(body: bytes) -> str | None:
    """The version in an updater manifest: electron-builder YAML (``version:``
    line) or agy's JSON (``{"version": ...}``); None when it has none."""
    text = body[:MANIFEST_MAX_BYTES].decode("utf-8", "replace")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = msgspec.json.decode(stripped.encode())
        except msgspec.DecodeError:
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) and valid_version(version) else None
    m = _YAML_VERSION_RE.search(text)
    return m.group(1) if m else None


class VersionCache(msgspec.Struct, kw_only=True):
    family: str
    version: str
    fetched_at: float
    source: str = ""


class Rejection(msgspec.Struct, kw_only=True):
    """Google refused the client identity (§2.2); shown by `agctl status`."""

    at: float
    user_agent: str
    message: str


class Identity:
    """The one owner of the client identity: the effective version and
    User-Agent, the manifest's last answer, and the last rejection."""

    def __init__(self, cache_file: Path | None = None) -> None:
        self.cache_file = cache_file
        self.configured = ""  # upstream.client_version
        self.family = "hub"
        self.override_ua = ""  # upstream.user_agent (expert override)
        self.manifest: VersionCache | None = self._load_cache()
        self.rejection: Rejection | None = None

    def configure(self, *, family: str, version: str, user_agent_override: str = "") -> None:
        if family != self.family:
            self.rejection = None
        self.family = family
        if version != self.configured:
            self.rejection = None
        self.configured = version
        self.override_ua = user_agent_override

    # -------------------------------------------------------------- version

    @property
    def version(self) -> str:
        if self.configured:
            return self.configured
        default = DEFAULT_VERSIONS.get(self.family, DEFAULT_VERSIONS["hub"])
        m = self.manifest
        if m is not None and m.family == self.family and version_key(m.version) > version_key(default):
            return m.version
        return default

    @property
    def source(self) -> str:
        if self.configured:
            return "config (upstream.client_version)"
        m = self.manifest
        if m is not None and m.family == self.family and self.version == m.version:
            return f"updater manifest ({time.strftime('%Y-%m-%d %H:%M', time.localtime(m.fetched_at))})"
        return "built-in default"

    @property
    def user_agent(self) -> str:
        return self.override_ua or user_agent(self.family, self.version)

    @property
    def onboard_user_agent(self) -> str:
        return self.override_ua or onboard_user_agent(self.family, self.version)

    # -------------------------------------------------------------- rejection

    def note_rejection(self, message: str) -> None:
        """A version refusal is the client's fault, never an account's (§2.2)."""
        first = self.rejection is None
        self.rejection = Rejection(at=time.time(), user_agent=self.user_agent, message=message[:300])
        if first:
            log.warning(
                "Google refused this client version (User-Agent %r): %s -- set the current Antigravity "
                "version with `agctl config set upstream.client_version X.Y.Z` "
                "(or upstream.client_family hub|cli)",
                self.user_agent,
                message[:200],
            )

    def note_accepted(self) -> None:
        self.rejection = None

    def public(self) -> dict[str, object]:
        out: dict[str, object] = {
            "family": self.family,
            "version": self.version,
            "source": self.source,
            "user_agent": self.user_agent,
            "rejected": None,
        }
        if self.rejection is not None:
            out["rejected"] = {
                "at": self.rejection.at,
                "user_agent": self.rejection.user_agent,
                "message": self.rejection.message,
                "fix": "agctl config set upstream.client_version X.Y.Z (the current Antigravity version)",
            }
        return out

    # -------------------------------------------------------------- manifest

    def _load_cache(self) -> VersionCache | None:
        if self.cache_file is None:
            return None
        try:
            cache = msgspec.json.decode(self.cache_file.read_bytes(), type=VersionCache)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return cache if valid_version(cache.version) else None

    def remember(self, version: str, source: str) -> None:
        self.manifest = VersionCache(
            family=self.family, version=version, fetched_at=time.time(), source=source
        )
        if self.cache_file is not None:
            try:
                atomic_write(self.cache_file, msgspec.json.encode(self.manifest))
            except OSError as exc:
                log.info("could not cache the client version: %s", exc)

    async def check_manifest(self, fetch: Fetch, url: str) -> str | None:
        """Read the updater manifest once; returns the version it names."""
        headers = {"user-agent": "electron-builder", "cache-control": "no-cache"}
        try:
            status, body = await asyncio.wait_for(
                fetch(url, headers, MANIFEST_MAX_BYTES, FETCH_TIMEOUT), FETCH_TIMEOUT + 1
            )
        except (TimeoutError, OSError) as exc:
            log.info(
                "client version check: %s unreachable (%s); keeping %s", url, type(exc).__name__, self.version
            )
            return None
        except Exception as exc:  # an upstream error of any kind: keep what we have
            log.info("client version check: %s failed (%s); keeping %s", url, exc, self.version)
            return None
        version = parse_manifest(body) if status == 200 else None
        if version is None:
            log.info(
                "client version check: no version in %s (HTTP %s); keeping %s", url, status, self.version
            )
            return None
        if self.manifest is None or self.manifest.version != version or self.manifest.family != self.family:
            log.info("client version: the updater manifest says %s", version)
        self.remember(version, url)
        return version


class VersionWatcher:
    """Re-reads the manifest in the background: at start (without delaying
    it), then every ``REFRESH_INTERVAL`` (``RETRY_INTERVAL`` after a failure)."""

    def __init__(self, identity: Identity, fetch: Fetch, url: Callable[[], str]) -> None:
        self.identity = identity
        self.fetch = fetch
        self.url = url
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="client-version")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            url = self.url()
            ok = None
            if url:
                ok = await self.identity.check_manifest(self.fetch, url)
            await asyncio.sleep(REFRESH_INTERVAL if ok or not url else RETRY_INTERVAL)
