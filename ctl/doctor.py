"""``agctl doctor``: every check, one line each, with the fix.

The checks run in the order a new user meets the problems (issue 15):
the daemon, its config, the proxy listener, the OAuth client, each account
(refreshed now: token, project, both quota windows of each group), the
client version Google sees, whether Google answers at all, and each coding
client's settings. A line is ``ok``, ``warn`` (works, but look) or ``FAIL``;
the exit code is 1 when any line failed, a stopped daemon included (it is a
finding here, not the "daemon not reachable" usage error of other commands).
Without a daemon the checks that need none still run: the config file and
the clients' settings.

Nothing printed holds a token, a secret or the proxy key: details name keys
and files, never values, and every line goes through a mask of the secrets
doctor had in hand plus ``daemon.errors.redact`` before it is printed.
"""

from __future__ import annotations

import json
import os
import re
import time
import tomllib
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ctl import setup_clients as sc
from ctl.client import EXIT_FAILED, EXIT_OK, CtlError, Unreachable
from daemon import config as config_mod
from daemon.errors import ConfigError, redact

if TYPE_CHECKING:
    from ctl.context import Ctx

OK, WARN, FAIL = "ok", "warn", "fail"
LABELS = {OK: "ok", WARN: "warn", FAIL: "FAIL"}
# The reason `agctl accounts disable` stores (daemon.admin.account_routes):
# the user's own choice is a warning, not a fault.
USER_DISABLED = "disabled by the user"
# Error kinds that mean Google was not reached at all (daemon.errors).
UNREACHED_KINDS = frozenset({"upstream_unavailable", "upstream_timeout"})
LOOPBACK_HOSTS = frozenset({"localhost", "::1", "0.0.0.0"})
START_FIX = (
    "start it: `antigravityd &` in a terminal, or `systemctl --user start antigravity` "
    "(after `agctl service install`; on macOS the LaunchAgent starts it at login)"
)
HEALTH_TIMEOUT = 5.0
ACCOUNTS_TIMEOUT = 300.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def public(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}

    def line(self) -> str:
        text = f"{LABELS[self.status]:<4}  {self.name}: {self.detail}"
        return text + (f"  -> fix: {self.fix}" if self.fix else "")


class Doctor:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.checks: list[Check] = []
        self.secrets: set[str] = set()

    def add(self, name: str, status: str, detail: str, fix: str = "") -> Check:
        check = Check(name, status, self.mask(detail), self.mask(fix))
        self.checks.append(check)
        return check

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "…")
        return redact(text)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self.ctx.client.request(method, path, **kw)

    # ------------------------------------------------------------ the run

    def run(self) -> None:
        status = self.daemon()
        if status is None:
            cfg = self.config(None)
            self.oauth_local(cfg)
            if cfg is not None:
                self.clients(cfg.proxy.port, cfg.proxy.api_key, cfg.effective_auth_mode())
            return
        key = str(self.request("GET", "/config/proxy.api_key")["value"])
        self.secrets.add(key)
        self.config(status)
        proxy = status["proxy"]
        self.proxy(proxy, key, status["accounts"]["total"])
        self.oauth(status)
        results = self.accounts()
        status = self.request("GET", "/status")  # after the calls above: a refusal shows now
        self.client_version(status, results)
        self.upstream(results)
        self.clients(int(proxy["port"]), key, str(status["proxy"]["auth_mode"]))

    def daemon(self) -> dict[str, Any] | None:
        try:
            st: dict[str, Any] = self.request("GET", "/status")
        except Unreachable:
            where = self.ctx.client.socket
            self.add("daemon", FAIL, f"antigravityd is not running (no answer on {where})", START_FIX)
            return None
        d = st["daemon"]
        self.add("daemon", OK, f"running, pid {d['pid']}, version {d['version']}, socket {d['socket']}")
        return st

    # ------------------------------------------------------------ config

    def config(self, status: dict[str, Any] | None) -> config_mod.Config | None:
        from daemon.paths import resolve

        path = Path(status["paths"]["config_file"]) if status else resolve().config_file
        try:
            local, _ = config_mod.load(path)
        except ConfigError as exc:
            running = "the daemon runs with what it loaded at start, but will not start again"
            self.add(
                "config",
                FAIL,
                f"{path} is broken: {exc.message}" + (f" ({running})" if status else ""),
                f"correct it in {path} (or move it away to start from defaults)",
            )
            return None
        except OSError as exc:
            self.add(
                "config", FAIL, f"cannot read {path}: {exc.strerror or exc}", f"check {path}'s permissions"
            )
            return None
        self.secrets.update(
            x for x in (local.proxy.api_key, local.oauth.client_secret, local.zai.api_key) if x
        )
        where = str(path) if path.exists() else f"{path} (absent: defaults)"
        if status is None:
            self.add("config", OK, f"{where} is valid")
            return local
        running = self.request("GET", "/config", params={"secrets": "true"})
        differ = _differing_keys(config_mod.to_builtins(local, show_secrets=True), running)
        if differ:
            self.add(
                "config",
                WARN,
                f"{where} is valid but differs from what the daemon runs with ({', '.join(differ)}): "
                "edited by hand since the daemon started?",
                "restart the daemon to load the file (`agctl shutdown`, then start it), or set the keys "
                "with `agctl config set KEY VALUE`, which applies them at once",
            )
        else:
            self.add("config", OK, f"{where} is valid and loaded by the daemon")
        return local

    # ------------------------------------------------------------ proxy

    def proxy(self, proxy: dict[str, Any], key: str, accounts: int) -> None:
        state = proxy["state"]
        where = f"{proxy['host']}:{proxy['port']}"
        if state != "running":
            why = f" ({proxy['reason']})" if proxy.get("reason") else ""
            fix = "`agctl start`"
            if accounts == 0:
                fix = "add an account (`agctl accounts import` or `agctl accounts add`): it starts the proxy"
            self.add("proxy", FAIL, f"{state}{why}; it would listen on {where}", fix)
            return
        url = f"http://127.0.0.1:{proxy['port']}/healthz"
        try:
            resp = httpx.get(url, headers={"authorization": f"Bearer {key}"}, timeout=HEALTH_TIMEOUT)
            healthy = resp.status_code == 200 and resp.json().get("status") == "ok"
            answer = f"HTTP {resp.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            healthy, answer = False, type(exc).__name__
        if not healthy:
            self.add(
                "proxy",
                FAIL,
                f"the daemon says it listens on {where}, but GET {url} answered {answer}",
                "`agctl restart`; if that does not help, see the daemon's log",
            )
            return
        detail = f"listening on {where} (GET /healthz ok), auth {proxy['auth_mode']}"
        if proxy.get("restart_pending"):
            self.add("proxy", WARN, detail + "; the port / LAN setting changed", "`agctl restart` applies it")
        else:
            self.add("proxy", OK, detail)

    # ------------------------------------------------------------ OAuth client

    def oauth(self, status: dict[str, Any]) -> None:
        oauth = status.get("oauth") or {}
        client_id = str(oauth.get("client_id") or "")
        source = oauth.get("secret_source")
        if source is None:  # a daemon from before doctor: read the (masked) config
            source = "config" if self.request("GET", "/config/oauth.client_secret")["value"] else ""
        self._oauth_line(client_id, source)

    def oauth_local(self, cfg: config_mod.Config | None) -> None:
        if cfg is None:
            return
        source = "config" if cfg.oauth.client_secret else ""
        if not source and os.environ.get(config_mod.SECRET_ENV):
            source = "this shell's env"
        self._oauth_line(cfg.oauth.client_id, source)

    def _oauth_line(self, client_id: str, source: str) -> None:
        short = client_id.split(".", 1)[0] + "…" if ".apps.googleusercontent.com" in client_id else client_id
        if not source:
            self.add(
                "oauth client",
                FAIL,
                f"client {short} has no secret: Google's token endpoint refuses every sign-in and refresh",
                "`agctl oauth detect --yes` (finds it in a local Antigravity / agy install), or "
                f"`agctl config set oauth.client_secret SECRET`, or {config_mod.SECRET_ENV} for the daemon",
            )
            return
        where = {
            "config": "oauth.client_secret in config.toml",
            "env": f"the daemon's {config_mod.SECRET_ENV}",
        }.get(source, f"{config_mod.SECRET_ENV} in this shell (the daemon needs it in its own environment)")
        self.add("oauth client", OK, f"client {short}, secret from {where}")

    # ------------------------------------------------------------ accounts

    def accounts(self) -> list[dict[str, Any]]:
        data = self.request("POST", "/accounts-check", timeout=ACCOUNTS_TIMEOUT)
        results: list[dict[str, Any]] = data.get("results") or []
        for name, problem in (data.get("broken_files") or {}).items():
            self.add(
                f"account file {name}",
                FAIL,
                f"unreadable, skipped by the daemon: {problem}",
                "move the file out of the accounts directory and add that account again "
                "(`agctl accounts import` or `agctl accounts add`)",
            )
        if not results:
            self.add(
                "accounts",
                FAIL,
                "no account yet: the proxy has nothing to serve with",
                "`agctl accounts import` (the login of Antigravity / agy on this machine) or "
                "`agctl accounts add` (Google sign-in in the browser)",
            )
        now = time.time()
        for r in results:
            self.account(r, now)
        return results

    def account(self, r: dict[str, Any], now: float) -> None:
        a = r["account"]
        name = f"account {a['email']}"
        ref = a["id"]
        if a["state"] == "disabled":
            reason = a.get("disabled_reason") or "disabled"
            if reason == USER_DISABLED:
                self.add(name, WARN, "disabled by you: not used", f"`agctl accounts enable {ref}`")
            else:
                self.add(name, FAIL, f"disabled: {reason}", _disabled_fix(a))
            return
        err = r.get("error")
        if err:
            self.add(name, FAIL, f"refresh failed: {err['message']}", _error_fix(err, ref))
            return
        parts = ["token refreshed" if r.get("checked") else "not refreshed"]
        tier = a.get("tier") or ""
        if a.get("plan"):
            tier += f" ({a['plan']})"
        if not a.get("project"):
            self.add(
                name,
                FAIL,
                ", ".join([*parts, "no Cloud Code project"]),
                f"`agctl accounts refresh {ref}`; if it stays empty, sign in to Antigravity once "
                "with this account so that Google sets up its project",
            )
            return
        parts.append(f"project {a['project']}" + (f", tier {tier}" if tier else ""))
        windows, empty = _quota_text(a.get("quota"), now)
        status, fix = OK, ""
        if windows:
            parts.append(windows)
        else:
            status, fix = WARN, f"`agctl accounts refresh {ref}` later: Google sent no quota windows"
            parts.append("no quota windows from Google")
        if empty:
            status = WARN
            fix = "nothing to do: the other group (or another account) serves until the reset"
        cooling = a.get("cooldowns") or {}
        if cooling:
            status = WARN
            soon = min(c["until"] for c in cooling.values())
            parts.append(f"cooling down ({', '.join(sorted(cooling))}, next ends {_in(soon, now)})")
            fix = fix or f"wait, or `agctl accounts reset {ref}` to clear the cooldowns"
        self.add(name, status, "; ".join(parts), fix)

    # ------------------------------------------------------------ Google's side

    def client_version(self, status: dict[str, Any], results: list[dict[str, Any]]) -> None:
        client = (status.get("upstream") or {}).get("client") or {}
        ua = client.get("user_agent") or "?"
        rejected = client.get("rejected")
        if rejected:
            self.add(
                "client version",
                FAIL,
                f"Google refused {rejected.get('user_agent') or ua}: {rejected.get('message')}",
                str(rejected.get("fix") or "agctl config set upstream.client_version X.Y.Z"),
            )
            return
        self.add("client version", OK, f"{ua} ({client.get('source') or 'default'}), not refused by Google")

    def upstream(self, results: list[dict[str, Any]]) -> None:
        checked = [r for r in results if r.get("checked")]
        if not checked:
            self.add("upstream", WARN, "not checked: no enabled account to call Google with")
            return
        fine = [r for r in checked if r.get("ok")]
        if fine:
            self.add(
                "upstream",
                OK,
                f"Google answered the token, project and quota calls of {len(fine)} account(s)",
            )
            return
        unreached = [r["error"] for r in checked if (r.get("error") or {}).get("kind") in UNREACHED_KINDS]
        if len(unreached) == len(checked):
            self.add(
                "upstream",
                FAIL,
                f"Google cannot be reached: {unreached[0]['message']}",
                "check the network, proxy.upstream_proxy and upstream.endpoints (`agctl config show`)",
            )
            return
        self.add("upstream", OK, "Google answered (with errors about the accounts, above)")

    # ------------------------------------------------------------ coding clients

    def clients(self, port: int, key: str, auth_mode: str) -> None:
        for client in sc.CLIENTS:
            name = f"client {client}"
            try:
                status, detail, fix = client_state(client, port, key, auth_mode != "off")
            except CtlError as exc:  # a settings file that does not parse
                status, detail, fix = FAIL, exc.message, f"fix that file, then `agctl setup {client}`"
            self.add(name, status, detail, fix)


# ---------------------------------------------------------------- helpers


def _in(ts: float, now: float) -> str:
    d = max(0, int(ts - now))
    if d < 3600:
        return f"in {d // 60}m"
    if d < 86400:
        return f"in {d // 3600}h{d % 3600 // 60:02d}m"
    return f"in {d // 86400}d{d % 86400 // 3600:02d}h"


def _pct(fraction: float) -> str:
    return "<1%" if 0 < fraction < 0.01 else f"{int(fraction * 100 + 1e-9)}%"


def _quota_text(quota: dict[str, Any] | None, now: float) -> tuple[str, list[str]]:
    """Both windows of each group with their reset: ``"gemini 5h 80% (resets
    in 2h10m) · week 97% (resets in 6d02h)"``, groups joined by `` | ``;
    and the windows that are used up and not yet reset."""
    groups = (quota or {}).get("groups") or {}
    texts: list[str] = []
    empty: list[str] = []
    for key in ("gemini", "3p"):
        g = groups.get(key)
        if not g:
            continue
        shown = []
        for label, bucket in (("5h", g.get("five_hour")), ("week", g.get("weekly"))):
            if not bucket:
                shown.append(f"{label} ?")
                continue
            frac = float(bucket.get("remaining_fraction") or 0.0)
            reset = bucket.get("reset_time")
            text = f"{label} {_pct(frac)}"
            if reset:
                text += f" (resets {_in(float(reset), now)})"
            if frac <= 0 and (reset is None or float(reset) > now):
                empty.append(f"{key} {label}")
                text += " USED UP"
            shown.append(text)
        texts.append(f"{key} " + " · ".join(shown))
    return " | ".join(texts), empty


def _disabled_fix(a: dict[str, Any]) -> str:
    reason = str(a.get("disabled_reason") or "").lower()
    url = a.get("validation_url") or ""
    ref = a["id"]
    if "invalid_grant" in reason or "re-login" in reason or "revoked" in reason:
        return (
            "sign in again: `agctl accounts add` (or `agctl accounts import`); the same account is "
            "updated and enabled"
        )
    if url:
        return (
            f"open {url} signed in as {a['email']} and follow Google's steps; "
            f"then `agctl accounts enable {ref}`"
        )
    return f"when the cause is resolved, `agctl accounts enable {ref}`; or `agctl accounts remove {ref}`"


def _error_fix(err: dict[str, Any], ref: str) -> str:
    kind = err.get("kind")
    if kind == "config":
        return "set what the message names (`agctl config set KEY VALUE`), or `agctl oauth detect --yes`"
    if kind in UNREACHED_KINDS:
        return "check the network, proxy.upstream_proxy and upstream.endpoints; then `agctl doctor` again"
    return f"`agctl accounts refresh {ref}` again; if it persists, `agctl logs` shows Google's answers"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _differing_keys(local: Any, running: Any) -> list[str]:
    """The dotted keys whose values differ (names only: values may be secrets)."""
    a, b = _flatten(local), _flatten(running)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# ---------------------------------------------------------------- client settings


def _url_state(url: str, port: int, path: str) -> str:
    """``here``, ``wrong path`` or ``elsewhere``: where a base URL points."""
    try:
        u = urllib.parse.urlsplit(url.strip())
        host = (u.hostname or "").lower()
        url_port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        return "elsewhere"
    loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
    if u.scheme != "http" or not loopback or url_port != port:
        return "elsewhere"
    return "here" if u.path.rstrip("/") == path else "wrong path"


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = sc._read(path)
    if raw is None:
        return out
    for line in raw.decode("utf-8", "replace").splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if m:
            value = m.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            out[m.group(1)] = value
    return out


def _verdict(
    client: str,
    url: str | None,
    where: Path,
    port: int,
    path: str,
    keys: Iterable[str | None],
    proxy_key: str,
    auth_on: bool,
) -> tuple[str, str, str]:
    setup = f"`agctl setup {client}`"
    if not url:
        return OK, f"not set up for the proxy ({where}); optional: {setup}", ""
    state = _url_state(url, port, path)
    if state == "elsewhere":
        return WARN, f"points elsewhere: {url} ({where})", f"{setup} to use this proxy"
    if state == "wrong path":
        want = f"http://127.0.0.1:{port}{path}"
        return FAIL, f"points at this proxy with the wrong base URL {url}, want {want} ({where})", setup
    sent = [k for k in keys if k]
    if auth_on and proxy_key not in sent:
        why = "sends another key than proxy.api_key" if sent else "sends no key"
        return FAIL, f"points at this proxy but {why}, and the proxy checks keys ({where})", setup
    return OK, f"points at this proxy ({where})", ""


def client_state(client: str, port: int, proxy_key: str, auth_on: bool) -> tuple[str, str, str]:
    """(status, detail, fix) for one coding client's settings (the files
    ``agctl setup`` writes, ``ctl.setup_clients.client_files``)."""
    files = [f.path for f in sc.client_files(client)]
    main = files[0]
    raw = sc._read(main)
    if client == "claude":
        env = sc._load_json(main, raw).get("env")
        env = env if isinstance(env, dict) else {}
        url = env.get("ANTHROPIC_BASE_URL")
        keys = [env.get("ANTHROPIC_AUTH_TOKEN"), env.get("ANTHROPIC_API_KEY")]
        return _verdict(client, _str(url), main, port, "", [_str(k) for k in keys], proxy_key, auth_on)
    if client == "gemini":
        env_file = files[1]
        env = _read_env_file(env_file)
        url = env.get("GOOGLE_GEMINI_BASE_URL")
        st = _verdict(client, url, env_file, port, "", [env.get("GEMINI_API_KEY")], proxy_key, auth_on)
        if url and st[0] == OK:
            settings = sc._load_json(main, raw)
            security = settings.get("security")
            auth = security.get("auth") if isinstance(security, dict) else None
            selected = auth.get("selectedType") if isinstance(auth, dict) else None
            if selected not in (None, "gemini-api-key"):
                return (
                    FAIL,
                    f"{env_file} points at this proxy, but {main} signs in with {selected}, "
                    "so the Gemini CLI ignores the proxy",
                    "`agctl setup gemini`",
                )
        return st
    if client == "codex":
        try:
            data = tomllib.loads(raw.decode("utf-8")) if raw else {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CtlError(f"{main} is not valid TOML ({exc})") from None
        chosen = data.get("model_provider")
        providers = data.get("model_providers")
        providers = providers if isinstance(providers, dict) else {}
        prov = providers.get(chosen) if isinstance(chosen, str) else None
        if not isinstance(prov, dict):
            ours = providers.get(sc.PROVIDER)
            if isinstance(ours, dict) and _url_state(str(ours.get("base_url") or ""), port, "/v1") == "here":
                return (
                    WARN,
                    f"has the {sc.PROVIDER} provider but uses {chosen or 'its default'} ({main})",
                    "`agctl setup codex` selects it",
                )
            return OK, f"not set up for the proxy ({main}); optional: `agctl setup codex`", ""
        url = _str(prov.get("base_url"))
        env_key = _str(prov.get("env_key"))
        # Codex reads the key from its environment: this shell's is the best guess of it.
        key = os.environ.get(env_key) if env_key else None
        st = _verdict(client, url or "", main, port, "/v1", [key], proxy_key, auth_on=False)
        if st[0] == OK and url and env_key and not key:
            return (
                WARN,
                st[1] + f", but ${env_key} is not set in this shell",
                'eval "$(agctl setup codex --print)" before starting Codex',
            )
        if st[0] == OK and url and auth_on and key != proxy_key:
            return WARN, st[1] + f", but ${env_key} holds another key", 'eval "$(agctl setup codex --print)"'
        return st
    # opencode
    data = sc._load_json(main, raw)
    providers = data.get("provider")
    providers = providers if isinstance(providers, dict) else {}
    prov = providers.get(sc.PROVIDER)
    if not isinstance(prov, dict):
        return OK, f"not set up for the proxy ({main}); optional: `agctl setup opencode`", ""
    options = prov.get("options")
    options = options if isinstance(options, dict) else {}
    st = _verdict(
        client,
        _str(options.get("baseURL")),
        main,
        port,
        "/v1",
        [_str(options.get("apiKey"))],
        proxy_key,
        auth_on,
    )
    model = data.get("model")
    if st[0] == OK and isinstance(model, str) and not model.startswith(f"{sc.PROVIDER}/"):
        return (
            WARN,
            st[1] + f", but its default model is {model}",
            "`agctl setup opencode` makes ours the default",
        )
    return st


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- the command


def cmd_doctor(ctx: Ctx) -> int:
    doc = Doctor(ctx)
    try:
        doc.run()
    except CtlError as exc:  # the daemon went away or answered an error mid-way
        doc.add("doctor", FAIL, f"stopped early: {exc.message}", "run `agctl doctor` again")
    failed = any(c.status == FAIL for c in doc.checks)
    if ctx.json:
        print(json.dumps({"ok": not failed, "checks": [c.public() for c in doc.checks]}, indent=2))
    else:
        print("\n".join(c.line() for c in doc.checks))
        warned = sum(c.status == WARN for c in doc.checks)
        if failed:
            print("something failed: see the FAIL lines above, each with its fix")
        else:
            print("all well" + (f" ({warned} warning{'s' if warned > 1 else ''})" if warned else ""))
    return EXIT_FAILED if failed else EXIT_OK
