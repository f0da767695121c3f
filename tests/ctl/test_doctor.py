"""``agctl doctor`` (issue 15): the real daemon and agctl against the fake Google.

A healthy stack gives exit 0 and every line ``ok``; a dead or suspended
account, or a stopped daemon, gives exit 1 and the line that says why with
its fix. The proxy key and the refresh tokens never appear in the output.
The client-settings reader is tested in-process on files written by the
same edits ``agctl setup`` makes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ctl import doctor
from ctl import setup_clients as sc
from ctl.client import CtlError
from tests.conftest import Daemon, base_config, free_port, pooled_daemon
from tests.fakes.google import FakeGoogle

ORDER_HEAD = ["daemon", "config", "proxy", "oauth client"]
ORDER_TAIL = [
    "client version",
    "upstream",
    "client claude",
    "client codex",
    "client gemini",
    "client opencode",
]
CLEAN_ENV = (
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "XDG_CONFIG_HOME",
    sc.KEY_ENV,
    "ANTIGRAVITY_OAUTH_CLIENT_SECRET",
)


@pytest.fixture
def user_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="ag-doc-u-", dir="/tmp"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def clean(d: Daemon) -> Daemon:
    for var in CLEAN_ENV:
        d.env.pop(var, None)
    return d


def check_lines(stdout: str) -> list[str]:
    """The check lines, without the summary line at the end."""
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith(("all well", "something failed")), stdout
    return lines[:-1]


def name_of(line: str) -> str:
    return line[6:].split(": ", 1)[0]


def assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
    assert "ya29." not in text  # no access token either


def test_healthy_stack_every_line_ok(fake: FakeGoogle, user_home: Path) -> None:
    email = "doc-ok@example.com"
    fake.add_account(email=email)
    with pooled_daemon(fake, [email], "ag-doc-", env={"HOME": str(user_home)}) as d:
        clean(d)
        assert d.ctl("setup", "claude").returncode == 0
        res = d.ctl("doctor")
        assert res.returncode == 0, res.stdout + res.stderr
        lines = check_lines(res.stdout)
        assert [name_of(x) for x in lines] == [*ORDER_HEAD, f"account {email}", *ORDER_TAIL]
        assert all(x.startswith("ok    ") for x in lines), res.stdout
        assert res.stdout.strip().splitlines()[-1] == "all well"
        account = next(x for x in lines if email in x)
        # token, project and both windows of each group, each with its reset
        assert "token refreshed" in account and "project proj-doc-ok" in account
        for group in ("gemini 5h 100% (resets in ", "3p 5h 100% (resets in "):
            assert group in account
        assert account.count("week 100% (resets in ") == 2
        assert "points at this proxy" in next(x for x in lines if name_of(x) == "client claude")
        assert "auth strict" in next(x for x in lines if name_of(x) == "proxy")
        # the key sits in Claude's settings and in the config: doctor read both, printed neither
        assert_no_secrets(res.stdout + res.stderr, d.api_key, fake.account(email).refresh_token)


def test_json_shape(fake: FakeGoogle, user_home: Path) -> None:
    email = "doc-json@example.com"
    fake.add_account(email=email)
    with pooled_daemon(fake, [email], "ag-doc-", env={"HOME": str(user_home)}) as d:
        clean(d)
        res = d.ctl("doctor", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        data = json.loads(res.stdout)
        assert data["ok"] is True
        assert [c["name"] for c in data["checks"]] == [*ORDER_HEAD, f"account {email}", *ORDER_TAIL]
        for check in data["checks"]:
            assert set(check) == {"name", "status", "detail", "fix"}
            assert check["status"] in ("ok", "warn", "fail")
            assert all(isinstance(v, str) for v in check.values())
            assert (check["fix"] == "") == (check["status"] == "ok"), check
        assert_no_secrets(res.stdout + res.stderr, d.api_key, fake.account(email).refresh_token)


def test_dead_and_suspended_accounts_fail_with_the_fix(fake: FakeGoogle, user_home: Path) -> None:
    good, dead, banned = "doc-good@example.com", "doc-dead@example.com", "doc-tos@example.com"
    for email in (good, dead, banned):
        fake.add_account(email=email)
    with pooled_daemon(fake, [good, dead, banned], "ag-doc-", env={"HOME": str(user_home)}) as d:
        clean(d)
        fake.revoke(dead)  # the refresh token answers invalid_grant from now on
        fake.account(banned).forbidden = "TOS_VIOLATION"
        try:
            res = d.ctl("doctor")
        finally:
            fake.account(banned).forbidden = None
        assert res.returncode == 1, res.stdout + res.stderr
        lines = check_lines(res.stdout)
        by_name = {name_of(x): x for x in lines}
        assert by_name[f"account {good}"].startswith("ok    ")
        line = by_name[f"account {dead}"]
        assert line.startswith("FAIL  "), line
        assert "invalid_grant" in line and "fix: sign in again: `agctl accounts add`" in line
        line = by_name[f"account {banned}"]
        assert line.startswith("FAIL  ") and "Terms of Service" in line, line
        stored = next(a for a in d.admin("GET", "/accounts")["accounts"] if a["email"] == banned)
        assert stored["validation_url"].startswith("https://")  # the appeal link Google gave
        assert f"fix: open {stored['validation_url']} signed in as {banned}" in line
        assert f"`agctl accounts enable {stored['id']}`" in line
        # Google answered (the good account's calls): reachable
        assert by_name["upstream"].startswith("ok    ")
        assert res.stdout.strip().splitlines()[-1].startswith("something failed")
        tokens = [fake.account(e).refresh_token for e in (good, dead, banned)]
        assert_no_secrets(res.stdout + res.stderr, d.api_key, *tokens)
        data = json.loads(d.ctl("doctor", "--json").stdout)
        assert data["ok"] is False
        check = next(c for c in data["checks"] if c["name"] == f"account {dead}")
        assert check["status"] == "fail" and "agctl accounts add" in check["fix"]


def test_stopped_daemon_exit_1_says_how_to_start_it(
    make_daemon: Any, fake: FakeGoogle, user_home: Path
) -> None:
    cfg = base_config(fake, free_port())
    d = clean(make_daemon(cfg, start=False, env={"HOME": str(user_home)}))
    res = d.ctl("doctor")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = check_lines(res.stdout)
    assert lines[0].startswith("FAIL  daemon: antigravityd is not running"), lines[0]
    assert "fix: start it: `antigravityd &`" in lines[0] and "systemctl --user start antigravity" in lines[0]
    # what needs no daemon is still checked: the file, the OAuth client, the clients
    assert lines[1].startswith("ok    config: ") and lines[2].startswith("ok    oauth client: ")
    assert [name_of(x) for x in lines[3:]] == ORDER_TAIL[2:]
    assert_no_secrets(res.stdout + res.stderr, cfg["proxy"]["api_key"], cfg["oauth"]["client_secret"])

    data = json.loads(d.ctl("doctor", "--json").stdout)
    assert data["ok"] is False
    assert data["checks"][0]["name"] == "daemon" and data["checks"][0]["status"] == "fail"
    assert "antigravityd" in data["checks"][0]["fix"]

    (d.home / "config.toml").write_text("[proxy]\nport = 'eighty'\n")
    res = d.ctl("doctor")
    assert res.returncode == 1
    line = next(x for x in check_lines(res.stdout) if name_of(x) == "config")
    assert line.startswith("FAIL  config: ") and "is broken" in line and "proxy.port" in line, line


# ---------------------------------------------------------------- in-process: the client settings

PORT = 8123
KEY = "sk-doctor-0123456789abcdef"
T = sc.Target(
    base_url=f"http://127.0.0.1:{PORT}", api_key=KEY, models=("gemini-3-flash", "claude-sonnet-4-6")
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in CLEAN_ENV:
        monkeypatch.delenv(var, raising=False)
    return h


def write_setup(client: str, t: sc.Target = T) -> None:
    """The files as `agctl setup CLIENT` writes them."""
    for path, _before, after in sc.plan(client, t):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(after)


@pytest.mark.parametrize("client", sc.CLIENTS)
def test_client_states(home: Path, client: str, monkeypatch: pytest.MonkeyPatch) -> None:
    status, detail, _ = doctor.client_state(client, PORT, KEY, True)
    assert (status, detail.split(" (")[0]) == ("ok", "not set up for the proxy")
    write_setup(client)
    monkeypatch.setenv(sc.KEY_ENV, KEY)  # what `eval "$(agctl setup codex --print)"` sets
    status, detail, fix = doctor.client_state(client, PORT, KEY, True)
    assert (status, fix) == ("ok", ""), detail
    assert detail.startswith("points at this proxy")
    # the proxy moved to another port: the client points elsewhere now
    status, detail, fix = doctor.client_state(client, PORT + 1, KEY, True)
    assert status == "warn" and detail.startswith("points elsewhere") and f"agctl setup {client}" in fix
    # the key was rotated: a proxy that checks keys refuses this client
    status, detail, fix = doctor.client_state(client, PORT, "sk-rotated-0123456789", True)
    if client == "codex":
        assert status == "warn" and "holds another key" in detail  # the key lives in the shell
    else:
        assert status == "fail" and "another key" in detail and f"agctl setup {client}" in fix
    # ... while with auth off any key works
    assert doctor.client_state(client, PORT, "sk-rotated-0123456789", False)[0] == "ok"
    assert KEY not in detail + fix


def test_client_states_wrong_path_codex_env_and_broken_files(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_setup("claude", sc.Target(base_url=f"http://localhost:{PORT}/v1", api_key=KEY))
    status, detail, _ = doctor.client_state("claude", PORT, KEY, True)
    assert status == "fail" and "wrong base URL" in detail

    write_setup("codex")
    status, detail, fix = doctor.client_state("codex", PORT, KEY, True)
    assert status == "warn" and f"${sc.KEY_ENV} is not set" in detail and "--print" in fix

    gemini_settings = home / ".gemini" / "settings.json"
    write_setup("gemini")
    gemini_settings.write_text('{"security": {"auth": {"selectedType": "oauth-personal"}}}')
    status, detail, _ = doctor.client_state("gemini", PORT, KEY, True)
    assert status == "fail" and "oauth-personal" in detail

    (home / ".claude" / "settings.json").write_text('{"env": {,}')
    with pytest.raises(CtlError, match="not valid JSON"):
        doctor.client_state("claude", PORT, KEY, True)


def test_account_line_quota_windows_and_disabled_reasons() -> None:
    now = time.time()
    doc = doctor.Doctor(SimpleNamespace())  # type: ignore[arg-type]

    def bucket(frac: float, reset: float) -> dict[str, Any]:
        return {"remaining_fraction": frac, "reset_time": now + reset}

    acct: dict[str, Any] = {
        "id": "abc123",
        "email": "q@example.com",
        "state": "active",
        "project": "proj-q",
        "tier": "PRO",
        "cooldowns": {},
        "quota": {
            "groups": {
                "gemini": {"five_hour": bucket(0.5, 7200), "weekly": bucket(0.9, 3 * 86400)},
                "3p": {"five_hour": bucket(1.0, 18000), "weekly": bucket(0.0, 2 * 86400 + 60)},
            }
        },
    }
    doc.account({"account": acct, "checked": True, "ok": True, "error": None}, now)
    check = doc.checks[-1]
    assert check.status == "warn", check
    assert "gemini 5h 50% (resets in 2h00m) · week 90% (resets in 3d00h)" in check.detail
    assert "3p 5h 100% (resets in 5h00m) · week 0% (resets in 2d00h) USED UP" in check.detail

    user_off = {**acct, "state": "disabled", "disabled_reason": doctor.USER_DISABLED}
    doc.account({"account": user_off, "checked": False, "ok": True, "error": None}, now)
    assert doc.checks[-1].status == "warn" and "agctl accounts enable abc123" in doc.checks[-1].fix

    validation = {
        **acct,
        "state": "disabled",
        "disabled_reason": "validation required",
        "validation_url": "https://accounts.google.com/v",
    }
    doc.account({"account": validation, "checked": False, "ok": True, "error": None}, now)
    assert doc.checks[-1].status == "fail"
    assert doc.checks[-1].fix.startswith("open https://accounts.google.com/v signed in as q@example.com")

    no_project = {**acct, "project": ""}
    doc.account({"account": no_project, "checked": True, "ok": True, "error": None}, now)
    assert doc.checks[-1].status == "fail" and "no Cloud Code project" in doc.checks[-1].detail


def test_mask_hides_known_secrets_and_token_shapes() -> None:
    doc = doctor.Doctor(SimpleNamespace())  # type: ignore[arg-type]
    doc.secrets.add("GOCSPX-not-a-real-secret-000")
    check = doc.add(
        "x", "fail", "saw GOCSPX-not-a-real-secret-000 and 1//0gAbCdEfGhIjKlMn", "sk-abcdef0123456789"
    )
    assert "GOCSPX-not" not in check.detail and "AbCdEfGh" not in check.detail
    assert "abcdef0123" not in check.fix
