"""config.toml and `agctl config` / the proxy key (issue 2).

Typed, validated sets (a bad value names the key and the allowed values,
exit 2, the file untouched byte for byte), secrets hidden in `config show`,
atomic 0600 writes, persistence across a daemon restart, auth changes at
once, port / LAN changes on `agctl restart`, and the first-run key.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from daemon import config as config_mod
from daemon.errors import ConfigError
from tests.conftest import AdminError, Daemon, _bin, free_port
from tests.service.test_daemon import daemon_in_tmp, refused, serving_config, settled

KEY_RE = re.compile(r"^sk-[0-9a-f]{32}$")
AUTH_MODES = "off, strict, all_except_health, auto"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ctl_many(d: Daemon, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent agctl commands side by side (each is a fresh process)."""
    procs = [
        subprocess.Popen(
            [*_bin("agctl"), *args],
            env=d.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    out = []
    for args, p in zip(commands, procs, strict=True):
        stdout, stderr = p.communicate(timeout=60)
        out.append(subprocess.CompletedProcess(args, p.returncode, stdout, stderr))
    return out


@pytest.fixture(scope="module")
def cfgd() -> Iterator[Daemon]:
    """First run: no config.toml at all."""
    with daemon_in_tmp(None) as d:
        settled(d)
        yield d


# ---------------------------------------------------------------- first run, key


def test_first_run_generates_a_key_in_a_private_file(cfgd: Daemon) -> None:
    path = cfgd.home / "config.toml"
    assert _mode(path) == 0o600
    data = msgspec.toml.decode(path.read_bytes())
    assert KEY_RE.match(data["proxy"]["api_key"]), data["proxy"]
    assert cfgd.ctl("config", "get", "proxy.api_key").stdout.strip() == data["proxy"]["api_key"]
    assert "generated a new proxy.api_key" in cfgd.log()


# ---------------------------------------------------------------- validation


BAD_SETS = [
    # (key, value, words the message must hold)
    ("proxy.allow_lan_access", "maybe", ["proxy.allow_lan_access", "true or false"]),
    ("proxy.auto_start", "2", ["proxy.auto_start", "true or false"]),
    ("proxy.port", "abc", ["proxy.port", "whole number"]),
    ("proxy.port", "70000", ["proxy.port", "1..65535"]),
    ("proxy.port", "0", ["proxy.port", "1..65535"]),
    ("proxy.auth_mode", "bogus", ["proxy.auth_mode", AUTH_MODES]),
    ("proxy.auth_mode", "OFF", ["proxy.auth_mode", AUTH_MODES]),
    ("scheduling.mode", "random", ["scheduling.mode", "balance, sticky, fixed"]),
    ("zai.dispatch_mode", "always", ["zai.dispatch_mode", "off, exclusive, pooled, fallback"]),
    ("proxy.api_key", "bad", ["proxy.api_key", "sk-", "10"]),
    ("proxy.api_key", "sk-short", ["proxy.api_key", "sk-", "10"]),
    ("proxy.api_key", "", ["proxy.api_key", "sk-"]),
    ("proxy.request_timeout", "0", ["proxy.request_timeout", "> 0"]),
    ("proxy.upstream_proxy", "ftp://proxy:21", ["proxy.upstream_proxy", "socks5://"]),
    ("upstream.endpoints", "", ["upstream.endpoints", "at least one"]),
    ("upstream.endpoints", "not-a-url", ["upstream.endpoints", "http(s)"]),
    ("zai.models", "[1, 2]", ["zai.models", "JSON object"]),
    ("proxy.nope", "1", ["unknown config key 'proxy.nope'", "proxy.port", "proxy.auth_mode"]),
    ("nope.port", "1", ["unknown config key 'nope.port'", "known keys"]),
    ("proxy", "1", ["unknown config key 'proxy'"]),
]


# Through agctl: one of each kind (the exit code and the message reach the user).
CLI_BAD = {
    ("proxy.allow_lan_access", "maybe"),
    ("proxy.port", "abc"),
    ("proxy.auth_mode", "bogus"),
    ("proxy.api_key", "bad"),
    ("proxy.nope", "1"),
}


def test_bad_values_are_rejected_and_the_file_is_untouched(cfgd: Daemon) -> None:
    path = cfgd.home / "config.toml"
    before, inode = path.read_bytes(), path.stat().st_ino
    config_before = cfgd.admin("GET", "/config", params={"secrets": "true"})
    cli = [(k, v, w) for k, v, w in BAD_SETS if (k, v) in CLI_BAD]
    results = ctl_many(cfgd, [["config", "set", key, value] for key, value, _ in cli])
    problems = []
    for (key, value, words), res in zip(cli, results, strict=True):
        if res.returncode != 2:
            problems.append(f"agctl {key}={value!r}: exit {res.returncode}: {res.stdout}{res.stderr}")
        for word in words:
            if word not in res.stderr:
                problems.append(f"agctl {key}={value!r}: {word!r} not in {res.stderr.strip()!r}")
    for key, value, words in BAD_SETS:  # all of them through the admin API agctl uses
        try:
            cfgd.admin("PUT", f"/config/{key}", json={"value": value})
        except AdminError as exc:
            err = exc.body["error"]
            if (exc.status, err["kind"]) != (400, "config"):
                problems.append(f"{key}={value!r}: {exc.status} {err}")
            problems += [
                f"{key}={value!r}: {w!r} not in {err['message']!r}" for w in words if w not in err["message"]
            ]
        else:
            problems.append(f"{key}={value!r} was accepted")
    assert not problems, "\n".join(problems)
    # Untouched: same bytes, same inode (no rewrite), same running config.
    assert path.read_bytes() == before and path.stat().st_ino == inode
    assert cfgd.admin("GET", "/config", params={"secrets": "true"}) == config_before


def test_bad_usage_exits_2_with_json_error(cfgd: Daemon) -> None:
    path = cfgd.home / "config.toml"
    before = path.read_bytes()
    bad_json, unknown_get, missing_arg, bad_cmd = ctl_many(
        cfgd,
        [
            ["config", "set", "proxy.auth_mode", "bogus", "--json"],
            ["config", "get", "proxy.nope"],
            ["config", "set", "proxy.port"],
            ["config", "frobnicate"],
        ],
    )
    assert bad_json.returncode == 2
    err = json.loads(bad_json.stdout)["error"]
    assert err["kind"] == "config" and "proxy.auth_mode" in err["message"] and AUTH_MODES in err["message"]
    assert unknown_get.returncode == 2 and "unknown config key 'proxy.nope'" in unknown_get.stderr
    assert missing_arg.returncode == 2 and "usage:" in missing_arg.stderr
    assert bad_cmd.returncode == 2
    assert path.read_bytes() == before


# ---------------------------------------------------------------- typed get / set, show


def test_set_and_get_are_typed(cfgd: Daemon) -> None:
    sets = [
        ("proxy.auto_start", "off", False, "false"),
        ("proxy.request_timeout", "120", 120, "120"),
        ("scheduling.mode", "sticky", "sticky", "sticky"),
        (
            "upstream.endpoints",
            "http://127.0.0.1:9/a, http://127.0.0.1:9/b",
            ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
            '["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]',
        ),
        ("models.gpt-4o", "gemini-3-flash", "gemini-3-flash", "gemini-3-flash"),
        ("zai.models", '{"opus": "glm-5"}', {"opus": "glm-5"}, '{"opus": "glm-5"}'),
    ]
    res = cfgd.ctl("config", "set", "proxy.auto_start", "off")
    assert (res.returncode, res.stdout.strip()) == (0, "proxy.auto_start = false")
    for key, raw, value, _ in sets[1:]:
        assert cfgd.admin("PUT", f"/config/{key}", json={"value": raw})["value"] == value
    for key, _, value, _ in sets:
        assert cfgd.admin("GET", f"/config/{key}")["value"] == value, key
    shown = [sets[0], sets[3], sets[5]]  # bool, list, dict as agctl prints them
    gets = ctl_many(
        cfgd,
        [["config", "get", key] for key, *_ in shown]
        + [
            ["config", "get", "proxy.auto_start", "--json"],
            ["config", "get", "proxy.request_timeout", "--json"],
        ],
    )
    for (key, _, _, text), as_text in zip(shown, gets, strict=False):
        assert as_text.stdout.strip() == text, key
    assert json.loads(gets[-2].stdout) == {"key": "proxy.auto_start", "value": False}
    assert json.loads(gets[-1].stdout) == {"key": "proxy.request_timeout", "value": 120}
    data = msgspec.toml.decode((cfgd.home / "config.toml").read_bytes())
    assert data["proxy"]["auto_start"] is False and data["proxy"]["request_timeout"] == 120
    assert data["models"]["gpt-4o"] == "gemini-3-flash"
    res = cfgd.ctl("config", "set", "models.gpt-4o", "")  # "" removes a mapping
    assert (res.returncode, res.stdout.strip()) == (0, "models.gpt-4o removed"), res.stderr
    assert "gpt-4o" not in cfgd.admin("GET", "/config")["models"]
    assert "gpt-4o" not in msgspec.toml.decode((cfgd.home / "config.toml").read_bytes())["models"]


def test_show_hides_secrets_unless_asked(cfgd: Daemon) -> None:
    secrets = {
        "zai.api_key": "sk-zai-very-secret-123456",
        "oauth.client_secret": "GOCSPX-very-secret-987",
    }
    for key, value in secrets.items():
        assert cfgd.admin("PUT", f"/config/{key}", json={"value": value})["value"] == "(hidden)"
    proxy_key = cfgd.api_key
    text, as_json, text_all, json_all = ctl_many(
        cfgd,
        [
            ["config", "show"],
            ["config", "show", "--json"],
            ["config", "show", "--secrets"],
            ["config", "show", "--secrets", "--json"],
        ],
    )
    for res in (text, as_json):
        assert res.returncode == 0
        for value in (*secrets.values(), proxy_key):
            assert value not in res.stdout
    shown = json.loads(as_json.stdout)
    assert shown["proxy"]["api_key"].startswith("sk-") and shown["proxy"]["api_key"].endswith("…")
    assert shown["proxy"]["port"] == cfgd.status["proxy"]["port"]  # the rest is shown as is
    assert "[proxy]" in text.stdout and "auth_mode" in text.stdout
    for res in (text_all, json_all):
        assert res.returncode == 0
        for value in (*secrets.values(), proxy_key):
            assert value in res.stdout
    full = json.loads(json_all.stdout)
    assert (full["zai"]["api_key"], full["proxy"]["api_key"]) == (secrets["zai.api_key"], proxy_key)


def test_writes_are_atomic_and_private(cfgd: Daemon) -> None:
    path = cfgd.home / "config.toml"
    os.chmod(path, 0o644)  # e.g. the user edited it with a loose umask
    inode = path.stat().st_ino
    cfgd.admin("PUT", "/config/proxy.request_timeout", json={"value": "301"})
    assert _mode(path) == 0o600
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".config.toml.")] == []


# ---------------------------------------------------------------- persistence, live changes


def test_key_is_added_and_settings_persist_across_a_daemon_restart(make_daemon: Any) -> None:
    d = make_daemon(start=False)
    d.write_config({"proxy": {"port": free_port(), "auto_start": False}})  # a user's file, no key
    d.start()
    data = msgspec.toml.decode((d.home / "config.toml").read_bytes())
    api_key = data["proxy"]["api_key"]
    assert KEY_RE.match(api_key)
    assert data["proxy"]["auto_start"] is False  # the user's values stay
    assert _mode(d.home / "config.toml") == 0o600

    new_port = free_port()
    wanted = {
        "proxy.auth_mode": "strict",
        "proxy.port": new_port,
        "proxy.allow_lan_access": True,
        "scheduling.mode": "fixed",
        "zai.dispatch_mode": "fallback",
        "models.claude-*": "claude-sonnet-4-5",
    }
    for key, value in wanted.items():
        raw = str(value).lower() if isinstance(value, bool) else str(value)
        d.admin("PUT", f"/config/{key}", json={"value": raw})
    assert d.stop() == 0

    d.start()
    for key, value in wanted.items():
        assert d.admin("GET", f"/config/{key}")["value"] == value, key
    assert d.api_key == api_key  # not regenerated
    p = d.status["proxy"]
    assert (p["port"], p["host"], p["auth_mode"]) == (new_port, "0.0.0.0", "strict")


def test_auth_applies_at_once_port_and_lan_on_restart(make_daemon: Any) -> None:
    port = free_port()
    d = make_daemon(serving_config(port))
    assert settled(d)["proxy"]["state"] == "running"
    url = f"http://127.0.0.1:{port}"
    key = d.api_key
    with httpx.Client(timeout=10) as c:
        assert c.get(f"{url}/v1/models").status_code == 200  # auto without LAN: off
        assert c.get(f"{url}/healthz").status_code == 200

        res = d.ctl("config", "set", "proxy.auth_mode", "strict")
        assert res.returncode == 0 and "agctl restart" not in res.stdout
        assert c.get(f"{url}/healthz").status_code == 401  # at once, on the open connection too
        assert c.get(f"{url}/healthz", headers={"x-api-key": key}).status_code == 200
        p = d.status["proxy"]
        assert (p["auth_mode"], p["restart_pending"]) == ("strict", False)
        d.admin("PUT", "/config/proxy.auth_mode", json={"value": "all_except_health"})
        assert c.get(f"{url}/healthz").status_code == 200
        assert c.get(f"{url}/v1/models").status_code == 401

    new_port = free_port()
    res = d.ctl("config", "set", "proxy.port", str(new_port))
    assert res.returncode == 0
    assert "agctl restart" in res.stdout
    p = d.status["proxy"]
    assert (p["restart_pending"], p["port"], p["base_url"]) == (True, port, url)
    assert "run `agctl restart`" in d.ctl("status").stdout
    assert httpx.get(f"{url}/healthz").status_code == 200  # still on the old port
    assert refused(new_port)

    # back to the bound port: nothing pending any more
    d.admin("PUT", "/config/proxy.port", json={"value": str(port)})
    assert d.status["proxy"]["restart_pending"] is False
    d.admin("PUT", "/config/proxy.port", json={"value": str(new_port)})
    assert d.status["proxy"]["restart_pending"] is True

    assert d.ctl("restart").returncode == 0
    p = d.status["proxy"]
    assert (p["restart_pending"], p["port"], p["base_url"]) == (
        False,
        new_port,
        f"http://127.0.0.1:{new_port}",
    )
    assert httpx.get(f"http://127.0.0.1:{new_port}/healthz").status_code == 200
    assert refused(port)

    # a stopped proxy has nothing to restart: a port change is just saved
    d.admin("POST", "/proxy/stop")
    assert d.admin("PUT", "/config/proxy.port", json={"value": str(port)})["restart_pending"] is False
    assert d.status["proxy"]["restart_pending"] is False


def test_a_broken_config_file_stops_the_daemon_with_a_clear_message(make_daemon: Any) -> None:
    d = make_daemon(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "config.toml").write_text('[proxy]\nauth_mode = "sometimes"\n')
    d.start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=20) == 1
    assert "config.toml" in d.log() and "auth_mode" in d.log()
    assert "Traceback" not in d.log()
    assert not d.socket.exists()


# ---------------------------------------------------------------- units


def test_with_value_coerces_and_validates() -> None:
    cfg = config_mod.Config()
    cfg.proxy.api_key = "sk-unit-0123456789"
    assert config_mod.with_value(cfg, "proxy.port", "9000").proxy.port == 9000
    assert config_mod.with_value(cfg, "proxy.allow_lan_access", "yes").proxy.allow_lan_access is True
    assert config_mod.with_value(cfg, "zai.models", '{"opus": "glm-5"}').zai.models == {"opus": "glm-5"}
    assert cfg.proxy.port == 8045  # with_value never mutates
    with pytest.raises(ConfigError) as exc:
        config_mod.with_value(cfg, "proxy.auth_mode", "nope")
    assert exc.value.param == "proxy.auth_mode"
    with pytest.raises(ConfigError) as exc:
        config_mod.with_value(cfg, "proxy.port", "65536")
    assert exc.value.param == "proxy.port"


def test_effective_auth_mode_and_bind_host() -> None:
    cfg = config_mod.Config()
    assert (cfg.effective_auth_mode(), cfg.bind_host()) == ("off", "127.0.0.1")
    cfg.proxy.allow_lan_access = True
    assert (cfg.effective_auth_mode(), cfg.bind_host()) == ("all_except_health", "0.0.0.0")
    cfg.proxy.auth_mode = "strict"
    assert cfg.effective_auth_mode() == "strict"
    cfg.proxy.auth_mode = "off"
    assert cfg.effective_auth_mode() == "off"  # an explicit choice wins, even with LAN


def test_load_rejects_unknown_keys_and_generates_a_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    cfg, changed = config_mod.load(path)
    assert changed == ["generated a new proxy.api_key"] and KEY_RE.match(cfg.proxy.api_key)
    path.write_text("[proxy]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        config_mod.load(path)
    path.write_text('[proxy]\napi_key = "sk-x"\n')
    with pytest.raises(ConfigError, match="proxy.api_key"):
        config_mod.load(path)


def test_load_names_each_default_it_replaced(tmp_path: Path) -> None:
    """A file written by a late-2025 release holds that release's defaults (a refused
    User-Agent, the legacy sandbox host first): they are replaced, and the log line the
    daemon writes says which (not "a key or defaults")."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[proxy]\napi_key = "sk-good-0123456789"\n'
        '[upstream]\nuser_agent = "antigravity/1.15.8 linux/amd64"\nendpoints = ['
        '"https://daily-cloudcode-pa.sandbox.googleapis.com", '
        '"https://daily-cloudcode-pa.googleapis.com", "https://cloudcode-pa.googleapis.com"]\n'
    )
    cfg, changes = config_mod.load(path)
    assert changes == [
        "replaced the old default upstream.user_agent",
        "replaced the old default upstream.endpoints",
    ]
    assert cfg.upstream.user_agent == "" and "sandbox" not in " ".join(cfg.upstream.endpoints)
    config_mod.save(cfg, path)
    assert config_mod.load(path)[1] == []  # saved: nothing left to change
