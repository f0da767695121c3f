"""The client identity Google sees: User-Agent forms, the version's precedence,
the updater manifest (UPSTREAM.md §2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.upstream import identity as ident
from daemon.upstream.identity import Identity

HUB_YAML = b"""version: 2.15.3
files:
  - url: Antigravity-arm64-mac.zip
    sha512: abc
path: Antigravity-arm64-mac.zip
releaseDate: '2026-11-30T10:00:00.000Z'
"""


def test_user_agent_forms() -> None:
    assert ident.user_agent("hub", "2.14.0") == "antigravity/hub/2.14.0 darwin/arm64"
    cli = ident.user_agent("cli", "1.2.6")
    assert cli.startswith("antigravity/cli/1.2.6 ")
    os_name, arch = cli.rsplit(" ", 1)[1].split("/")
    assert os_name in ("linux", "darwin", "windows") and arch in ("amd64", "arm64")
    assert ident.onboard_user_agent("hub", "2.14.0").endswith(" google-api-nodejs-client/10.3.0")


def test_default_versions_pass_the_model_gate() -> None:
    # §2.2: newer models resolve only for clients reporting >= 2.9.0.
    assert ident.version_key(ident.DEFAULT_VERSIONS["hub"]) >= (2, 9, 0)


@pytest.mark.parametrize(
    ("body", "version"),
    [
        (HUB_YAML, "2.15.3"),
        (b'{"version":"1.3.0","url":"https://x/cli.tar.gz","sha512":"ab"}', "1.3.0"),
        (b"version: '2.16.0'\n", "2.16.0"),
        (b"version: 2.16\n", None),  # not X.Y.Z
        (b"<html>oops</html>", None),
        (b'{"version": 7}', None),
        (b"", None),
        (b"\xff\xfe garbage", None),
    ],
)
def test_parse_manifest(body: bytes, version: str | None) -> None:
    assert ident.parse_manifest(body) == version


def test_precedence_config_then_newer_manifest_then_default(tmp_path: Path) -> None:
    cache = tmp_path / "client_version.json"
    idn = Identity(cache)
    assert idn.version == ident.DEFAULT_VERSIONS["hub"]
    assert idn.source == "built-in default"
    idn.remember("2.0.0", "test")  # older than the default: ignored
    assert idn.version == ident.DEFAULT_VERSIONS["hub"]
    idn.remember("9.1.2", "test")
    assert idn.version == "9.1.2" and idn.source.startswith("updater manifest")
    # Survives a restart through the cache file.
    assert Identity(cache).version == "9.1.2"
    idn.configure(family="hub", version="3.0.1")
    assert idn.version == "3.0.1" and idn.user_agent == "antigravity/hub/3.0.1 darwin/arm64"
    # A manifest of the other family does not apply.
    idn.configure(family="cli", version="")
    assert idn.version == ident.DEFAULT_VERSIONS["cli"]
    idn.configure(family="hub", version="", user_agent_override="my-agent/1.0")
    assert idn.user_agent == "my-agent/1.0"


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "client_version.json"
    cache.write_bytes(b"{not json")
    assert Identity(cache).version == ident.DEFAULT_VERSIONS["hub"]


def test_rejection_is_recorded_and_cleared() -> None:
    idn = Identity()
    idn.note_rejection("This version of Antigravity is no longer supported.")
    pub = idn.public()
    assert pub["rejected"] and "upstream.client_version" in str(pub["rejected"])
    idn.configure(family="hub", version="2.20.0")  # the user's fix clears it
    assert idn.public()["rejected"] is None


async def test_check_manifest_success_failure_and_timeout() -> None:
    idn = Identity()
    seen: list[dict[str, str]] = []

    async def ok(url: str, headers: dict[str, str], limit: int, timeout: float) -> tuple[int, bytes]:
        seen.append(headers)
        return 200, HUB_YAML[:limit]

    assert await idn.check_manifest(ok, "http://updater.invalid/latest-arm64-mac.yml") == "2.15.3"
    assert seen[0]["user-agent"] == "electron-builder"
    assert idn.version == "2.15.3"

    async def broken(url: str, headers: dict[str, str], limit: int, timeout: float) -> tuple[int, bytes]:
        raise OSError("unreachable")

    async def not_found(url: str, headers: dict[str, str], limit: int, timeout: float) -> tuple[int, bytes]:
        return 404, b"version: 9.9.9\n"

    assert await idn.check_manifest(broken, "http://x.invalid/") is None
    assert await idn.check_manifest(not_found, "http://x.invalid/") is None
    assert idn.version == "2.15.3"  # a failure keeps what was known

    async def slow(url: str, headers: dict[str, str], limit: int, timeout: float) -> tuple[int, bytes]:
        await asyncio.sleep(3600)
        return 200, b""

    old = ident.FETCH_TIMEOUT
    ident.FETCH_TIMEOUT = 0.05
    try:
        assert await idn.check_manifest(slow, "http://x.invalid/") is None
    finally:
        ident.FETCH_TIMEOUT = old
