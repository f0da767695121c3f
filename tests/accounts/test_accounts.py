"""Issue 3 end to end: `agctl accounts …` against the real daemon and the fake Google.

One daemon serves the whole module (each test adds accounts with its own
emails, so tests do not see each other's accounts); the cases that need a
different config or a restart start their own daemon.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import Daemon, _bin, base_config, free_port
from tests.fakes.google import DEFAULT_SCOPES, FakeGoogle

SECRET_ENV = "ANTIGRAVITY_OAUTH_CLIENT_SECRET"
TOKEN_RE = re.compile(r"ya29\.[A-Za-z0-9_\-]{8,}|1//[A-Za-z0-9_\-]{8,}")


def long_refresh_token() -> str:
    """Shaped like Google's (``1//0g…``, ~100 chars), so a leak is unmistakable."""
    return "1//0g" + secrets.token_urlsafe(72).replace("-", "x").replace("_", "y")


def add_fake(fake: FakeGoogle, email: str, **kw: Any) -> Any:
    kw.setdefault("refresh_token", long_refresh_token())
    return fake.add_account(email=email, **kw)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def daemon(fake: FakeGoogle) -> Iterator[Daemon]:
    home = Path(tempfile.mkdtemp(prefix="ag-acc-", dir="/tmp"))
    d = Daemon(home, env={"AGCTL_NO_OPEN": "1"})
    d.env.pop(SECRET_ENV, None)
    d.write_config(base_config(fake, free_port(), proxy={"auto_start": False}))
    d.start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def g(fake: FakeGoogle) -> Iterator[FakeGoogle]:
    """The fake with its knobs reset before and after the test."""
    fake.reset()
    yield fake
    fake.reset()


def accounts_dir(d: Daemon) -> Path:
    return d.home / "data" / "accounts"


def snapshot(d: Daemon) -> dict[str, bytes]:
    """Every file (hidden temp files too) of data/accounts with its content."""
    path = accounts_dir(d)
    if not path.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def listed(d: Daemon) -> dict[str, dict[str, Any]]:
    """email -> account, from the real `agctl accounts list --json`."""
    data = d.ctl_json("accounts", "list")
    return {a["email"]: a for a in data["accounts"]}


def quota_line_of(d: Daemon, email: str, group: str) -> str:
    """The line of one quota group in the QUOTA cell of `agctl accounts list`: the cell
    starts on the account's row and its other groups follow on lines of their own."""
    lines = d.ctl("accounts", "list").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if email in line)
    for line in lines[start : start + 3]:
        found = re.search(rf"(?:^|\s){re.escape(group)} 5h .*?· week \S+(?: \(resets [^)]*\))?", line)
        if found:
            return found.group(0).strip()
    raise AssertionError(f"no {group} quota line for {email}:\n" + "\n".join(lines[start : start + 3]))


# ------------------------------------------------------------------ agctl as a subprocess


class Running:
    """A running `agctl` whose stdout/stderr are read by threads (no blocking reads)."""

    def __init__(self, d: Daemon, *args: str, stdin: bool = False, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*_bin("agctl"), *args],
            env={**d.env, **(env or {})},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._err_lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, None), daemon=True),
            threading.Thread(
                target=self._pump, args=(self.proc.stderr, self.err, self._err_lines), daemon=True
            ),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str], lines: queue.Queue[str | None] | None) -> None:
        for line in stream:
            sink.append(line)
            if lines is not None:
                lines.put(line)
        if lines is not None:
            lines.put(None)

    def url(self, timeout: float = 15) -> str:
        """The sign-in URL agctl prints on stderr."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"agctl printed no URL: {''.join(self.err)}")
            try:
                line = self._err_lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"agctl ended without a URL ({self.proc.wait()}): {''.join(self.err)}")
            if line.strip().startswith("http"):
                return line.strip()

    def paste(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(5)
            for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if s is not None:
                    s.close()
        return code, "".join(self.out), "".join(self.err)


def consent(url: str) -> httpx.Response:
    """The browser: the consent page answers a 302 to the loopback callback; do not follow it."""
    r = httpx.get(url, follow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    return r


def browse(url: str) -> httpx.Response:
    """The browser following the URL all the way to the daemon's /oauth-callback."""
    return httpx.get(url, follow_redirects=True, timeout=10)


def query_of(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = {**query_of(url), **changes}
    return urlunsplit(parts._replace(query=urlencode(q)))


# ------------------------------------------------------------------ browser sign-in


def test_browser_login_adds_the_account(daemon: Daemon, g: FakeGoogle) -> None:
    email = "browser-ok@example.com"
    acct = add_fake(g, email, tier="ULTRA")
    g.consent_account = email
    before = snapshot(daemon)

    run = Running(daemon, "accounts", "add")
    url = run.url()
    page = browse(url)
    code, out, err = run.finish()

    assert code == 0, err
    assert page.status_code == 200 and "close this tab" in page.text
    assert page.history and page.history[0].status_code == 302
    assert f"added {email}" in out and "ULTRA" in out and acct.project in out

    # The authorization URL: everything UPSTREAM.md asks for, at the configured auth_url.
    assert url.startswith(g.auth_url + "?")
    q = query_of(url)
    assert q["response_type"] == "code"
    assert q["access_type"] == "offline"
    assert q["prompt"] == "consent"
    assert q["client_id"] == g.client_id
    assert set(q["scope"].split()) == set(DEFAULT_SCOPES.split())
    assert re.fullmatch(r"http://localhost:\d+/oauth-callback", q["redirect_uri"])
    assert len(q["state"]) >= 16
    assert q["code_challenge_method"] == "S256"
    # PKCE: the verifier sent with the code hashes to the challenge in the URL.
    (exchange,) = [c for c in g.calls_to("token") if c.body.get("grant_type") == "authorization_code"]
    verifier = exchange.body["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert q["code_challenge"] == digest and verifier != q["code_challenge"]
    assert exchange.body["redirect_uri"] == q["redirect_uri"]

    got = listed(daemon)[email]
    assert got["tier"] == "ULTRA" and got["project"] == acct.project and got["state"] == "active"
    new = set(snapshot(daemon)) - set(before)
    assert new == {f"{got['id']}.json"}
    # A second login gets a fresh state and a fresh listener.
    run2 = Running(daemon, "accounts", "add", "--timeout", "1")
    url2 = run2.url()
    assert query_of(url2)["state"] != q["state"]
    assert query_of(url2)["redirect_uri"] != q["redirect_uri"]
    assert run2.finish()[0] == 1


def _failed_login(
    daemon: Daemon, g: FakeGoogle, email: str, act: Any, *args: str
) -> tuple[int, str, str, Any]:
    add_fake(g, email)
    g.consent_account = email
    before = snapshot(daemon)
    run = Running(daemon, "accounts", "add", *args)
    url = run.url()
    seen = act(url)
    code, out, err = run.finish()
    assert code != 0, (out, err)
    assert email not in listed(daemon)
    assert snapshot(daemon) == before, "a failed sign-in left something in data/accounts"
    assert not [c for c in g.calls_to("userinfo") if c.email == email]
    return code, out, err, seen


def test_browser_login_wrong_state(daemon: Daemon, g: FakeGoogle) -> None:
    def forged(url: str) -> httpx.Response:
        location = consent(url).headers["location"]
        assert query_of(location)["state"] == query_of(url)["state"]
        return browse(with_query(location, state="forged-" + secrets.token_hex(8)))

    _, _, err, page = _failed_login(daemon, g, "browser-state@example.com", forged)
    assert page.status_code == 400
    assert "state does not match" in err and "nothing was added" in err.lower()
    assert not g.calls_to("token"), "a forged redirect's code must not be exchanged"


def test_browser_login_denied(daemon: Daemon, g: FakeGoogle) -> None:
    g.consent_deny = True
    _, _, err, page = _failed_login(daemon, g, "browser-deny@example.com", browse)
    assert page.status_code == 400
    assert "denied" in err and "nothing was added" in err.lower()


def test_browser_login_token_endpoint_error(daemon: Daemon, g: FakeGoogle) -> None:
    g.token_fail_status = 500
    _, _, err, page = _failed_login(daemon, g, "browser-500@example.com", browse)
    assert page.status_code == 200  # the browser part went fine; the exchange failed
    assert "token endpoint" in err and "500" in err
    assert "nothing was added" in err.lower()
    assert len(g.calls_to("token")) == 1


def test_browser_login_timeout(daemon: Daemon, g: FakeGoogle) -> None:
    t0 = time.monotonic()
    _, _, err, _ = _failed_login(daemon, g, "browser-late@example.com", lambda url: url, "--timeout", "2")
    assert time.monotonic() - t0 < 15
    assert "timed out" in err and "nothing was added" in err.lower()
    # The browser coming back late finds no listener: still nothing is added.
    url = err[err.index("http") :].split()[0]
    location = consent(url).headers["location"]
    with pytest.raises(httpx.TransportError):
        browse(location)
    assert "browser-late@example.com" not in listed(daemon)


# ------------------------------------------------------------------ --no-browser


def test_no_browser_pasted_redirect_url(daemon: Daemon, g: FakeGoogle) -> None:
    email = "paste-url@example.com"
    acct = add_fake(g, email, tier="FREE")
    g.consent_account = email
    run = Running(daemon, "accounts", "add", "--no-browser", stdin=True)
    url = run.url()
    location = consent(url).headers["location"]
    assert location.startswith(query_of(url)["redirect_uri"] + "?")
    run.paste(location)
    code, out, err = run.finish()
    assert code == 0, err
    assert "paste" in err.lower()
    assert f"added {email}" in out
    got = listed(daemon)[email]
    assert got["tier"] == "FREE" and got["project"] == acct.project


def test_no_browser_pasted_code(daemon: Daemon, g: FakeGoogle) -> None:
    email = "paste-code@example.com"
    add_fake(g, email)
    g.consent_account = email
    run = Running(daemon, "accounts", "add", "--no-browser", stdin=True)
    location = consent(run.url()).headers["location"]
    run.paste(query_of(location)["code"])
    code, out, err = run.finish()
    assert code == 0, err
    assert f"added {email}" in out and email in listed(daemon)


def test_no_browser_pasted_wrong_state(daemon: Daemon, g: FakeGoogle) -> None:
    email = "paste-forged@example.com"
    add_fake(g, email)
    g.consent_account = email
    before = snapshot(daemon)
    run = Running(daemon, "accounts", "add", "--no-browser", stdin=True)
    location = consent(run.url()).headers["location"]
    run.paste(with_query(location, state="nope"))
    code, _, err = run.finish()
    assert code != 0 and "state does not match" in err
    assert snapshot(daemon) == before and email not in listed(daemon)


# ------------------------------------------------------------------ --refresh-token


@pytest.mark.parametrize("tier", ["FREE", "PRO", "ULTRA"])
def test_add_refresh_token(daemon: Daemon, g: FakeGoogle, tier: str) -> None:
    email = f"rt-{tier.lower()}@example.com"
    now = time.time()
    acct = add_fake(
        g,
        email,
        tier=tier,
        project=f"proj-{tier.lower()}-{secrets.token_hex(3)}",
        models={
            "gemini-3-flash": {"fraction": 0.4, "reset": now + 3600},  # the Gemini 5-hour bucket
            "claude-sonnet-4-6": {"fraction": 1.0},  # the Claude+GPT one
            "gemini-2.5-pro": {"quotaInfo": None},  # an entry without quotaInfo
            "chat_20706": {},  # isInternal
        },
    )
    res = daemon.ctl("accounts", "add", "--refresh-token", acct.refresh_token)
    assert res.returncode == 0, res.stderr
    assert f"added {email}" in res.stdout and tier in res.stdout

    # refresh -> userinfo -> loadCodeAssist -> fetchAvailableModels -> the quota windows,
    # in that order (UPSTREAM.md §3.3, §4.1, §4.2); no onboarding: the project exists.
    mine = [c for c in g.calls if c.email == email]
    assert [c.method for c in mine] == [
        "token",
        "userinfo",
        "loadCodeAssist",
        "fetchAvailableModels",
        "retrieveUserQuotaSummary",
    ]
    assert mine[0].body["grant_type"] == "refresh_token"
    assert mine[2].body == {
        "metadata": {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
    }
    assert mine[3].body == {"project": acct.project}
    assert mine[4].body == {"project": acct.project}

    got = listed(daemon)[email]
    assert got["tier"] == tier and got["project"] == acct.project and got["state"] == "active"
    # The plan is paidTier.id; a FREE account has no paidTier, only currentTier (§3.3).
    assert got["plan"] == {"FREE": "free-tier", "PRO": "g1-pro-tier", "ULTRA": "g1-ultra-tier"}[tier]
    models = got["models"]
    assert "chat_20706" not in models
    assert set(models) == {"gemini-3-flash", "claude-sonnet-4-6", "gemini-2.5-pro"}
    assert models["gemini-3-flash"]["remaining_fraction"] == pytest.approx(0.4)
    assert models["gemini-3-flash"]["reset_time"] == pytest.approx(int(now + 3600), abs=2)
    assert models["claude-sonnet-4-6"]["remaining_fraction"] == 1.0
    assert models["gemini-2.5-pro"]["remaining_fraction"] is None
    assert models["gemini-2.5-pro"]["reset_time"] is None

    # Saved, 0600, in data/accounts/<id>.json; the directory is private too.
    path = accounts_dir(daemon) / f"{got['id']}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(accounts_dir(daemon).stat().st_mode) == 0o700
    saved = json.loads(path.read_bytes())
    assert saved["email"] == email and saved["refresh_token"] == acct.refresh_token
    # The table shows it too: no quota for a model without quotaInfo, none for internal ones.
    table = daemon.ctl("accounts", "list")
    assert table.returncode == 0
    row = [line for line in table.stdout.splitlines() if email in line]
    assert row and got["id"] in row[0] and tier in row[0]
    assert "chat_20706" not in table.stdout
    # The quota column shows the windows of each group.
    assert "gemini 5h 40% (resets " in table.stdout and "3p 5h 100% · week 100%" in table.stdout


def test_add_onboards_a_fresh_account_and_lists_its_windows(daemon: Daemon, g: FakeGoogle) -> None:
    """A Google account that never used Antigravity has no Cloud Code project: loadCodeAssist
    names none, and inference would fail until ``onboardUser`` gives it one (UPSTREAM.md
    §3.3-3.4). ``accounts add`` onboards it; ``accounts list`` then shows its project and
    the 5-hour and weekly windows of each quota group (§4.2)."""
    email = "rt-fresh@example.com"
    project = f"proj-fresh-{secrets.token_hex(3)}"
    acct = add_fake(g, email, project=project, fresh=True)
    assert acct.project == ""  # not onboarded yet
    now = time.time()
    week_reset = now + 3 * 86400 + 600
    acct.set_bucket("gemini-weekly", 0.25)
    acct.set_bucket("3p-5h", 0.6, now + 2 * 3600)
    acct.set_bucket("3p-weekly", 0.0, week_reset)

    res = daemon.ctl("accounts", "add", "--refresh-token", acct.refresh_token)
    assert res.returncode == 0, res.stderr
    assert f"added {email}" in res.stdout and project in res.stdout

    # loadCodeAssist shows no project -> onboardUser with the default tier of allowedTiers
    # and the client metadata -> a pending operation, polled until done -> the catalog and
    # the windows of the new project.
    mine = [c for c in g.calls if c.email == email]
    methods = [c.method for c in mine]
    assert methods[:4] == ["token", "userinfo", "loadCodeAssist", "onboardUser"], methods
    assert methods[-2:] == ["fetchAvailableModels", "retrieveUserQuotaSummary"], methods
    polls = methods[4:-2]
    assert polls and all(m == "onboardUser" or m.startswith("operations/") for m in polls), methods
    onboard = mine[3].body
    assert onboard["tierId"] == "free-tier" and onboard["metadata"]["ideType"] == "ANTIGRAVITY"
    assert mine[-2].body == {"project": project} and mine[-1].body == {"project": project}
    assert acct.project == project  # the fake now knows the account as onboarded

    got = listed(daemon)[email]
    assert got["project"] == project and got["state"] == "active" and got["tier"] == "PRO"
    saved = json.loads((accounts_dir(daemon) / f"{got['id']}.json").read_bytes())
    assert saved["project"] == project

    # The windows, as records ...
    groups = got["quota"]["groups"]
    assert groups["gemini"]["five_hour"]["remaining_fraction"] == 1.0
    assert groups["gemini"]["weekly"]["remaining_fraction"] == pytest.approx(0.25)
    assert groups["3p"]["five_hour"]["remaining_fraction"] == pytest.approx(0.6)
    assert groups["3p"]["weekly"]["remaining_fraction"] == 0.0
    assert groups["3p"]["weekly"]["reset_time"] == pytest.approx(week_reset, abs=2)
    # ... and as the table shows them: the 5-hour reset time when it is not full, the
    # weekly one (with its day) only when the week is used up.
    assert quota_line_of(daemon, email, "gemini") == "gemini 5h 100% · week 25%"
    line = quota_line_of(daemon, email, "3p")
    day = datetime.fromtimestamp(week_reset).astimezone().strftime("%a")
    assert line.startswith("3p 5h 60% (resets ") and f"· week 0% (resets {day} " in line, line
    assert got["quota_line"] == f"gemini 5h 100% · week 25% | {line}"  # the JSON says the same


def test_add_same_email_updates(daemon: Daemon, g: FakeGoogle) -> None:
    email = "rt-again@example.com"
    first = add_fake(g, email, project="proj-again-1")
    assert daemon.ctl("accounts", "add", "--refresh-token", first.refresh_token).returncode == 0
    acc1 = listed(daemon)[email]
    files = set(snapshot(daemon))

    # Same email, new refresh token (e.g. signed in again), moved project.
    second = add_fake(g, email, project="proj-again-2", tier="ULTRA")
    res = daemon.ctl("accounts", "add", "--refresh-token", second.refresh_token, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["account"]["id"] == acc1["id"]

    accs = [a for a in daemon.ctl_json("accounts", "list")["accounts"] if a["email"] == email]
    assert len(accs) == 1
    assert accs[0]["id"] == acc1["id"] and accs[0]["project"] == "proj-again-2" and accs[0]["tier"] == "ULTRA"
    assert accs[0]["added_at"] == acc1["added_at"]
    assert set(snapshot(daemon)) == files
    saved = json.loads((accounts_dir(daemon) / f"{acc1['id']}.json").read_bytes())
    assert saved["refresh_token"] == second.refresh_token


def test_add_unknown_refresh_token(daemon: Daemon, g: FakeGoogle) -> None:
    before = snapshot(daemon)
    bogus = long_refresh_token()
    res = daemon.ctl("accounts", "add", "--refresh-token", bogus)
    assert res.returncode == 1, res
    assert "invalid_grant" in res.stderr and "nothing was added" in res.stderr.lower()
    assert bogus not in res.stderr + res.stdout
    assert snapshot(daemon) == before
    # And the JSON error shape for scripts.
    res = daemon.ctl("accounts", "add", "--refresh-token", bogus, "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"]["message"]


# ------------------------------------------------------------------ list, remove, enable, disable


def test_list_json_fields(daemon: Daemon, g: FakeGoogle) -> None:
    email = "list-json@example.com"
    reset = datetime.now(UTC) + timedelta(hours=2)
    acct = add_fake(
        g,
        email,
        models={"gemini-3-flash": {"fraction": 0.75, "reset": reset}, "claude-sonnet-4-6": {}},
    )
    daemon.admin("POST", "/accounts", json={"refresh_token": acct.refresh_token})
    got = listed(daemon)[email]
    for key in (
        "id",
        "email",
        "tier",
        "state",
        "project",
        "models",
        "last_used",
        "disabled_reason",
        "validation_url",
        "plan",
        "quota",
        "quota_line",
    ):
        assert key in got, key
    assert got["last_used"] is None
    q = got["models"]["gemini-3-flash"]
    assert q["remaining_fraction"] == 0.75
    assert q["reset_time"] == pytest.approx(reset.timestamp(), abs=2)
    assert "refresh_token" not in json.dumps(got) and "access_token" not in json.dumps(got)


def test_list_table_is_readable(daemon: Daemon, g: FakeGoogle) -> None:
    email = "list-table-with-a-rather-long-address@example.com"
    acct = add_fake(
        g,
        email,
        tier="FREE",
        models={"gemini-3-flash": {"fraction": 0.5}, "claude-sonnet-4-6": {"fraction": 0.2}},
    )
    acc = daemon.admin("POST", "/accounts", json={"refresh_token": acct.refresh_token})["account"]
    daemon.admin("POST", f"/accounts/{acc['id']}/disable", json={"reason": "paused for a test"})
    res = daemon.ctl("accounts", "list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = lines[0].split()
    assert header[:4] == ["ID", "EMAIL", "TIER", "STATE"] and "PROJECT" in header and "QUOTA" in header
    # Long values are never cut or folded: the email, id and project each sit whole on the row.
    (row,) = [line for line in lines if acc["id"] in line]
    assert email in row and "FREE" in row and acct.project in row
    assert "disabled: paused for a test" in res.stdout
    # Quota is per group (all Gemini ids share one, Claude and GPT-OSS another: UPSTREAM.md
    # §4.1), so the table shows each group's 5-hour and weekly windows.
    assert "gemini 5h 50% (resets " in res.stdout and "3p 5h 20% (resets " in res.stdout


def test_remove_enable_disable_by_id_and_email(daemon: Daemon, g: FakeGoogle) -> None:
    a = add_fake(g, "ops-a@example.com")
    b = add_fake(g, "ops-b@example.com")
    ida = daemon.admin("POST", "/accounts", json={"refresh_token": a.refresh_token})["account"]["id"]
    idb = daemon.admin("POST", "/accounts", json={"refresh_token": b.refresh_token})["account"]["id"]

    res = daemon.ctl("accounts", "disable", ida)
    assert res.returncode == 0 and "disabled ops-a@example.com" in res.stdout
    res = daemon.ctl("accounts", "disable", "OPS-B@example.com")
    assert res.returncode == 0, res.stderr
    now = listed(daemon)
    assert now["ops-a@example.com"]["state"] == "disabled" and now["ops-b@example.com"]["state"] == "disabled"
    assert now["ops-a@example.com"]["disabled_reason"]
    # The state is on disk, not only in memory.
    assert json.loads((accounts_dir(daemon) / f"{ida}.json").read_bytes())["enabled"] is False

    assert daemon.ctl("accounts", "enable", "ops-a@example.com").returncode == 0
    assert daemon.ctl("accounts", "enable", idb).returncode == 0
    now = listed(daemon)
    assert now["ops-a@example.com"]["state"] == "active" and now["ops-a@example.com"]["disabled_reason"] == ""
    assert now["ops-b@example.com"]["state"] == "active"

    res = daemon.ctl("accounts", "remove", ida)
    assert res.returncode == 0 and "removed ops-a@example.com" in res.stdout
    res = daemon.ctl("accounts", "remove", "ops-b@example.com", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["removed"]["id"] == idb
    now = listed(daemon)
    assert "ops-a@example.com" not in now and "ops-b@example.com" not in now
    assert f"{ida}.json" not in snapshot(daemon) and f"{idb}.json" not in snapshot(daemon)

    # Unknown references: a clear message, exit 2 (bad usage), nothing touched.
    before = snapshot(daemon)
    for cmd in ("remove", "enable", "disable"):
        res = daemon.ctl("accounts", cmd, "nobody@example.com")
        assert res.returncode == 2, res
        assert "no account 'nobody@example.com'" in res.stderr and "agctl accounts list" in res.stderr
    assert snapshot(daemon) == before


def test_refresh_updates_quota(daemon: Daemon, g: FakeGoogle) -> None:
    email = "refresh-quota@example.com"
    acct = add_fake(g, email)
    acc = daemon.admin("POST", "/accounts", json={"refresh_token": acct.refresh_token})["account"]
    assert acc["models"]["gemini-3-flash"]["remaining_fraction"] == 1.0

    # Whole seconds: Google's reset times are RFC3339 seconds, so the minute shown is exact.
    reset = (datetime.now(UTC) + timedelta(minutes=42)).replace(microsecond=0)
    clock = reset.astimezone().strftime("%H:%M")  # the list shows local time
    acct.set_quota("gemini-3-flash", 0.3, reset)
    res = daemon.ctl("accounts", "refresh", acc["id"])
    assert res.returncode == 0, res.stderr
    assert f"refreshed {email}" in res.stdout
    q = listed(daemon)[email]["models"]["gemini-3-flash"]
    assert q["remaining_fraction"] == pytest.approx(0.3)
    assert q["reset_time"] == pytest.approx(reset.timestamp(), abs=2)
    line = quota_line_of(daemon, email, "gemini")
    assert line.startswith("gemini 5h 30% (resets ") and clock in line, line

    # `refresh` with no id: every account, tokens included.
    acct.set_quota("gemini-3-flash", 0.1)
    calls = acct.token_calls
    res = daemon.ctl("accounts", "refresh")
    assert f"ok     {email}" in res.stdout
    assert acct.token_calls == calls + 1
    assert listed(daemon)[email]["models"]["gemini-3-flash"]["remaining_fraction"] == pytest.approx(0.1)

    # Exhausted: 0 (not "no data"), with the time it comes back.
    acct.set_quota("claude-sonnet-4-6", 0.0, reset)
    assert daemon.ctl("accounts", "refresh", email).returncode == 0
    q = listed(daemon)[email]["models"]["claude-sonnet-4-6"]
    assert q["remaining_fraction"] == 0.0
    assert q["reset_time"] == pytest.approx(reset.timestamp(), abs=2)
    line = quota_line_of(daemon, email, "3p")
    assert line.startswith("3p 5h 0% (resets ") and clock in line, line


# ------------------------------------------------------------------ files: corrupt, persistent


def test_corrupt_file_is_reported_and_kept(fake: FakeGoogle, make_daemon: Any) -> None:
    d = make_daemon(base_config(fake, free_port(), proxy={"auto_start": False}), start=False)
    adir = accounts_dir(d)
    adir.mkdir(parents=True)
    garbage = b"{not json at all \x00\xff"
    (adir / "x.json").write_bytes(garbage)
    wrong_shape = b'{"id": "y", "email": 3}'
    (adir / "y.json").write_bytes(wrong_shape)
    d.start()

    res = d.ctl("accounts", "list")
    assert res.returncode == 0
    assert "x.json" in res.stderr and "y.json" in res.stderr and "skipped" in res.stderr
    data = d.ctl_json("accounts", "list")
    assert set(data["broken_files"]) == {"x.json", "y.json"}
    assert data["accounts"] == []
    assert "x.json" in d.log()

    # Adding an account and restarting neither overwrites nor deletes them.
    acct = add_fake(fake, "corrupt-neighbour@example.com")
    d.admin("POST", "/accounts", json={"refresh_token": acct.refresh_token})
    d.stop()
    d.start()
    assert (adir / "x.json").read_bytes() == garbage
    assert (adir / "y.json").read_bytes() == wrong_shape
    data = d.ctl_json("accounts", "list")
    assert [a["email"] for a in data["accounts"]] == ["corrupt-neighbour@example.com"]
    assert set(data["broken_files"]) == {"x.json", "y.json"}


def test_accounts_persist_across_restart(fake: FakeGoogle, make_daemon: Any) -> None:
    d = make_daemon(base_config(fake, free_port(), proxy={"auto_start": False}))
    a = add_fake(fake, "persist-a@example.com", tier="ULTRA", models={"gemini-3-flash": {"fraction": 0.6}})
    b = add_fake(fake, "persist-b@example.com", tier="FREE")
    ida = d.admin("POST", "/accounts", json={"refresh_token": a.refresh_token})["account"]["id"]
    d.admin("POST", "/accounts", json={"refresh_token": b.refresh_token})
    assert d.ctl("accounts", "disable", "persist-b@example.com").returncode == 0
    before = d.ctl_json("accounts", "list")["accounts"]
    token_calls = a.token_calls + b.token_calls

    d.stop()
    d.start()
    after = d.ctl_json("accounts", "list")["accounts"]
    assert after == before
    by_email = {x["email"]: x for x in after}
    assert by_email["persist-a@example.com"]["id"] == ida
    assert by_email["persist-a@example.com"]["models"]["gemini-3-flash"]["remaining_fraction"] == 0.6
    assert by_email["persist-b@example.com"]["state"] == "disabled"
    assert d.status["accounts"] == {"active": 1, "total": 2}
    # Loading does not go to Google (the saved access tokens are still good).
    assert a.token_calls + b.token_calls == token_calls


# ------------------------------------------------------------------ the OAuth client secret


def test_missing_client_secret_says_what_to_set(fake: FakeGoogle, make_daemon: Any) -> None:
    cfg = base_config(fake, free_port(), proxy={"auto_start": False})
    del cfg["oauth"]["client_secret"]
    env = {"AGCTL_NO_OPEN": "1"}
    d = make_daemon(cfg, start=False, env=env)
    d.env.pop(SECRET_ENV, None)
    d.start()
    acct = add_fake(fake, "secretless@example.com")
    for args in (
        ("accounts", "add"),
        ("accounts", "add", "--no-browser"),
        ("accounts", "add", "--refresh-token", acct.refresh_token),
    ):
        res = d.ctl(*args, input="")
        assert res.returncode != 0, res
        msg = res.stderr
        assert "oauth.client_secret" in msg and SECRET_ENV in msg, msg
        assert "secret" in msg and "does not ship" in msg  # why
        assert "http" not in msg.split("agctl:")[0]  # no URL printed before the failure
    assert snapshot(d) == {}
    d.stop()

    # The same config with the secret in the daemon's environment works.
    d.start(extra_env={SECRET_ENV: "test-secret"})
    res = d.ctl("accounts", "add", "--refresh-token", acct.refresh_token)
    assert res.returncode == 0, res.stderr
    assert "added secretless@example.com" in res.stdout
    # The secret is not echoed by `config show`.
    shown = d.ctl("config", "show")
    assert "test-secret" not in shown.stdout


# ------------------------------------------------------------------ tokens never shown


def test_tokens_never_in_output_or_log(daemon: Daemon, g: FakeGoogle) -> None:
    email = "no-leak@example.com"
    acct = add_fake(g, email)
    g.consent_account = email
    run = Running(daemon, "accounts", "add")
    browse(run.url())
    code, out, err = run.finish()
    assert code == 0, err
    acc = listed(daemon)[email]
    daemon.ctl("accounts", "refresh", acc["id"])
    daemon.ctl("accounts", "add", "--refresh-token", acct.refresh_token)

    saved = json.loads((accounts_dir(daemon) / f"{acc['id']}.json").read_bytes())
    secrets_ = {acct.refresh_token, saved["access_token"]}
    assert saved["access_token"].startswith("ya29.")
    # Every access token the fake issued for this account (sign-in, refreshes).
    issued = {t for t, (a, _) in g._tokens.items() if a.email == email}
    secrets_ |= issued
    outputs = [
        out,
        err,
        daemon.ctl("accounts", "list", "--json").stdout,
        daemon.ctl("accounts", "list").stdout,
        daemon.ctl("status", "--json").stdout,
        daemon.ctl("status").stdout,
        daemon.ctl("config", "show", "--json").stdout,
        json.dumps(daemon.admin("GET", "/accounts")),
        daemon.log(),
    ]
    for text in outputs:
        for s in secrets_:
            assert s not in text
            assert s[12:40] not in text
        assert not TOKEN_RE.search(text), TOKEN_RE.search(text)
