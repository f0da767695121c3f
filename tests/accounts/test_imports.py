"""`agctl accounts import` and `agctl oauth detect`.

Every source is built here the way UPSTREAM.md §3.2 describes it: the IDE's
state.vscdb in the unified (>= 1.16.5) and legacy layouts, protobuf encoded
by hand; the keyring entry (service ``gemini``, user ``antigravity``) behind
a fake keyring backend; agy's token files as plain JSON and
``go-keyring-base64:``. The end-to-end tests run the real daemon and agctl
against the fake Google. ``oauth detect`` scans a synthetic app bundle with
a made-up secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keyring
import pytest

from ctl import oauth_detect
from daemon.accounts import ide_import, local_logins, oauth
from daemon.accounts import protowire as pw
from daemon.config import ANTIGRAVITY_CLIENT_ID, Config
from daemon.errors import BadRequest, ConfigError
from tests.conftest import ROOT, Daemon, _bin, base_config, free_port
from tests.fakes.google import FakeGoogle
from tests.fakes.keyring_backend import FileKeyring

# ------------------------------------------------------------------ encoders (tests only)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_varint(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def f_bytes(num: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token_info(refresh: str, *, expiry: int = 1_767_225_600, nanos: int = 500_000_000) -> bytes:
    """OAuthTokenInfo: 1 access, 2 type, 3 refresh, 4 Timestamp, 6 is_gcp_tos."""
    return (
        f_bytes(1, "ya29.a0" + secrets.token_urlsafe(40))
        + f_bytes(2, "Bearer")
        + f_bytes(3, refresh)
        + f_bytes(4, f_varint(1, expiry) + f_varint(2, nanos))
        + f_varint(6, 1)
    )


def topic(sentinel: str, payload: bytes, *, style: str = "row") -> str:
    """The unified-state value: base64(Topic{1: DataEntry{1 key, 2 Row{1: base64(payload)}}}).
    ``style`` "raw" / "b64": an early third-party writer's DataEntry{2: payload (raw / base64)}."""
    if style == "row":
        row = f_bytes(1, b64(payload))
    elif style == "b64":
        row = b64(payload).encode()
    else:
        row = payload
    other = f_bytes(1, f_bytes(1, "someOtherKey") + f_bytes(2, f_bytes(1, b64(b"x"))))
    return b64(other + f_bytes(1, f_bytes(1, sentinel) + f_bytes(2, row)))


def legacy_value(refresh: str, email: str | None = None) -> str:
    msg = f_bytes(1, "user-" + secrets.token_hex(4))
    if email:
        msg += f_bytes(2, email)
    return b64(msg + f_varint(3, 1) + f_bytes(6, token_info(refresh)) + f_bytes(7, "x"))


def write_db(path: Path, rows: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE ItemTable (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
        con.executemany(
            "INSERT INTO ItemTable VALUES (?, ?)",
            [("workbench.panel.position", "bottom"), ("antigravityOnboarding", "true"), *rows.items()],
        )
        con.commit()
    finally:
        con.close()
    return path


def unified_rows(refresh: str, email: str | None = None, style: str = "row") -> dict[str, str]:
    rows = {ide_import.UNIFIED_KEY: topic(ide_import.UNIFIED_SENTINEL, token_info(refresh), style=style)}
    if email:
        status = f_bytes(1, "Someone") + f_bytes(3, email) + f_varint(4, 2)
        rows[ide_import.USER_STATUS_KEY] = topic(ide_import.USER_STATUS_SENTINEL, status)
    return rows


def rt() -> str:
    return "1//0g" + secrets.token_urlsafe(72).replace("-", "x").replace("_", "y")


def token_json(refresh: str, *, expiry: str = "2026-09-18T10:11:12.123456789Z", **extra: Any) -> str:
    return json.dumps(
        {
            "token": {
                "access_token": "ya29.stale",
                "token_type": "Bearer",
                "refresh_token": refresh,
                "expiry": expiry,
            },
            "auth_method": "consumer",
            **extra,
        }
    )


def go_keyring(text: str) -> str:
    return local_logins.GO_KEYRING_PREFIX + b64(text.encode())


def fake_jwt(claims: dict[str, Any]) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{part}.c2ln"


# ------------------------------------------------------------------ unit: the wire reader


def test_wire_reader_fields_and_errors() -> None:
    msg = f_varint(1, 300) + f_bytes(2, "hi") + varint(3 << 3 | 1) + (7).to_bytes(8, "little")
    msg += varint(4 << 3 | 5) + (9).to_bytes(4, "little")
    fields = pw.parse(msg)
    assert [(f.number, f.wire, f.value) for f in fields] == [
        (1, 0, 300),
        (2, 2, b"hi"),
        (3, 1, 7),
        (4, 5, 9),
    ]
    for bad in (b"\x0a\x05abc", b"\xff" * 11, b"\x0b\x0c", b"\x08", b"\x00\x01", b"\x19\x01\x02"):
        with pytest.raises(pw.WireError):
            pw.parse(bad)
        assert pw.try_parse(bad) is None


# ------------------------------------------------------------------ unit: state.vscdb


@pytest.mark.parametrize("style", ["row", "raw", "b64"])
def test_unified_key_layouts(tmp_path: Path, style: str) -> None:
    token = rt()
    db = write_db(tmp_path / "state.vscdb", unified_rows(token, "uni@example.com", style=style))
    [login] = ide_import.read_vscdb(db)
    assert login.refresh_token == token and login.key == ide_import.UNIFIED_KEY
    assert login.email == "uni@example.com"
    assert login.expiry == pytest.approx(1_767_225_600.5)
    assert token not in repr(login)


def test_unified_without_the_sentinel_entry_is_an_unknown_format(tmp_path: Path) -> None:
    value = topic("somethingElseSentinelKey", token_info(rt()))
    db = write_db(tmp_path / "state.vscdb", {ide_import.UNIFIED_KEY: value})
    with pytest.raises(BadRequest, match=f"unknown format.*{ide_import.UNIFIED_KEY}"):
        ide_import.read_vscdb(db)


def test_legacy_key_field_6_and_email_field_2(tmp_path: Path) -> None:
    token = rt()
    db = write_db(tmp_path / "state.vscdb", {ide_import.LEGACY_KEY: legacy_value(token, "old@example.com")})
    [login] = ide_import.read_vscdb(db)
    assert (login.refresh_token, login.key, login.email) == (token, ide_import.LEGACY_KEY, "old@example.com")


def test_both_keys_one_login_or_two(tmp_path: Path) -> None:
    token = rt()
    same = write_db(
        tmp_path / "same.vscdb", {**unified_rows(token), ide_import.LEGACY_KEY: legacy_value(token)}
    )
    assert [x.key for x in ide_import.read_vscdb(same)] == [ide_import.UNIFIED_KEY]
    other = rt()
    two = write_db(
        tmp_path / "two.vscdb", {**unified_rows(token), ide_import.LEGACY_KEY: legacy_value(other)}
    )
    assert [x.refresh_token for x in ide_import.read_vscdb(two)] == [token, other]


def test_refresh_token_from_value_reads_both_keys() -> None:
    token = rt()
    assert ide_import.refresh_token_from_value(unified_rows(token)[ide_import.UNIFIED_KEY]) == token
    assert ide_import.refresh_token_from_value(legacy_value(token)) == token


# ------------------------------------------------------------------ unit: token JSON


def test_parse_expiry_nanoseconds_and_offsets() -> None:
    want = datetime(2026, 9, 18, 10, 11, 12, tzinfo=UTC).timestamp()
    assert local_logins.parse_expiry("2026-09-18T10:11:12.123456789Z") == pytest.approx(want + 0.123456789)
    assert local_logins.parse_expiry("2026-09-18T18:11:12.5+08:00") == pytest.approx(want + 0.5)
    assert local_logins.parse_expiry("2026-09-18T10:11:12Z") == want
    for bad in ("yesterday", "2026-09-18 10:11:12", 12, None):
        assert local_logins.parse_expiry(bad) is None


def test_parse_token_blob_variants() -> None:
    token = rt()
    plain = token_json(token)
    assert local_logins.parse_token_blob(plain)[:2] == (token, None)  # type: ignore[index]
    wrapped = local_logins.parse_token_blob(go_keyring(plain))
    assert wrapped is not None and wrapped[0] == token and wrapped[2] is not None
    with_id = token_json(token, id_token=fake_jwt({"email": "jwt@example.com", "sub": "1"}))
    assert local_logins.parse_token_blob(with_id.encode())[1] == "jwt@example.com"  # type: ignore[index]
    assert local_logins.parse_token_blob(json.dumps({"refresh_token": token}))[0] == token  # type: ignore[index]
    backup = json.dumps({ide_import.LEGACY_KEY: legacy_value(token, "v1@example.com")})
    assert local_logins.parse_token_blob(backup)[:2] == (token, "v1@example.com")  # type: ignore[index]
    for bad in ("", "{}", "[1]", "not json", local_logins.GO_KEYRING_PREFIX + "%%%", '{"token": {}}'):
        assert local_logins.parse_token_blob(bad) is None


# ------------------------------------------------------------------ unit: discovery


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr("daemon.accounts.ide_import.sys.platform", "linux")
    return tmp_path


@pytest.fixture
def fake_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    store = tmp_path / "keyring.json"
    monkeypatch.setenv("AG_FAKE_KEYRING", str(store))
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    try:
        yield store
    finally:
        keyring.set_keyring(before)


def test_discover_order_keyring_agy_app_ide(home: Path, fake_keyring: Path) -> None:
    t_key, t_agy, t_app, t_ide = rt(), rt(), rt(), rt()
    keyring.set_password("gemini", "antigravity", go_keyring(token_json(t_key)))
    agy = local_logins.agy_token_file()
    agy.parent.mkdir(parents=True)
    agy.write_text(token_json(t_agy))
    local_logins.app_token_file().write_text(go_keyring(token_json(t_app)))
    write_db(
        home / ".config" / "Antigravity IDE" / "User" / "globalStorage" / "state.vscdb", unified_rows(t_ide)
    )
    search = local_logins.discover()
    assert [(x.source, x.refresh_token) for x in search.found] == [
        ("keyring", t_key),
        ("agy", t_agy),
        ("app", t_app),
        ("ide", t_ide),
    ]
    text = "\n".join(search.tried) + repr(search.found)
    assert not any(t in text for t in (t_key, t_agy, t_app, t_ide))
    assert str(home / ".config" / "Antigravity" / "User" / "globalStorage" / "state.vscdb") in text
    # --from picks the sources; the same login twice is listed once.
    agy.write_text(token_json(t_key))
    got = local_logins.discover(local_logins.sources_for("agy"))
    assert [x.source for x in got.found] == ["keyring"]
    assert any("same login" in line for line in got.tried)
    assert [x.source for x in local_logins.discover(local_logins.sources_for("ide")).found] == ["ide"]


def test_discover_keyring_locked_missing_or_odd(
    home: Path, fake_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AG_FAKE_KEYRING_LOCKED", "1")
    search = local_logins.discover(("keyring",))
    assert search.found == [] and "locked" in search.tried[0] and "'gemini'" in search.tried[0]
    monkeypatch.delenv("AG_FAKE_KEYRING_LOCKED")
    assert "no entry" in local_logins.discover(("keyring",)).tried[0]
    keyring.set_password("gemini", "antigravity", "go-keyring-base64:bm90IGpzb24=")
    assert "unknown format" in local_logins.discover(("keyring",)).tried[0]
    monkeypatch.setitem(__import__("sys").modules, "keyring", None)  # not installed
    assert "not installed" in local_logins.discover(("keyring",)).tried[0]


def test_require_secret_points_at_oauth_detect() -> None:
    with pytest.raises(ConfigError, match="agctl oauth detect"):
        oauth.require_secret(Config())


# ------------------------------------------------------------------ unit: oauth detect

FAKE_SECRET = "GOCSPX-" + "Fake0nlyForTests_abcdefghij"[:28].ljust(28, "x")


def bundle(root: Path, secret: str = FAKE_SECRET) -> Path:
    """A synthetic Electron app: the client in a minified main bundle."""
    js = root / "resources" / "app" / "out" / "main.js"
    js.parent.mkdir(parents=True, exist_ok=True)
    filler = "var a=1;" * 2000
    js.write_text(
        f'{filler}const oauth={{clientId:"{ANTIGRAVITY_CLIENT_ID}",clientSecret:"{secret}",'
        f'scopes:["openid"]}};{filler}'
    )
    (root / "resources" / "app" / "icon.png").write_bytes(b"\x89PNG" + ANTIGRAVITY_CLIENT_ID.encode())
    return js


def test_detect_in_a_bundle_and_in_a_binary(tmp_path: Path) -> None:
    js = bundle(tmp_path / "app")
    hits, looked = oauth_detect.detect([tmp_path / "app"])
    assert [(h.path, h.secret, h.near) for h in hits] == [(js, FAKE_SECRET, True)]
    assert FAKE_SECRET not in json.dumps([h.public() for h in hits]) + repr(hits)
    # A binary: the secret far from the id, and the only one in the file.
    binary = tmp_path / "agy"
    binary.write_bytes(
        b"\x7fELF" + os.urandom(64) + ANTIGRAVITY_CLIENT_ID.encode() + b"\x00" * 20000 + FAKE_SECRET.encode()
    )
    [hit], _ = oauth_detect.detect([binary])
    assert hit.secret == FAKE_SECRET and not hit.near
    # Two different secrets far away: no guess.
    binary.write_bytes(
        ANTIGRAVITY_CLIENT_ID.encode() + b"\x00" * 20000 + FAKE_SECRET.encode() + b"\x00GOCSPX-" + b"B" * 28
    )
    [hit], _ = oauth_detect.detect([binary])
    assert hit.secret == ""
    assert oauth_detect.detect([tmp_path / "nothing-here"]) == (
        [],
        [f"{tmp_path / 'nothing-here'}: not there"],
    )


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ag-imp-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(fake: FakeGoogle, world: Path) -> Iterator[Daemon]:
    """The user's HOME is a temp dir; agctl finds the fake keyring backend."""
    d = Daemon(
        world / "ag",
        env={
            "HOME": str(world / "user"),
            "PYTHON_KEYRING_BACKEND": "tests.fakes.keyring_backend.FileKeyring",
            "PYTHONPATH": str(ROOT),
            "AG_FAKE_KEYRING": str(world / "keyring.json"),
        },
    )
    d.env.pop("XDG_CONFIG_HOME", None)
    d.env.pop("AG_FAKE_KEYRING_LOCKED", None)
    d.write_config(base_config(fake, free_port(), proxy={"auto_start": False}))
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def user(daemon: Daemon, world: Path) -> Iterator[Path]:
    """A clean home (no keyring entry, no token files) for each test."""
    home = world / "user"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    (world / "keyring.json").unlink(missing_ok=True)
    yield home


def set_keyring(world: Path, value: str) -> None:
    (world / "keyring.json").write_text(json.dumps({"gemini:antigravity": value}))


def emails(d: Daemon) -> set[str]:
    return {a["email"] for a in d.ctl_json("accounts", "list")["accounts"]}


def test_import_unified_state_db(daemon: Daemon, fake: FakeGoogle, user: Path) -> None:
    acct = fake.add_account(email="uni-e2e@example.com", refresh_token=rt(), tier="ULTRA")
    db = write_db(
        user / ".config" / "Antigravity" / "User" / "globalStorage" / "state.vscdb",
        unified_rows(acct.refresh_token),
    )
    res = daemon.ctl("accounts", "import", "--from", "ide")
    assert res.returncode == 0, res.stderr
    # The email (unknown to the file) is shown before the import line.
    assert "uni-e2e@example.com" in res.stderr and f"imported from {db}" in res.stdout
    assert acct.refresh_token not in res.stdout + res.stderr
    assert "uni-e2e@example.com" in emails(daemon)


def test_import_auto_several_logins(daemon: Daemon, fake: FakeGoogle, user: Path, world: Path) -> None:
    k = fake.add_account(email="kr-e2e@example.com", refresh_token=rt())
    a = fake.add_account(email="agy-e2e@example.com", refresh_token=rt())
    stale = fake.add_account(email="app-e2e@example.com", refresh_token=rt())
    set_keyring(world, go_keyring(token_json(k.refresh_token)))
    agy = user / ".gemini" / "antigravity-cli" / "antigravity-oauth-token"
    agy.parent.mkdir(parents=True)
    agy.write_text(token_json(a.refresh_token, expiry="2026-08-20T16:44:43.782123456+08:00"))
    (user / ".gemini" / "jetski-standalone-oauth-token").write_text(token_json(stale.refresh_token))
    before = emails(daemon)
    # Not a terminal: several logins are listed, nothing is written, --all is suggested.
    res = daemon.ctl("accounts", "import")
    assert res.returncode == 2, res.stderr
    for e in ("kr-e2e@", "agy-e2e@", "app-e2e@"):
        assert e in res.stderr
    assert "--all" in res.stderr and emails(daemon) == before
    res = daemon.ctl("accounts", "import", "--all", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [x["source"] for x in out["imported"]] == ["keyring", "agy", "app"]
    assert {"kr-e2e@example.com", "agy-e2e@example.com", "app-e2e@example.com"} <= emails(daemon)
    blob = res.stdout + res.stderr
    assert not any(t.refresh_token in blob for t in (k, a, stale))


def test_import_locked_keyring_falls_through_to_files(
    daemon: Daemon, fake: FakeGoogle, user: Path, world: Path
) -> None:
    acct = fake.add_account(email="file-e2e@example.com", refresh_token=rt())
    set_keyring(world, token_json(acct.refresh_token))
    f = user / ".gemini" / "antigravity-cli" / "antigravity-oauth-token"
    f.parent.mkdir(parents=True)
    f.write_text(go_keyring(token_json(acct.refresh_token)))
    locked = {**daemon.env, "AG_FAKE_KEYRING_LOCKED": "1"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_bin("agctl"), "accounts", "import", "--from", "agy"],
            env=locked,
            capture_output=True,
            text=True,
            timeout=60,
        )

    res = run()
    assert res.returncode == 0, res.stderr
    assert "locked" in res.stderr and f"imported from {f}" in res.stdout
    f.unlink()
    res = run()
    assert res.returncode == 1
    assert "locked" in res.stderr and "'gemini'" in res.stderr and str(f) in res.stderr


def test_import_dead_and_live_login_takes_the_live_one(
    daemon: Daemon, fake: FakeGoogle, user: Path, world: Path
) -> None:
    acct = fake.add_account(email="live-e2e@example.com", refresh_token=rt())
    set_keyring(world, token_json(rt()))  # a token Google does not know
    (user / ".gemini").mkdir()
    (user / ".gemini" / "jetski-standalone-oauth-token").write_text(token_json(acct.refresh_token))
    res = daemon.ctl("accounts", "import")
    assert res.returncode == 0, res.stderr
    assert "cannot be used" in res.stderr and "live-e2e@example.com" in res.stdout


def test_import_nothing_found_names_every_place(daemon: Daemon, user: Path) -> None:
    res = daemon.ctl("accounts", "import")
    assert res.returncode == 1
    for place in (
        "OS keyring",
        str(user / ".gemini" / "antigravity-cli" / "antigravity-oauth-token"),
        str(user / ".gemini" / "jetski-standalone-oauth-token"),
        str(user / ".config" / "Antigravity IDE" / "User" / "globalStorage" / "state.vscdb"),
    ):
        assert place in res.stderr, res.stderr
    assert "agctl accounts add" in res.stderr


def test_import_all_with_one_dead_login(daemon: Daemon, fake: FakeGoogle, user: Path, world: Path) -> None:
    good = fake.add_account(email="alive-e2e@example.com", refresh_token=rt())
    dead = fake.add_account(email="dead-e2e@example.com", refresh_token=rt())
    fake.revoke("dead-e2e@example.com")
    try:
        set_keyring(world, token_json(dead.refresh_token))
        (user / ".gemini").mkdir()
        (user / ".gemini" / "jetski-standalone-oauth-token").write_text(token_json(good.refresh_token))
        res = daemon.ctl("accounts", "import", "--all")
        assert res.returncode == 1
        assert "invalid_grant" in res.stderr and "OS keyring" in res.stderr
        assert "alive-e2e@example.com" in res.stdout
        got = emails(daemon)
        assert "alive-e2e@example.com" in got and "dead-e2e@example.com" not in got
    finally:
        dead.revoked = False


def test_import_from_file_path(daemon: Daemon, fake: FakeGoogle, user: Path, tmp_path: Path) -> None:
    acct = fake.add_account(email="path-e2e@example.com", refresh_token=rt())
    f = tmp_path / "token.json"
    f.write_text(token_json(acct.refresh_token, email="path-e2e@example.com"))
    res = daemon.ctl("accounts", "import", "--from", "file", str(f))
    assert res.returncode == 0, res.stderr
    assert f"imported from {f}" in res.stdout
    res = daemon.ctl("accounts", "import", "--from", "file")
    assert res.returncode == 2 and "PATH" in res.stderr


def test_oauth_detect_saves_only_with_consent(make_daemon: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    bundle(home / ".local" / "share" / "antigravity")
    d = make_daemon(base_config(None, free_port(), proxy={"auto_start": False}), env={"HOME": str(home)})
    res = d.ctl("oauth", "detect")
    assert res.returncode == 0, res.stderr
    assert "main.js" in res.stdout and "not saved" in res.stdout
    assert FAKE_SECRET not in res.stdout + res.stderr
    assert d.admin("GET", "/config/oauth.client_secret")["value"] == ""
    res = d.ctl("oauth", "detect", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["saved"] is True and FAKE_SECRET not in res.stdout
    assert d.admin("GET", "/config/oauth.client_secret")["value"] == FAKE_SECRET
    res = d.ctl("oauth", "detect", "--path", str(tmp_path / "empty"))
    assert res.returncode == 1
    assert "agctl config set oauth.client_secret" in res.stderr and str(tmp_path / "empty") in res.stderr


def test_windows_credential_reads_what_go_keyring_writes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows the login is a generic credential "gemini:antigravity" with
    the JSON as UTF-8 bytes (UPSTREAM.md §3.2b). The OS call is the edge: a
    stand-in for win32ctypes' CredRead holds that credential."""
    import sys
    import types

    refresh = rt()
    store = {"gemini:antigravity": token_json(refresh).encode("utf-8")}
    asked: list[tuple[str, int]] = []

    class WinError(Exception):
        def __init__(self, winerror: int) -> None:
            super().__init__(winerror)
            self.winerror = winerror

    def cred_read(target: str, kind: int) -> dict[str, Any]:
        asked.append((target, kind))
        if target not in store:
            raise WinError(1168)  # ERROR_NOT_FOUND
        return {"TargetName": target, "UserName": "antigravity", "CredentialBlob": store[target]}

    win32cred = types.SimpleNamespace(CredRead=cred_read, CRED_TYPE_GENERIC=1)
    pywin32 = types.ModuleType("win32ctypes.pywin32")
    pywin32.win32cred = win32cred  # type: ignore[attr-defined]
    pywin32.pywintypes = types.SimpleNamespace(error=WinError)  # type: ignore[attr-defined]
    package = types.ModuleType("win32ctypes")
    package.pywin32 = pywin32  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "win32ctypes", package)
    monkeypatch.setitem(sys.modules, "win32ctypes.pywin32", pywin32)
    monkeypatch.setattr(local_logins.sys, "platform", "win32")

    search = local_logins.discover(("keyring",))
    assert [(x.source, x.refresh_token) for x in search.found] == [("keyring", refresh)]
    assert asked == [("gemini:antigravity", 1)]
    store.clear()
    assert "no entry" in local_logins.discover(("keyring",)).tried[0]
