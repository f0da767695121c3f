"""`agctl setup claude|codex|gemini|opencode`: each client's files before,
after and after --undo (byte for byte), the dry-run diff, refusals; and the
real agctl against a daemon whose pool serves the fake Google's models."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ctl import setup_clients as sc
from tests.conftest import pooled_daemon
from tests.fakes.google import FakeGoogle

KEY = "sk-test-setup-0123456789"
T = sc.Target(
    base_url="http://127.0.0.1:8045",
    api_key=KEY,
    models=(
        "gemini-3-flash",
        "gemini-3-pro-high",
        "gemini-3-pro-low",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-thinking",
        "claude-opus-4-5-thinking",
    ),
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("ANTIGRAVITY_HOME", str(tmp_path / "ag"))
    for var in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    yield h


def setup(client: str, t: sc.Target = T) -> list[Path]:
    changes = sc.plan(client, t)
    sc.apply(client, changes)
    return [p for p, _, _ in changes]


def undo(client: str) -> None:
    sc.undo(client, sc.undo_plan(client))


# ------------------------------------------------------------------ Claude Code

CLAUDE_BEFORE = b"""{
    "model": "opus",
    "env": {
        "FOO": "bar"
    },
    "permissions": {"allow": ["Bash(ls)"]}
}
"""

CLAUDE_AFTER = b"""{
    "model": "opus",
    "env": {
        "FOO": "bar",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8045",
        "ANTHROPIC_AUTH_TOKEN": "sk-test-setup-0123456789",
        "ANTHROPIC_MODEL": "claude-opus-4-5-thinking",
        "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4-5-thinking",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-sonnet-4-5"
    },
    "permissions": {
        "allow": [
            "Bash(ls)"
        ]
    }
}
"""


def test_claude_before_after_undo(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_bytes(CLAUDE_BEFORE)
    path.chmod(0o644)
    assert setup("claude") == [path]
    assert path.read_bytes() == CLAUDE_AFTER
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the user's mode is kept
    # Setup again with another model: undo still goes back to the very first state.
    setup("claude", sc.Target(T.base_url, KEY, T.models, model="gemini-3-flash"))
    assert json.loads(path.read_bytes())["env"]["ANTHROPIC_MODEL"] == "gemini-3-flash"
    undo("claude")
    assert path.read_bytes() == CLAUDE_BEFORE
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not (home.parent / "ag" / "data" / "client-setup" / "claude.json").exists()
    with pytest.raises(sc.SetupError, match="nothing to undo"):
        sc.undo_plan("claude")


def test_claude_created_file_is_removed_by_undo(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    setup("claude")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file holding a key
    assert json.loads(path.read_bytes())["env"]["ANTHROPIC_BASE_URL"] == T.base_url
    undo("claude")
    assert not path.exists()


def test_existing_api_key_is_pointed_at_the_proxy(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text('{"env": {"ANTHROPIC_API_KEY": "sk-ant-real"}}')
    setup("claude")
    env = json.loads(path.read_bytes())["env"]
    assert env["ANTHROPIC_API_KEY"] == KEY and env["ANTHROPIC_AUTH_TOKEN"] == KEY


@pytest.mark.parametrize(
    ("client", "rel", "bad"),
    [
        ("claude", ".claude/settings.json", b'{"env": {"A": 1},,}'),
        ("claude", ".claude/settings.json", b'{"env": "not an object"}'),
        ("claude", ".claude/settings.json", b"[1, 2]"),
        ("codex", ".codex/config.toml", b'model = "x"\nmodel = "y"\n'),
        ("gemini", ".gemini/settings.json", b"{ // comment\n}"),
        ("opencode", ".config/opencode/opencode.json", b'{"provider": []}'),
    ],
)
def test_malformed_file_is_never_overwritten(home: Path, client: str, rel: str, bad: bytes) -> None:
    path = home / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(bad)
    with pytest.raises(sc.SetupError) as info:
        sc.plan(client, T)
    assert str(path) in info.value.message and "left as it is" in info.value.message
    assert path.read_bytes() == bad
    assert not (home.parent / "ag" / "data" / "client-setup").exists()


def test_undo_refuses_after_the_user_edited_the_file(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_bytes(CLAUDE_BEFORE)
    setup("claude")
    edited = path.read_bytes().replace(b'"FOO": "bar"', b'"FOO": "baz"')
    path.write_bytes(edited)
    with pytest.raises(sc.SetupError, match="changed after") as info:
        sc.undo_plan("claude")
    assert "claude-0-settings.json.orig" in info.value.message
    assert path.read_bytes() == edited


# ------------------------------------------------------------------ Codex

CODEX_BEFORE = b"""# my codex config
model = "gpt-5"  # old
approval_policy = "on-request"

# providers
[model_providers.other]
name = "other"
base_url = "https://example.com/v1"

[mcp_servers.docs]
command = "docs-mcp"
args = ["--stdio"]
"""

CODEX_AFTER = b"""# my codex config
model = "gemini-3-pro-high"
approval_policy = "on-request"
model_provider = "antigravity"

# providers
[model_providers.other]
name = "other"
base_url = "https://example.com/v1"

[mcp_servers.docs]
command = "docs-mcp"
args = ["--stdio"]

[model_providers.antigravity]
name = "Antigravity (local proxy)"
base_url = "http://127.0.0.1:8045/v1"
env_key = "ANTIGRAVITY_API_KEY"
wire_api = "responses"
"""


def test_codex_before_after_undo(home: Path) -> None:
    path = home / ".codex" / "config.toml"
    path.parent.mkdir()
    path.write_bytes(CODEX_BEFORE)
    setup("codex")
    assert path.read_bytes() == CODEX_AFTER
    # Setting up again edits the table in place (another port, say).
    setup("codex", sc.Target("http://127.0.0.1:9000", KEY, T.models))
    data = tomllib.loads(path.read_text())
    assert data["model_providers"]["antigravity"]["base_url"] == "http://127.0.0.1:9000/v1"
    assert path.read_text().count("[model_providers.antigravity]") == 1
    undo("codex")
    assert path.read_bytes() == CODEX_BEFORE


def test_codex_new_file_and_an_unusual_layout(home: Path) -> None:
    path = home / ".codex" / "config.toml"
    setup("codex")
    data = tomllib.loads(path.read_text())
    assert data["model_provider"] == "antigravity" and data["model"] == "gemini-3-pro-high"
    assert data["model_providers"]["antigravity"]["wire_api"] == "responses"
    undo("codex")
    assert not path.exists()
    inline = b'model_providers = { antigravity = { name = "mine" } }\n'
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(inline)
    with pytest.raises(sc.SetupError, match="by hand") as info:
        sc.plan("codex", T)
    assert 'wire_api = "responses"' in info.value.message
    assert path.read_bytes() == inline


# ------------------------------------------------------------------ Gemini CLI and opencode


def test_gemini_two_files(home: Path) -> None:
    settings = home / ".gemini" / "settings.json"
    env = home / ".gemini" / ".env"
    settings.parent.mkdir()
    before_settings = b'{"theme": "Dracula", "security": {"folderTrust": {"enabled": true}}}'
    before_env = b"FOO=1\nexport GEMINI_API_KEY=old\n"
    settings.write_bytes(before_settings)
    env.write_bytes(before_env)
    setup("gemini", sc.Target(T.base_url, KEY, T.models, model="gemini-3-flash"))
    assert json.loads(settings.read_bytes()) == {
        "theme": "Dracula",
        "security": {"folderTrust": {"enabled": True}, "auth": {"selectedType": "gemini-api-key"}},
        "model": {"name": "gemini-3-flash"},
    }
    assert env.read_bytes() == (
        f"FOO=1\nGEMINI_API_KEY={KEY}\nGOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8045\n".encode()
    )
    undo("gemini")
    assert settings.read_bytes() == before_settings and env.read_bytes() == before_env


def test_opencode_provider(home: Path) -> None:
    path = home / ".config" / "opencode" / "opencode.json"
    path.parent.mkdir(parents=True)
    before = b'{\n  "theme": "tokyonight",\n  "provider": {"other": {"npm": "x"}}\n}\n'
    path.write_bytes(before)
    setup("opencode")
    data = json.loads(path.read_bytes())
    prov = data["provider"]["antigravity"]
    assert data["theme"] == "tokyonight" and data["provider"]["other"] == {"npm": "x"}
    assert prov["npm"] == "@ai-sdk/openai-compatible"
    assert prov["options"] == {"baseURL": "http://127.0.0.1:8045/v1", "apiKey": KEY}
    assert set(prov["models"]) == set(T.models)
    assert data["model"] == "antigravity/gemini-3-pro-high"
    undo("opencode")
    assert path.read_bytes() == before


def test_export_lines() -> None:
    lines = sc.export_lines("claude", T)
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:8045" in lines
    assert f"export ANTHROPIC_AUTH_TOKEN={KEY}" in lines
    assert sc.export_lines("gemini", T)[:2] == [
        f"export GEMINI_API_KEY={KEY}",
        "export GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:8045",
    ]
    assert sc.export_lines("codex", T)[0] == f"export ANTIGRAVITY_API_KEY={KEY}"


def test_model_choice_without_claude() -> None:
    t = sc.Target(
        "http://x", KEY, ("gemini-3-flash", "gemini-2.5-pro", "gemini-3-pro-low", "gemini-3-pro-high")
    )
    got = sc.claude_models(t)
    assert got["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "gemini-3-pro-high"
    assert got["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "gemini-3-flash"
    assert sc.claude_models(sc.Target("http://x", KEY, ())) == {}


# ------------------------------------------------------------------ the real agctl


def test_agctl_setup_end_to_end(fake: FakeGoogle, tmp_path: Path) -> None:
    fake.add_account(email="setup-e2e@example.com")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    with pooled_daemon(fake, ["setup-e2e@example.com"], "ag-setup-", env=env) as d:
        for var in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_CONFIG_HOME"):
            d.env.pop(var, None)
        key = d.api_key
        path = home / ".claude" / "settings.json"
        res = d.ctl("setup", "claude", "--dry-run")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"--- /dev/null\n+++ {path}\n")
        assert f'+    "ANTHROPIC_BASE_URL": "{d.base_url}"' in res.stdout
        assert key not in res.stdout and not path.exists()
        res = d.ctl("setup", "claude", "--print")
        assert f"export ANTHROPIC_AUTH_TOKEN={key}" in res.stdout.splitlines()
        # --json: the same, as JSON (scripts read it).
        res = d.ctl("--json", "setup", "claude", "--dry-run")
        assert res.returncode == 0, res.stderr
        planned = json.loads(res.stdout)
        assert [c["path"] for c in planned["changes"]] == [str(path)]
        assert f'"ANTHROPIC_BASE_URL": "{d.base_url}"' in planned["changes"][0]["diff"]
        assert key not in res.stdout and not path.exists()
        res = d.ctl("--json", "setup", "claude", "--print")
        assert json.loads(res.stdout)["env"]["ANTHROPIC_AUTH_TOKEN"] == key
        res = d.ctl("setup", "claude")
        assert res.returncode == 0, res.stderr
        env_block = json.loads(path.read_bytes())["env"]
        assert env_block["ANTHROPIC_BASE_URL"] == d.base_url and env_block["ANTHROPIC_AUTH_TOKEN"] == key
        listed = httpx.get(f"{d.base_url}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
        served = {m["id"] for m in listed["data"]}
        for name in sc.CLAUDE_MODEL_KEYS:
            assert env_block[name] in served, (name, env_block[name])
        assert key not in res.stdout + res.stderr
        res = d.ctl("--json", "setup", "claude", "--undo", "--dry-run")
        undo_plan = json.loads(res.stdout)
        assert undo_plan["undo"] is True and [c["path"] for c in undo_plan["changes"]] == [str(path)]
        assert key not in res.stdout
        assert path.exists()
        res = d.ctl("setup", "claude", "--undo")
        assert res.returncode == 0, res.stderr
        assert not path.exists()
        # A malformed file: named, untouched, exit 1.
        path.write_bytes(b"{oops")
        res = d.ctl("setup", "claude")
        assert res.returncode == 1 and str(path) in res.stderr
        assert path.read_bytes() == b"{oops"
        os.unlink(path)


def test_diffs_mask_every_secret_but_keep_names() -> None:
    t = sc.Target(base_url="http://127.0.0.1:8045", api_key="sk-proxykey0123456789")
    diff = "\n".join(
        [
            '+    "ANTHROPIC_AUTH_TOKEN": "sk-proxykey0123456789",',
            "-GEMINI_API_KEY=AIzaSyD0123456789abcdefghijklmnopqrs",
            '     "GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz",',
            '+env_key = "ANTIGRAVITY_API_KEY"',
            '+  "apiKey": "{env:ANTIGRAVITY_API_KEY}"',
            '+    "ANTHROPIC_BASE_URL": "http://127.0.0.1:8045",',
        ]
    )
    out = sc._mask(diff, t)
    for secret in (
        "sk-proxykey0123456789",
        "AIzaSyD0123456789abcdefghijklmnopqrs",
        "ghp_abcdefghijklmnopqrstuvwxyz",
    ):
        assert secret not in out
    assert 'env_key = "ANTIGRAVITY_API_KEY"' in out and "{env:ANTIGRAVITY_API_KEY}" in out
    assert '"ANTHROPIC_BASE_URL": "http://127.0.0.1:8045"' in out
