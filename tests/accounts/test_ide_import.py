"""`agctl accounts import-ide` (the older name of `import --from ide`): the
refresh token from the Antigravity IDE's state.vscdb, legacy key.

The tests build the IDE's SQLite file themselves (table ``ItemTable``, key
``jetskiStateSync.agentManagerInitState``, value: base64 of a protobuf with
the refresh token nested in a sub-message), encoding the protobuf by hand.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.accounts import ide_import
from daemon.errors import BadRequest, NotFound
from tests.conftest import Daemon, _bin, base_config, free_port
from tests.fakes.google import FakeGoogle

STATE_KEY = "jetskiStateSync.agentManagerInitState"
IDE_REL = Path(".config") / "Antigravity" / "User" / "globalStorage" / "state.vscdb"
IDE2_REL = Path(".config") / "Antigravity IDE" / "User" / "globalStorage" / "state.vscdb"

# ------------------------------------------------------------------ protobuf by hand


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def f_varint(num: int, value: int) -> bytes:
    return varint(num << 3 | 0) + varint(value)


def f_bytes(num: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def f_fixed64(num: int, value: int) -> bytes:
    return varint(num << 3 | 1) + value.to_bytes(8, "little")


def f_fixed32(num: int, value: int) -> bytes:
    return varint(num << 3 | 5) + value.to_bytes(4, "little")


def ide_state(refresh_token: str, *, access_token: str | None = None, depth: int = 1) -> bytes:
    """A plausible agentManagerInitState message: ids, flags, an email, and an
    OAuth token message (access token, type, refresh token, expiry) nested
    ``depth`` levels down, with fields before and after it."""
    access = access_token or "ya29.a0" + secrets.token_urlsafe(60)
    token_msg = (
        f_bytes(1, access)
        + f_bytes(2, "Bearer")
        + f_bytes(3, refresh_token)
        + f_bytes(4, f_varint(1, 1_767_225_600) + f_varint(2, 0))  # expiry {seconds, nanos}
    )
    for _ in range(depth - 1):
        token_msg = f_varint(1, 7) + f_bytes(2, token_msg)
    return (
        f_bytes(1, "user-" + secrets.token_hex(8))
        + f_varint(2, 1)
        + f_fixed64(3, 123456789)
        + f_bytes(4, b"\x00\xff\xfe binary blob")
        + f_fixed32(5, 42)
        + f_bytes(6, token_msg)
        + f_bytes(7, "someone@example.com")
        + f_bytes(8, f_bytes(1, "https://example.com/a") + f_varint(2, 300))
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_vscdb(
    path: Path, value: str | bytes | None, *, other_rows: bool = True, table: str = "ItemTable"
) -> Path:
    """A VS Code-style state database; ``value`` None: no row for the key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute(f"CREATE TABLE {table} (key TEXT UNIQUE ON CONFLICT REPLACE, value BLOB)")
        if other_rows:
            con.executemany(
                f"INSERT INTO {table} VALUES (?, ?)",
                [
                    ("workbench.panel.position", "bottom"),
                    ("jetskiStateSync.somethingElse", b64(f_bytes(1, "not it"))),
                    ("antigravity.telemetry", json.dumps({"id": "x"})),
                ],
            )
        if value is not None:
            con.execute(f"INSERT INTO {table} VALUES (?, ?)", (STATE_KEY, value))
        con.commit()
    finally:
        con.close()
    return path


def long_refresh_token() -> str:
    return "1//0g" + secrets.token_urlsafe(72).replace("-", "x").replace("_", "y")


def cut_inside_token() -> bytes:
    token = long_refresh_token()
    raw = ide_state(token)
    return raw[: raw.index(token.encode()) + 30]


# ------------------------------------------------------------------ unit: the decoder


def test_refresh_token_nested_in_a_sub_message() -> None:
    token = long_refresh_token()
    value = b64(ide_state(token))
    assert ide_import.refresh_token_from_value(value) == token
    assert ide_import.refresh_token_from_value(value.encode()) == token  # BLOB column
    assert ide_import.refresh_token_from_value(value.rstrip("=")) == token  # padding dropped
    assert ide_import.refresh_token_from_value(value + "\n") == token


def test_refresh_token_deeper_and_after_the_access_token() -> None:
    token = long_refresh_token()
    assert ide_import.refresh_token_from_value(b64(ide_state(token, depth=3))) == token
    # The access token comes first in the message and must not be taken.
    got = ide_import.refresh_token_from_value(b64(ide_state(token, access_token="ya29." + "a" * 80)))
    assert got == token


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 at all !!!",
        b64(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),  # a varint that never ends
        b64(f_bytes(1, "hello") + f_varint(2, 3)),  # a message without a token
        b64(f_bytes(6, f_bytes(3, "1//short"))),  # too short to be a refresh token
        b64(cut_inside_token()),  # cut in the middle of the token
        b64(b"\x0b\x0c"),  # wire type 3 (groups)
    ],
)
def test_unknown_formats_give_none(value: str) -> None:
    assert ide_import.refresh_token_from_value(value) is None


def test_default_paths_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("daemon.accounts.ide_import.sys.platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert ide_import.default_paths() == [tmp_path / IDE_REL, tmp_path / IDE2_REL]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert ide_import.default_paths() == [
        tmp_path / "xdg" / folder / "User" / "globalStorage" / "state.vscdb"
        for folder in ("Antigravity", "Antigravity IDE")
    ]


def test_default_paths_macos_and_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("daemon.accounts.ide_import.sys.platform", "darwin")
    assert ide_import.default_paths() == [
        tmp_path / "Library" / "Application Support" / folder / "User" / "globalStorage" / "state.vscdb"
        for folder in ("Antigravity", "Antigravity IDE")
    ]
    monkeypatch.setattr("daemon.accounts.ide_import.sys.platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "AppData" / "Roaming"))
    assert ide_import.default_paths() == [
        tmp_path / "AppData" / "Roaming" / folder / "User" / "globalStorage" / "state.vscdb"
        for folder in ("Antigravity", "Antigravity IDE")
    ]


def test_read_refresh_token_from_file(tmp_path: Path) -> None:
    token = long_refresh_token()
    path = write_vscdb(tmp_path / "state.vscdb", b64(ide_state(token)))
    assert ide_import.read_refresh_token(str(path)) == (token, path)
    # The IDE's database is only read.
    before = path.read_bytes()
    ide_import.read_refresh_token(str(path))
    assert path.read_bytes() == before


def test_read_refresh_token_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "state.vscdb"
    with pytest.raises(NotFound, match=str(missing)):
        ide_import.read_refresh_token(str(missing))
    no_key = write_vscdb(tmp_path / "nokey.vscdb", None)
    with pytest.raises(BadRequest, match=f"{no_key}.*{STATE_KEY}"):
        ide_import.read_refresh_token(str(no_key))
    garbage = write_vscdb(tmp_path / "garbage.vscdb", "%%% not a protobuf %%%")
    with pytest.raises(BadRequest, match=f"{garbage}.*unknown format"):
        ide_import.read_refresh_token(str(garbage))
    not_db = tmp_path / "text.vscdb"
    not_db.write_text("this is not SQLite\n" * 100)
    with pytest.raises(BadRequest, match=str(not_db)):
        ide_import.read_refresh_token(str(not_db))
    other_table = write_vscdb(tmp_path / "other.vscdb", b64(ide_state(long_refresh_token())), table="Other")
    with pytest.raises(BadRequest, match=str(other_table)):
        ide_import.read_refresh_token(str(other_table))
    directory = tmp_path / "adir"
    directory.mkdir()
    with pytest.raises(BadRequest, match=str(directory)):
        ide_import.read_refresh_token(str(directory))


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def ide_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="ag-ide-", dir="/tmp"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(fake: FakeGoogle, ide_home: Path) -> Iterator[Daemon]:
    """The daemon runs with HOME (the user's home) in a temp dir, XDG_CONFIG_HOME unset."""
    d = Daemon(ide_home / "ag", env={"HOME": str(ide_home / "user")})
    d.env.pop("XDG_CONFIG_HOME", None)
    d.write_config(base_config(fake, free_port(), proxy={"auto_start": False}))
    d.start()
    try:
        yield d
    finally:
        d.stop()


def listed(d: Daemon) -> dict[str, dict[str, Any]]:
    return {a["email"]: a for a in d.ctl_json("accounts", "list")["accounts"]}


def account_files(d: Daemon) -> set[str]:
    path = d.home / "data" / "accounts"
    return set(p.name for p in path.iterdir()) if path.exists() else set()


def test_import_ide_from_path(daemon: Daemon, fake: FakeGoogle, tmp_path: Path) -> None:
    email = "ide-path@example.com"
    acct = fake.add_account(email=email, refresh_token=long_refresh_token(), tier="ULTRA")
    db = write_vscdb(tmp_path / "state.vscdb", b64(ide_state(acct.refresh_token, depth=2)))
    res = daemon.ctl("accounts", "import-ide", str(db))
    assert res.returncode == 0, res.stderr
    assert f"imported from {db}" in res.stdout and email in res.stdout and "ULTRA" in res.stdout
    got = listed(daemon)[email]
    assert got["tier"] == "ULTRA" and got["project"] == acct.project
    assert acct.refresh_token not in res.stdout + res.stderr

    # Importing again updates the same account.
    res = daemon.ctl("accounts", "import-ide", str(db), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["account"]["id"] == got["id"] and out["path"] == str(db)
    assert [a for a in daemon.ctl_json("accounts", "list")["accounts"] if a["email"] == email] != []
    assert len([a for a in daemon.ctl_json("accounts", "list")["accounts"] if a["email"] == email]) == 1


def test_import_ide_relative_path(daemon: Daemon, fake: FakeGoogle, tmp_path: Path) -> None:
    """A relative PATH means relative to where agctl runs, not to the daemon's cwd."""
    email = "ide-relative@example.com"
    acct = fake.add_account(email=email, refresh_token=long_refresh_token())
    write_vscdb(tmp_path / "sub" / "state.vscdb", b64(ide_state(acct.refresh_token)))
    res = subprocess.run(
        [*_bin("agctl"), "accounts", "import-ide", "sub/state.vscdb"],
        env=daemon.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert email in listed(daemon)


def test_import_ide_missing_file(daemon: Daemon, tmp_path: Path) -> None:
    before = account_files(daemon)
    missing = tmp_path / "no-such" / "state.vscdb"
    res = daemon.ctl("accounts", "import-ide", str(missing))
    assert res.returncode != 0
    assert str(missing) in res.stderr and "agctl accounts import --from file PATH" in res.stderr
    assert account_files(daemon) == before


@pytest.mark.parametrize(
    ("value", "table", "expect"),
    [
        (None, "ItemTable", STATE_KEY),  # signed out: no such key
        ("%%% garbage, not base64 protobuf %%%", "ItemTable", "unknown format"),
        (b64(f_bytes(1, "no token here") + f_varint(2, 1)), "ItemTable", "unknown format"),
        (
            b64(ide_state(long_refresh_token())),
            "SomethingElse",
            "not a readable Antigravity state database",
        ),
    ],
    ids=["no-key", "garbage", "no-token", "no-table"],
)
def test_import_ide_bad_database(daemon: Daemon, tmp_path: Path, value: Any, table: str, expect: str) -> None:
    before = account_files(daemon)
    db = write_vscdb(tmp_path / "state.vscdb", value, table=table)
    res = daemon.ctl("accounts", "import-ide", str(db))
    assert res.returncode != 0, res.stdout
    assert str(db) in res.stderr and expect in res.stderr, res.stderr
    assert account_files(daemon) == before


def test_import_ide_not_sqlite(daemon: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "state.vscdb"
    path.write_bytes(b"\x00garbage\xff" * 500)
    res = daemon.ctl("accounts", "import-ide", str(path))
    assert res.returncode != 0
    assert str(path) in res.stderr and "not a readable Antigravity state database" in res.stderr


def test_import_ide_dead_token(daemon: Daemon, fake: FakeGoogle, tmp_path: Path) -> None:
    """The IDE signed out long ago: its refresh token is revoked."""
    email = "ide-revoked@example.com"
    acct = fake.add_account(email=email, refresh_token=long_refresh_token())
    fake.revoke(email)
    try:
        db = write_vscdb(tmp_path / "state.vscdb", b64(ide_state(acct.refresh_token)))
        before = account_files(daemon)
        res = daemon.ctl("accounts", "import-ide", str(db))
        assert res.returncode == 1
        assert (
            "invalid_grant" in res.stderr
            and str(db) in res.stderr
            and "nothing was added" in res.stderr.lower()
        )
        assert account_files(daemon) == before
    finally:
        acct.revoked = False


def test_import_ide_default_path(daemon: Daemon, fake: FakeGoogle, ide_home: Path) -> None:
    default = ide_home / "user" / IDE_REL
    # Nothing there yet: the message names the default path it tried.
    res = daemon.ctl("accounts", "import-ide")
    assert res.returncode != 0
    assert str(default) in res.stderr, res.stderr

    email = "ide-default@example.com"
    acct = fake.add_account(email=email, refresh_token=long_refresh_token(), tier="FREE")
    write_vscdb(default, b64(ide_state(acct.refresh_token)))
    res = daemon.ctl("accounts", "import-ide")
    assert res.returncode == 0, res.stderr
    assert f"imported from {default}" in res.stdout
    assert listed(daemon)[email]["tier"] == "FREE"
