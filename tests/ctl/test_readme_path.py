"""The README's "Five minutes to a working client", run as written (issue 15).

The commands are read from the README's code block, so this test follows
the text: a step it does not know fails the test until it is taught here.
The world is synthetic and local: a temp HOME with an agy binary that holds
the OAuth client (a made-up secret the fake Google accepts) and agy's token
file with a login; a fake keyring with no entry; the daemon's config points
at the fake Google. The install steps are skipped (the test runs from an
installed package), `agctl oauth detect` gets `--yes` (the answer a person
types at its prompt; stdin is not a terminal here), and `claude` is stood in
for by the request Claude Code sends, built from the settings that
`agctl setup claude` wrote.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.config import ANTIGRAVITY_CLIENT_ID
from tests.conftest import ROOT, Daemon, base_config, free_port
from tests.fakes.google import FakeGoogle

SECTION = "## Five minutes to a working client"
# A secret in the shape of Google's installed-app secrets; made up, known only to the fake.
SECRET = "GOCSPX-readmePathTest0123456789ab"
EMAIL = "readme-path@example.com"


def five_minute_commands(readme: str) -> list[str]:
    """The commands of the section's first code block (indented 4 spaces),
    comments and blank lines dropped."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    body = readme[start : end if end > 0 else None]
    block = re.search(r"\n\n((?: {4}.*\n|\n)+)", body)
    assert block is not None, "the five-minute section has no code block"
    commands = []
    for line in block.group(1).splitlines():
        command = re.sub(r"\s+#.*$", "", line.strip())
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def test_the_section_names_the_steps_the_issue_asks_for() -> None:
    commands = five_minute_commands((ROOT / "README.md").read_text())
    for step in ("agctl oauth detect", "agctl accounts import", "agctl setup claude", "agctl doctor"):
        assert step in commands, commands
    assert commands.index("agctl setup claude") < commands.index("agctl doctor")


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle(client_secret=SECRET) as f:
        yield f


@pytest.fixture
def world() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ag-rp-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def synthetic_install(home: Path, refresh_token: str) -> None:
    """agy as a user has it: the binary (holding the OAuth client among other
    bytes) in ~/.local/bin, and its token file after a sign-in."""
    agy = home / ".local" / "bin" / "agy"
    agy.parent.mkdir(parents=True)
    blob = (
        b"\x7fELF" + b"\0" * 512 + ANTIGRAVITY_CLIENT_ID.encode() + b"\0" * 40 + SECRET.encode() + b"\0" * 64
    )
    agy.write_bytes(blob)
    agy.chmod(0o755)
    token = home / ".gemini" / "antigravity-cli" / "antigravity-oauth-token"
    token.parent.mkdir(parents=True)
    token.write_text(
        json.dumps(
            {
                "token": {
                    "access_token": "ya29.stale",
                    "token_type": "Bearer",
                    "refresh_token": refresh_token,
                    "expiry": "2026-09-18T10:11:12.123456789Z",
                },
                "auth_method": "consumer",
            }
        )
    )


def test_readme_five_minute_path(google: FakeGoogle, world: Path) -> None:
    account = google.add_account(email=EMAIL)
    home = world / "user"
    synthetic_install(home, account.refresh_token)
    port = free_port()
    d = Daemon(
        world / "ag",
        env={
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",  # no real agy or antigravity install is searched
            "PYTHON_KEYRING_BACKEND": "tests.fakes.keyring_backend.FileKeyring",
            "PYTHONPATH": str(ROOT),
            "AG_FAKE_KEYRING": str(world / "keyring.json"),  # absent: an empty keyring
        },
    )
    for var in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_CONFIG_HOME", "ANTIGRAVITY_OAUTH_CLIENT_SECRET"):
        d.env.pop(var, None)
    # Only the test's wiring: Google is the fake. No OAuth secret: `oauth detect` finds it.
    cfg = base_config(google, port)
    del cfg["oauth"]["client_secret"]
    d.write_config(cfg)
    outputs: list[str] = []

    def agctl(command: str, *extra: str) -> str:
        args = shlex.split(command)[1:]
        res = d.ctl(*args, *extra)
        outputs.append(res.stdout + res.stderr)
        assert res.returncode == 0, f"`{command}` -> {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def start_daemon(_: str) -> None:
        d.start()

    def oauth_detect(command: str) -> None:
        out = agctl(command, "--yes")
        assert str(home / ".local" / "bin" / "agy") in out and "saved" in out
        assert d.status["oauth"]["secret_source"] == "config"

    def accounts_import(command: str) -> None:
        out = agctl(command)
        assert "imported from" in out and EMAIL in out

    def doctor(command: str) -> None:
        out = agctl(command)
        lines = out.strip().splitlines()
        assert lines[-1] == "all well", out
        assert all(x.startswith("ok    ") for x in lines[:-1]), out
        assert any(x.startswith(f"ok    account {EMAIL}: token refreshed") for x in lines)

    def claude(_: str) -> None:
        """What Claude Code sends, from the settings `agctl setup claude` wrote."""
        env = json.loads((home / ".claude" / "settings.json").read_text())["env"]
        resp = httpx.post(
            env["ANTHROPIC_BASE_URL"] + "/v1/messages",
            headers={
                "authorization": f"Bearer {env['ANTHROPIC_AUTH_TOKEN']}",
                "anthropic-version": "2023-06-01",
            },
            json={
                "model": env["ANTHROPIC_MODEL"],
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["type"] == "message"

    def skip(_: str) -> None:
        pass

    steps: dict[str, Callable[[str], Any]] = {
        # Installing: this test runs from an installed package already.
        "python3 -m venv .venv && .venv/bin/pip install '.[keyring]'": skip,
        ".venv/bin/antigravityd &": start_daemon,
        "source .venv/bin/activate": skip,
        "agctl oauth detect": oauth_detect,
        "agctl accounts import": accounts_import,
        "agctl start": agctl,
        "agctl setup claude": agctl,
        "agctl doctor": doctor,
        "claude": claude,
    }
    commands = five_minute_commands((ROOT / "README.md").read_text())
    unknown = [c for c in commands if c not in steps]
    assert not unknown, f"README steps this test does not know: {unknown}; teach it them"
    try:
        for command in commands:
            steps[command](command)
        blob = "\n".join(outputs)
        for secret in (SECRET, account.refresh_token, d.api_key):
            assert secret not in blob
    finally:
        d.stop()
