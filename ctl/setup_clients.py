"""``agctl setup claude|codex|gemini|opencode``: point a coding client at the proxy.

Each client keeps its settings in its own file (CLIENTS.md):
Claude Code ``~/.claude/settings.json`` (``env``), Codex
``~/.codex/config.toml`` (a model provider with ``wire_api = "responses"``),
the Gemini CLI ``~/.gemini/settings.json`` (API-key auth) and
``~/.gemini/.env``, opencode ``~/.config/opencode/opencode.json`` (an
OpenAI-compatible provider).

The edits are pure functions (old bytes in, new bytes out) that merge into
what is there and keep every other key; a file that does not parse is never
touched. Before the first write the original bytes are copied to the data
directory with a manifest, so ``--undo`` restores them byte for byte (or
removes a file setup created) - unless the file changed since, which is
refused with the backup's path. The key written is the proxy's key, never a
Google token.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctl.client import EXIT_FAILED, EXIT_OK, CtlError
from daemon.errors import redact
from daemon.fsutil import PRIVATE_FILE, atomic_write, ensure_private_dir

if TYPE_CHECKING:
    from ctl.context import Ctx

CLIENTS = ("claude", "codex", "gemini", "opencode")
NAMES = {"claude": "Claude Code", "codex": "Codex", "gemini": "the Gemini CLI", "opencode": "opencode"}
PROVIDER = "antigravity"
KEY_ENV = "ANTIGRAVITY_API_KEY"  # the variable Codex reads the proxy key from (env_key)
CLAUDE_MODEL_KEYS = (
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
)


class SetupError(CtlError):
    pass


@dataclass(frozen=True)
class Target:
    """Where the client should go: the proxy's base URL (no /v1), its key,
    and the model names the pool serves."""

    base_url: str
    api_key: str
    models: tuple[str, ...] = ()
    model: str | None = None  # --model


# ------------------------------------------------------------------ model choice


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def best(models: tuple[str, ...], *must: str, prefer: tuple[str, ...] = ()) -> str | None:
    """The newest served name containing every word of ``must``; among equal
    versions one with a ``prefer`` word wins."""
    names = [m for m in models if all(w in m.lower() for w in must)]
    if not names:
        return None
    return max(names, key=lambda m: (_version(m), sum(w in m.lower() for w in prefer), -len(m)))


def claude_models(t: Target) -> dict[str, str]:
    m = t.models
    opus = best(m, "claude", "opus", prefer=("thinking",)) or best(
        m, "claude", "sonnet", prefer=("thinking",)
    )
    sonnet = best(m, "claude", "sonnet") or opus
    # The cheapest Claude served for the small side requests (titles, checks).
    haiku = best(m, "claude", "haiku") or best(m, "claude", "sonnet") or sonnet
    if opus is None:  # a pool without Claude: Gemini answers the Anthropic API too
        opus = best(m, "gemini", "pro", prefer=("high",))
        sonnet = sonnet or opus
        haiku = best(m, "gemini", "flash") or sonnet
    main = t.model or opus
    out = dict(zip(CLAUDE_MODEL_KEYS, (main, opus, sonnet, haiku), strict=True))
    return {k: v for k, v in out.items() if v}


def default_model(t: Target) -> str | None:
    if t.model:
        return t.model
    m = t.models
    return (
        best(m, "gemini", "pro", prefer=("high",))
        or best(m, "claude", "sonnet")
        or best(m, "gemini", "flash")
        or (m[0] if m else None)
    )


# ------------------------------------------------------------------ JSON files


def _load_json(path: Path, before: bytes | None) -> dict[str, Any]:
    if before is None or not before.strip():
        return {}
    try:
        data = json.loads(before.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SetupError(
            f"{path} is not valid JSON ({exc}); it was left as it is. Fix or move it, then run setup again."
        ) from None
    if not isinstance(data, dict):
        raise SetupError(f"{path} does not hold a JSON object; it was left as it is.")
    return data


def _dump_json(data: dict[str, Any], before: bytes | None) -> bytes:
    indent: int | str = 2
    if before:
        m = re.search(rb"^\{[ \t]*\r?\n([ \t]+)\S", before)
        if m:
            ws = m.group(1).decode()
            indent = len(ws) if set(ws) == {" "} else ws
    return (json.dumps(data, indent=indent, ensure_ascii=False) + "\n").encode()


def _section(path: Path, parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.setdefault(key, {})
    if not isinstance(value, dict):
        raise SetupError(f"{path}: {key!r} is not a JSON object; it was left as it is.")
    return value


def edit_claude(path: Path, before: bytes | None, t: Target) -> bytes:
    data = _load_json(path, before)
    env = _section(path, data, "env")
    env["ANTHROPIC_BASE_URL"] = t.base_url
    # ANTHROPIC_AUTH_TOKEN goes out as a Bearer header and, unlike an API
    # key, needs no approval prompt; a key already set there would be sent
    # too, so it is pointed at the proxy as well.
    env["ANTHROPIC_AUTH_TOKEN"] = t.api_key
    if "ANTHROPIC_API_KEY" in env:
        env["ANTHROPIC_API_KEY"] = t.api_key
    env.update(claude_models(t))
    return _dump_json(data, before)


def edit_gemini_settings(path: Path, before: bytes | None, t: Target) -> bytes:
    data = _load_json(path, before)
    auth = _section(path, _section(path, data, "security"), "auth")
    auth["selectedType"] = "gemini-api-key"
    if t.model:
        _section(path, data, "model")["name"] = t.model
    return _dump_json(data, before)


def edit_opencode(path: Path, before: bytes | None, t: Target) -> bytes:
    data = _load_json(path, before)
    data.setdefault("$schema", "https://opencode.ai/config.json")
    providers = _section(path, data, "provider")
    prov = providers.get(PROVIDER)
    if prov is not None and not isinstance(prov, dict):
        raise SetupError(f"{path}: provider.{PROVIDER} is not a JSON object; it was left as it is.")
    prov = prov or {}
    prov["npm"] = "@ai-sdk/openai-compatible"
    prov.setdefault("name", "Antigravity (local proxy)")
    got_options, got_models = prov.get("options"), prov.get("models")
    options: dict[str, Any] = got_options if isinstance(got_options, dict) else {}
    options.update({"baseURL": t.base_url + "/v1", "apiKey": t.api_key})
    prov["options"] = options
    models: dict[str, Any] = got_models if isinstance(got_models, dict) else {}
    for name in t.models:
        models.setdefault(name, {"name": name})
    if t.model:
        models.setdefault(t.model, {"name": t.model})
    prov["models"] = models
    providers[PROVIDER] = prov
    model = default_model(t)
    if model:
        data["model"] = f"{PROVIDER}/{model}"
    return _dump_json(data, before)


# ------------------------------------------------------------------ .env


def edit_env_file(before: bytes | None, values: dict[str, str]) -> bytes:
    """Set ``KEY=value`` lines, keeping every other line as it is."""
    text = before.decode("utf-8") if before else ""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for key, value in values.items():
        line = f"{key}={value}\n"
        pat = re.compile(rf"^\s*(export\s+)?{re.escape(key)}\s*=")
        idx = next((i for i, x in enumerate(lines) if pat.match(x)), None)
        if idx is None:
            lines.append(line)
        else:
            lines[idx] = line
    return "".join(lines).encode()


# ------------------------------------------------------------------ TOML (Codex)

_HEADER = re.compile(r"^\s*\[")
_OUR_HEADER = re.compile(rf'^\s*\[\s*model_providers\s*\.\s*"?{PROVIDER}"?\s*\]\s*(#.*)?$')


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a TOML basic string uses JSON's escapes


def _set_key(lines: list[str], start: int, end: int, key: str, value: str) -> int:
    """Set ``key`` within lines[start:end]; returns how many lines were added."""
    pat = re.compile(rf'^\s*"?{re.escape(key)}"?\s*=')
    for i in range(start, end):
        if pat.match(lines[i]):
            lines[i] = f"{key} = {_toml_str(value)}\n"
            return 0
    # After the last non-blank line of the block, so a blank line before the
    # next table (and its comments) stays where it is.
    at = end
    while at > start and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")):
        at -= 1
    lines.insert(at, f"{key} = {_toml_str(value)}\n")
    return 1


def edit_codex(path: Path, before: bytes | None, t: Target) -> bytes:
    """A line edit that keeps comments and layout; checked by parsing the
    result, and refused (with the lines to add by hand) when the file's
    shape defeats it (e.g. the provider written as an inline table)."""
    text = before.decode("utf-8") if before else ""
    try:
        old = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SetupError(f"{path} is not valid TOML ({exc}); it was left as it is.") from None
    model = default_model(t)
    top = {"model_provider": PROVIDER, **({"model": model} if model else {})}
    table = {
        "name": "Antigravity (local proxy)",
        "base_url": t.base_url + "/v1",
        "env_key": KEY_ENV,
        "wire_api": "responses",
    }
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    first = next((i for i, x in enumerate(lines) if _HEADER.match(x)), len(lines))
    for key, value in top.items():
        # Before the first table, and before the comments that introduce it.
        first += _set_key(lines, 0, first, key, value)
    ours = next((i for i, x in enumerate(lines) if _OUR_HEADER.match(x)), None)
    if ours is None:
        if lines and lines[-1].strip():
            lines.append("\n")
        lines.append(f"[model_providers.{PROVIDER}]\n")
        lines += [f"{k} = {_toml_str(v)}\n" for k, v in table.items()]
    else:
        end = next((i for i in range(ours + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
        for key, value in table.items():
            end += _set_key(lines, ours + 1, end, key, value)
    result = "".join(lines)
    manual = "\n".join(
        [*(f"{k} = {_toml_str(v)}" for k, v in top.items()), f"[model_providers.{PROVIDER}]"]
        + [f"{k} = {_toml_str(v)}" for k, v in table.items()]
    )
    try:
        new = tomllib.loads(result)
    except tomllib.TOMLDecodeError:
        new = None
    expected = json.loads(json.dumps(old))
    expected.update(top)
    providers = expected.setdefault("model_providers", {})
    if not isinstance(providers, dict):
        new = None
    else:
        providers[PROVIDER] = {**(providers.get(PROVIDER) or {}), **table}
    if new != expected:
        raise SetupError(
            f"cannot edit {path} safely (its layout is unusual); it was left as it is. "
            f"Add these settings by hand:\n{manual}"
        )
    return result.encode()


# ------------------------------------------------------------------ per client


@dataclass(frozen=True)
class FileEdit:
    path: Path
    edit: Callable[[Path, bytes | None, Target], bytes]


def client_files(client: str) -> list[FileEdit]:
    home = Path.home()
    if client == "claude":
        base = Path(os.environ.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        return [FileEdit(base / "settings.json", edit_claude)]
    if client == "codex":
        base = Path(os.environ.get("CODEX_HOME") or home / ".codex")
        return [FileEdit(base / "config.toml", edit_codex)]
    if client == "gemini":
        gem = home / ".gemini"
        return [
            FileEdit(gem / "settings.json", edit_gemini_settings),
            # The Gemini CLI loads ~/.gemini/.env into its environment at start.
            FileEdit(
                gem / ".env",
                lambda p, b, t: edit_env_file(b, gemini_env(t)),
            ),
        ]
    if client == "opencode":
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "opencode"
        path = base / "opencode.json"
        if not path.exists() and (base / "opencode.jsonc").exists():
            path = base / "opencode.jsonc"
        return [FileEdit(path, edit_opencode)]
    raise CtlError(f"unknown client {client!r}: {', '.join(CLIENTS)}", 2)


def gemini_env(t: Target) -> dict[str, str]:
    return {"GEMINI_API_KEY": t.api_key, "GOOGLE_GEMINI_BASE_URL": t.base_url}


def exports(client: str, t: Target) -> dict[str, str]:
    """The environment the client reads (``--print``)."""
    if client == "claude":
        return {"ANTHROPIC_BASE_URL": t.base_url, "ANTHROPIC_AUTH_TOKEN": t.api_key, **claude_models(t)}
    if client == "gemini":
        return gemini_env(t)
    return {KEY_ENV: t.api_key}


def export_lines(client: str, t: Target) -> list[str]:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in exports(client, t).items()]
    if client in ("codex", "opencode"):
        lines.append(
            f"# {NAMES[client]} takes the provider from its config file: run `agctl setup {client}` once"
        )
    return lines


# ------------------------------------------------------------------ backups and undo


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise SetupError(f"{path} is a directory, not a settings file; it was left as it is.") from None


def backup_dir() -> Path:
    from daemon.paths import resolve

    return resolve().data_dir / "client-setup"


def _manifest_path(client: str) -> Path:
    return backup_dir() / f"{client}.json"


def load_manifest(client: str) -> dict[str, Any] | None:
    raw = _read(_manifest_path(client))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise SetupError(f"the setup record {_manifest_path(client)} is damaged; undo by hand") from None
    return data if isinstance(data, dict) else None


# A value under a name that says it is secret, in the files setup edits:
# JSON ("ANTHROPIC_AUTH_TOKEN": "…") and .env / shell (GEMINI_API_KEY=…).
_SECRET_VALUE = re.compile(
    r"""((?:"[^"\n]*(?:key|token|secret|password)[^"\n]*"\s*:\s*")"""
    r"""|(?:^[-+ ]?\s*(?:export\s+)?[A-Za-z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD)[A-Za-z0-9_]*\s*=\s*["']?))"""
    r"""([^"'\s]*)""",
    re.IGNORECASE | re.MULTILINE,
)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")  # a variable's name (Codex's env_key), not a secret


def _mask_value(m: re.Match[str]) -> str:
    value = m.group(2)
    # Not secrets: a variable's name or a reference to one ({env:X}, $X).
    if not value or _ENV_NAME.fullmatch(value) or value.endswith("…") or value.startswith(("{env:", "$")):
        return m.group(0)
    return f"{m.group(1)}{value[:4]}…"


def _mask(text: str, t: Target) -> str:
    """No key in a diff: the proxy's (by value), anything key-shaped (by
    pattern), and any value under a name that says it is secret (the key an
    undo puts back or takes away, the user's own keys beside ours)."""
    text = text.replace(t.api_key, t.api_key[:5] + "…") if t.api_key else text
    return _SECRET_VALUE.sub(_mask_value, redact(text))


def _diff(path: Path, before: bytes | None, after: bytes | None, t: Target) -> str:
    a = (before or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (after or b"").decode("utf-8", "replace").splitlines(keepends=True)
    name = str(path)
    out = difflib.unified_diff(
        a,
        b,
        fromfile=name if before is not None else "/dev/null",
        tofile=name if after is not None else "/dev/null",
    )
    return _mask("".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in out), t)


def plan(client: str, t: Target) -> list[tuple[Path, bytes | None, bytes]]:
    """Every file's (path, current bytes, new bytes); raises before any write."""
    return [(f.path, (cur := _read(f.path)), f.edit(f.path, cur, t)) for f in client_files(client)]


def apply(client: str, changes: list[tuple[Path, bytes | None, bytes]]) -> list[dict[str, Any]]:
    """Back up, record, then write each changed file. Returns the manifest's files."""
    manifest = load_manifest(client) or {"client": client, "files": []}
    files: list[dict[str, Any]] = manifest["files"]
    bdir = backup_dir()
    ensure_private_dir(bdir)
    todo = [(p, b, a) for p, b, a in changes if b != a]
    for path, before, _after in todo:
        if any(e["path"] == str(path) for e in files):
            continue  # keep the state from before the FIRST setup
        entry: dict[str, Any] = {
            "path": str(path),
            "existed": before is not None,
            "backup": None,
            "mode": None,
        }
        if before is not None:
            backup = bdir / f"{client}-{len(files)}-{path.name}.orig"
            atomic_write(backup, before)
            entry["backup"] = str(backup)
            entry["mode"] = path.stat().st_mode & 0o7777
        files.append(entry)
    for path, _before, after in todo:
        entry = next(e for e in files if e["path"] == str(path))
        entry["written_sha256"] = _sha(after)
    if todo:
        # The record is on disk before the first file changes: undo always works.
        atomic_write(_manifest_path(client), json.dumps(manifest, indent=2).encode())
    for path, before, after in todo:
        mode = (path.stat().st_mode & 0o7777) if before is not None else PRIVATE_FILE
        atomic_write(path, after, mode=mode, private_dir=False)
    return files


def undo_plan(client: str) -> list[tuple[Path, bytes | None, bytes | None, dict[str, Any]]]:
    manifest = load_manifest(client)
    if not manifest or not manifest.get("files"):
        raise SetupError(f"nothing to undo: `agctl setup {client}` has not changed any file here")
    out = []
    for entry in manifest["files"]:
        path = Path(entry["path"])
        current = _read(path)
        if current is not None and entry.get("written_sha256") and _sha(current) != entry["written_sha256"]:
            where = (
                f"the original is kept at {entry['backup']}" if entry["backup"] else "setup had created it"
            )
            raise SetupError(
                f"{path} changed after `agctl setup {client}` wrote it, so undo would lose those changes; "
                f"nothing was restored ({where}). Restore it by hand."
            )
        original = _read(Path(entry["backup"])) if entry["backup"] else None
        if entry["backup"] and original is None:
            raise SetupError(f"the backup {entry['backup']} of {path} is missing; nothing was restored")
        out.append((path, current, original, entry))
    return out


def undo(client: str, steps: list[tuple[Path, bytes | None, bytes | None, dict[str, Any]]]) -> None:
    for path, _current, original, entry in steps:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, original, mode=int(entry.get("mode") or PRIVATE_FILE), private_dir=False)
    for _path, _c, _o, entry in steps:
        if entry["backup"]:
            Path(entry["backup"]).unlink(missing_ok=True)
    _manifest_path(client).unlink(missing_ok=True)


# ------------------------------------------------------------------ the command


def _served_models(ctx: Ctx, base_url: str, key: str, running: bool) -> tuple[str, ...]:
    names: list[str] = []
    if running:
        import httpx

        try:
            resp = httpx.get(f"{base_url}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10)
            if resp.status_code == 200:
                names = [
                    str(m["id"]) for m in resp.json().get("data", []) if isinstance(m, dict) and m.get("id")
                ]
        except (httpx.HTTPError, ValueError):
            names = []
    if not names:  # the proxy is stopped: what the accounts' catalogs hold
        accounts = ctx.client.request("GET", "/accounts").get("accounts", [])
        seen: dict[str, None] = {}
        for acc in accounts:
            for mid in acc.get("models") or {}:
                seen[mid] = None
        names = list(seen)
    return tuple(names)


def target(ctx: Ctx) -> Target:
    st = ctx.client.request("GET", "/status")
    proxy = st["proxy"]
    key = str(ctx.client.request("GET", "/config/proxy.api_key")["value"])
    port = proxy.get("port")
    # The client runs on this machine: loopback, whatever the listen address.
    base = f"http://127.0.0.1:{port}" if port else str(proxy["base_url"])
    models = _served_models(ctx, base, key, proxy.get("state") == "running")
    return Target(base_url=base, api_key=key, models=models, model=ctx.args.model)


def cmd_setup(ctx: Ctx) -> int:
    a = ctx.args
    client = a.client
    if a.undo:
        steps = undo_plan(client)
        if a.dry_run:
            diffs = [
                (path, _diff(path, current, original, Target("", ""))) for path, current, original, _ in steps
            ]
            if ctx.json:
                ctx.out(
                    {
                        "client": client,
                        "undo": True,
                        "changes": [{"path": str(p), "diff": d} for p, d in diffs],
                    }
                )
            else:
                print("".join(d for _, d in diffs), end="")
            return EXIT_OK
        undo(client, steps)
        restored = [str(p) for p, *_ in steps]
        ctx.out(
            {"client": client, "restored": restored},
            "\n".join(f"restored {p}" for p in restored) + f"\n{NAMES[client]} no longer uses the proxy",
        )
        return EXIT_OK
    t = target(ctx)
    if a.print:
        ctx.out({"client": client, "env": exports(client, t)}, "\n".join(export_lines(client, t)))
        return EXIT_OK
    changes = plan(client, t)
    if a.dry_run and ctx.json:
        ctx.out(
            {
                "client": client,
                "base_url": t.base_url,
                "changes": [{"path": str(p), "diff": _diff(p, b, n, t)} for p, b, n in changes if b != n],
            }
        )
        return EXIT_OK
    if a.dry_run:
        text = "".join(_diff(p, b, n, t) for p, b, n in changes)
        print(
            text or f"{NAMES[client]} already points at the proxy: nothing to change",
            end="" if text else "\n",
        )
        return EXIT_OK
    apply(client, changes)
    changed = [str(p) for p, b, n in changes if b != n]
    lines = [f"{'wrote' if str(p) in changed else 'unchanged'} {p}" for p, _, _ in changes]
    lines.append(
        f"{NAMES[client]} now uses the proxy at {t.base_url}; undo with `agctl setup {client} --undo`"
    )
    if client == "codex":
        lines.append(f'Codex reads the key from ${KEY_ENV}: run `eval "$(agctl setup codex --print)"` first')
        # Codex compacts a full context itself with a provider of another
        # name, and asks the server (remote compaction, /v1/responses with a
        # compaction_trigger) with one named "OpenAI": the gateway answers both.
        lines.append(
            "long sessions: with this provider Codex compacts its context itself (local compaction); "
            'a provider named "OpenAI" would use remote compaction, which the proxy also answers'
        )
    if not t.models:
        lines.append("note: no account serves a model yet, so no model names were set")
    ctx.out(
        {
            "client": client,
            "base_url": t.base_url,
            "files": [str(p) for p, _, _ in changes],
            "changed": changed,
        },
        "\n".join(lines),
    )
    return EXIT_OK if changes else EXIT_FAILED
