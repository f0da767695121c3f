"""The real coding CLIs against the daemon (CLIENTS.md): Claude Code, Codex
and the Gemini CLI, each driving a tool loop through the proxy to the fake
Google, which checks thought signatures like the real upstream.

They are npm packages: `.ci/run` installs them into `.clients/`; locally run
`npm install --prefix .clients @anthropic-ai/claude-code @openai/codex
@google/gemini-cli`, or point AG_CLIENTS_BIN at a `node_modules/.bin`. The
tests skip when a client is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Daemon
from tests.fakes.google import FakeGoogle, Reply

TIMEOUT = 180


def client_bin(name: str) -> str | None:
    for d in (os.environ.get("AG_CLIENTS_BIN"), str(ROOT / ".clients" / "node_modules" / ".bin")):
        if d and (Path(d) / name).exists():
            return str(Path(d) / name)
    return shutil.which(name)


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OPENAI_", "GEMINI_", "GOOGLE_"))
    }
    return subprocess.run(
        argv,
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def generate_calls(fake: FakeGoogle) -> list[Any]:
    return [
        c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent") and c.status == 200
    ]


def function_responses(call: Any) -> list[dict[str, Any]]:
    return [
        p["functionResponse"]
        for c in call.body["request"]["contents"]
        for p in c.get("parts", [])
        if "functionResponse" in p
    ]


@pytest.fixture
def workdir(short_tmp: Path) -> Path:
    d = short_tmp / "work"
    d.mkdir()
    return d


def test_claude_code_tool_loop_with_thinking(proxy: Daemon, fake: FakeGoogle, workdir: Path) -> None:
    exe = client_bin("claude")
    if not exe:
        pytest.skip("Claude Code is not installed (npm install @anthropic-ai/claude-code)")
    home = workdir / "home"
    home.mkdir()
    # Claude Code's side requests (session title, checks) carry no tools.
    fake.unscripted_when = lambda req: not req.get("tools")
    fake.script(
        [
            Reply.function_call(
                "Bash",
                {"command": "echo proxied-$((40+2))", "description": "print a marker"},
                thought="I should run the command.",
            ),
            Reply.thinking("The command printed the marker.", then_text="The command printed proxied-42."),
        ]
    )
    res = run(
        [
            exe,
            "-p",
            "Run: echo proxied-$((40+2)) and tell me what it printed",
            "--dangerously-skip-permissions",
        ],
        {
            "ANTHROPIC_BASE_URL": proxy.base_url,
            "ANTHROPIC_API_KEY": proxy.api_key,
            "IS_SANDBOX": "1",
            "HOME": str(home),
            "DISABLE_AUTOUPDATER": "1",
        },
        workdir,
    )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "proxied-42" in res.stdout
    calls = generate_calls(fake)
    assert len(calls) >= 2
    # No --model: today's release asks for its own default name, which is in
    # no catalog (CLIENTS.md); it is served by the best Opus the pool has.
    assert "claude-opus-4-6-thinking" in {c.model for c in calls}, {c.model for c in calls}
    # The tool really ran on this machine and its output went back upstream,
    # with the signed thinking first in the model turn (the fake checks it).
    results = function_responses(calls[-1])
    assert any("proxied-42" in json.dumps(r) for r in results)
    model_turn = next(c for c in calls[-1].body["request"]["contents"] if c["role"] == "model")
    if calls[-1].body["request"].get("generationConfig", {}).get("thinkingConfig", {}).get("includeThoughts"):
        assert model_turn["parts"][0].get("thought") is True and model_turn["parts"][0].get(
            "thoughtSignature"
        )


def test_codex_exec_tool_loop(proxy: Daemon, fake: FakeGoogle, workdir: Path) -> None:
    exe = client_bin("codex")
    if not exe:
        pytest.skip("Codex is not installed (npm install @openai/codex)")
    home = workdir / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "gemini-3-flash"\nmodel_provider = "ag"\napproval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n\n[model_providers.ag]\nname = "ag"\n'
        f'base_url = "{proxy.base_url}/v1"\nenv_key = "AG_KEY"\nwire_api = "responses"\n'
    )
    fake.script(
        [
            Reply.function_call("exec_command", {"cmd": "echo codex-$((6*7))"}),
            Reply.text("It printed codex-42."),
        ]
    )
    res = run(
        [exe, "exec", "--skip-git-repo-check", "Run echo codex-$((6*7)) and report the output"],
        {"CODEX_HOME": str(home), "AG_KEY": proxy.api_key, "HOME": str(workdir)},
        workdir,
    )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "codex-42" in res.stdout
    calls = generate_calls(fake)
    assert len(calls) >= 2
    assert any("codex-42" in json.dumps(r) for r in function_responses(calls[-1]))


def test_gemini_cli_tool_loop(proxy: Daemon, fake: FakeGoogle, workdir: Path) -> None:
    exe = client_bin("gemini")
    if not exe:
        pytest.skip("the Gemini CLI is not installed (npm install @google/gemini-cli)")
    home = workdir / "ghome"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}})
    )
    (workdir / "notes.txt").write_text("the secret word is gemini-42\n")
    fake.script(
        [
            Reply.function_call("read_file", {"file_path": str(workdir / "notes.txt")}),
            Reply.text("The file says the secret word is gemini-42."),
        ]
    )
    res = run(
        [exe, "-p", "Read notes.txt and tell me the secret word", "-m", "gemini-3-flash"],
        {
            "HOME": str(home),
            "GEMINI_API_KEY": proxy.api_key,
            "GOOGLE_GEMINI_BASE_URL": proxy.base_url,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
        },
        workdir,
    )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert "gemini-42" in res.stdout
    calls = generate_calls(fake)
    assert len(calls) >= 2
    assert any("gemini-42" in json.dumps(r) for r in function_responses(calls[-1]))
    # The CLI rewrites model names (`-m gemini-3-flash` goes out as gemini-3.8-flash,
    # CLIENTS.md), which no catalog serves: the family fallback picks the best Flash
    # of the 2026-08-22 catalog, the newest version at its highest effort.
    assert {c.model for c in calls} == {"gemini-3.7-flash-high"}


#: A stdio MCP server: JSON-RPC 2.0, one message a line. One tool,
#: ``secret_word(topic)``, answering with a word from argv[2] nobody could
#: guess; each call is appended (as JSON) to the file argv[1].
MCP_SERVER = """
import json, sys

log_path, word = sys.argv[1], sys.argv[2]
TOOL = {
    "name": "secret_word",
    "description": "The secret word of a topic.",
    "inputSchema": {
        "type": "object",
        "properties": {"topic": {"type": "string"}},
        "required": ["topic"],
    },
}


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\\n")
    sys.stdout.flush()


for line in sys.stdin:
    if not line.strip():
        continue
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if mid is None:  # a notification (notifications/initialized, ...)
        continue
    if method == "initialize":
        version = msg.get("params", {}).get("protocolVersion", "2025-06-18")
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "vault", "version": "1.0"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        params = msg.get("params", {})
        with open(log_path, "a") as f:
            f.write(json.dumps(params) + "\\n")
        topic = params.get("arguments", {}).get("topic")
        text = f"The secret word for {topic} is {word}."
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no such method"}})
        continue
    send({"jsonrpc": "2.0", "id": mid, "result": result})
"""


def test_codex_exec_calls_a_real_mcp_server(proxy: Daemon, fake: FakeGoogle, workdir: Path) -> None:
    """Codex 0.171 sends an MCP server's tools as a ``namespace`` tool
    (``mcp__<server>``, CLIENTS.md); the gateway declares them upstream as
    ``mcp__<server>__<tool>`` and answers the model's call under the tool's own
    name with the namespace beside it, so Codex runs it on the right server."""
    exe = client_bin("codex")
    if not exe:
        pytest.skip("Codex is not installed (npm install @openai/codex)")
    home = workdir / "codex"
    home.mkdir()
    server, calls_log = workdir / "vault_mcp.py", workdir / "vault-calls.jsonl"
    server.write_text(MCP_SERVER)
    word = "quokka-" + os.urandom(4).hex()
    (home / "config.toml").write_text(
        'model = "gemini-3-flash"\nmodel_provider = "ag"\napproval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n\n[model_providers.ag]\nname = "ag"\n'
        f'base_url = "{proxy.base_url}/v1"\nenv_key = "AG_KEY"\nwire_api = "responses"\n\n'
        f"[mcp_servers.vault]\ncommand = {json.dumps(sys.executable)}\n"
        f"args = {json.dumps([str(server), str(calls_log), word])}\n"
    )
    fake.script(
        [
            Reply.function_call("mcp__vault__secret_word", {"topic": "harbour"}),
            Reply.text(f"The secret word for harbour is {word}."),
        ]
    )
    res = run(
        [
            exe,
            "exec",
            "--dangerously-bypass-approvals-and-sandbox",
            "--skip-git-repo-check",
            "Ask the vault for the secret word of harbour and tell me",
        ],
        {"CODEX_HOME": str(home), "AG_KEY": proxy.api_key, "HOME": str(workdir)},
        workdir,
    )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    assert word in res.stdout
    # The server ran the call, with the model's arguments (Codex adds a ``_meta``).
    assert calls_log.exists(), res.stderr
    logged = [json.loads(line) for line in calls_log.read_text().splitlines()]
    assert [(c["name"], c["arguments"]) for c in logged] == [("secret_word", {"topic": "harbour"})]
    calls = generate_calls(fake)
    assert len(calls) >= 2
    # The tool was declared upstream under its flattened name ...
    declared = [
        d["name"]
        for t in calls[0].body["request"].get("tools", [])
        for d in t.get("functionDeclarations", [])
    ]
    assert "mcp__vault__secret_word" in declared, declared
    # ... and its result went back to the model under that name.
    results = function_responses(calls[-1])
    assert [r["name"] for r in results] == ["mcp__vault__secret_word"]
    assert word in json.dumps(results)
