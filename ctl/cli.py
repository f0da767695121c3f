"""``agctl``: drive antigravityd over its admin socket.

Exit codes: 0 ok, 1 failed, 2 bad usage, 3 daemon not reachable.
Every command takes ``--json`` for machine output.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import webbrowser
from pathlib import Path
from typing import Any

from ctl.client import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CtlError
from ctl.context import Ctx


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    d = time.time() - ts
    if d < 0:
        return _until(ts)
    if d < 60:
        return f"{int(d)}s ago"
    if d < 3600:
        return f"{int(d // 60)}m ago"
    if d < 86400:
        return f"{int(d // 3600)}h ago"
    return f"{int(d // 86400)}d ago"


def _until(ts: float | None) -> str:
    if not ts:
        return "-"
    d = ts - time.time()
    if d <= 0:
        return "now"
    if d < 3600:
        return f"in {int(d // 60)}m{int(d % 60):02d}s"
    return f"in {int(d // 3600)}h{int(d % 3600 // 60):02d}m"


def _duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# ---------------------------------------------------------------- status / proxy


def cmd_status(ctx: Ctx) -> int:
    st = ctx.client.request("GET", "/status")
    if ctx.json:
        ctx.out(st)
        return EXIT_OK
    d, p, a = st["daemon"], st["proxy"], st["accounts"]
    lines = [
        f"daemon   running  pid {d['pid']}  version {d['version']}  up {_duration(d['uptime'])}",
        f"proxy    {p['state']}" + (f" ({p['reason']})" if p.get("reason") else ""),
    ]
    if p["state"] == "running":
        lines.append(f"         {p['host']}:{p['port']}  base URL {p['base_url']}")
    else:
        lines.append(f"         would bind {p['host']}:{p['port']}")
    lines.append(f"auth     {_auth_text(p['auth_mode'], p['auth_mode_setting'])}")
    if p.get("restart_pending"):
        lines.append("         config changed: run `agctl restart` to apply the new port / LAN setting")
    lines.append(f"accounts {a['active']} active / {a['total']} total")
    cr = st.get("credits")
    if cr and (cr["enabled"] or cr["balance"]):
        lines.append(
            f"credits  {'on' if cr['enabled'] else 'off'}, cap {cr['daily_limit']}/account/day, "
            f"balance {cr['balance']:g}, {cr['requests_today']} paid request(s) today"
        )
    client = (st.get("upstream") or {}).get("client")
    if client:
        lines.append(f"client   {client['user_agent']}  ({client['source']})")
        rejected = client.get("rejected")
        if rejected:
            lines.append(f"         REFUSED by Google: {rejected['message']}")
            lines.append(f"         fix: {rejected['fix']}")
    if st.get("zai", {}).get("enabled"):
        lines.append(f"z.ai     {st['zai']['dispatch_mode']}")
    print("\n".join(lines))
    return EXIT_OK


# What each effective auth mode means to a client (README "Auth modes").
AUTH_MEANING = {
    "off": "any key accepted",
    "strict": "the key is required on every route",
    "all_except_health": "the key is required on every route but /healthz",
}


def _auth_text(mode: str, setting: str) -> str:
    meaning = AUTH_MEANING.get(mode, "")
    if setting == "auto":
        # "auth off (auto)" read like "the key is off": say why it is off.
        where = "while only 127.0.0.1 listens" if mode == "off" else "as the proxy listens on the LAN"
        return f"{mode} (auto: {meaning} {where})"
    return f"{mode} ({meaning})" if meaning else mode


def _proxy(ctx: Ctx, action: str) -> int:
    st = ctx.client.request("POST", f"/proxy/{action}")
    p = st["proxy"]
    ctx.out(st, f"proxy {p['state']}" + (f" on {p['base_url']}" if p["state"] == "running" else ""))
    return EXIT_OK


def cmd_start(ctx: Ctx) -> int:
    return _proxy(ctx, "start")


def cmd_stop(ctx: Ctx) -> int:
    return _proxy(ctx, "stop")


def cmd_restart(ctx: Ctx) -> int:
    return _proxy(ctx, "restart")


def cmd_shutdown(ctx: Ctx) -> int:
    data = ctx.client.request("POST", "/shutdown")
    sock = ctx.client.socket
    for _ in range(200):  # wait until the daemon really is gone
        if not sock.exists():
            break
        time.sleep(0.05)
    ctx.out(data, f"antigravityd (pid {data.get('pid')}) stopped")
    return EXIT_OK


# ---------------------------------------------------------------- config / key


def cmd_config(ctx: Ctx) -> int:
    a = ctx.args
    if a.config_cmd == "show":
        data = ctx.client.request("GET", "/config", params={"secrets": "true" if a.secrets else None})
        if ctx.json:
            ctx.out(data)
        else:
            import msgspec

            print(msgspec.toml.encode(data).decode().strip())
        return EXIT_OK
    if a.config_cmd == "get":
        data = ctx.client.request("GET", f"/config/{a.key}")
        val = data["value"]
        ctx.out(
            data,
            json.dumps(val)
            if isinstance(val, dict | list)
            else str(val).lower()
            if isinstance(val, bool)
            else str(val),
        )
        return EXIT_OK
    data = ctx.client.request("PUT", f"/config/{a.key}", json={"value": a.value})
    if data["value"] is None:  # `set models.X ""` removes a mapping
        text = f"{a.key} removed"
    else:
        text = f"{a.key} = {json.dumps(data['value'])}"
    if data.get("restart_pending"):
        text += "\nthe proxy is running: run `agctl restart` to apply it"
    ctx.out(data, text)
    return EXIT_OK


def cmd_key(ctx: Ctx) -> int:
    data = ctx.client.request("POST", "/key/rotate")
    ctx.out(data, f"new proxy.api_key: {data['api_key']}\n(the old key stopped working now)")
    return EXIT_OK


# ---------------------------------------------------------------- accounts


def _accounts_table(accounts: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("ID", "EMAIL", "TIER", "STATE", "PROJECT", "QUOTA", "LAST USED"):
        # Ids, emails and projects are copied into other commands: fold, never cut with "…".
        keep = col in ("ID", "EMAIL", "PROJECT")
        table.add_column(col, overflow="fold" if keep else "ellipsis")
    for acc in accounts:
        state = acc["state"]
        if state == "disabled":
            state = f"disabled: {acc['disabled_reason']}"
            if acc.get("validation_url"):
                state += f"\n  open {acc['validation_url']}"
        elif state == "cooling_down":
            parts = [f"{m} {_until(c['until'])} ({c['reason']})" for m, c in acc["cooldowns"].items()]
            state = "cooling down: " + "; ".join(parts)
        # The 5-hour and weekly windows of each quota group (UPSTREAM.md §4.2).
        quota = (acc.get("quota_line") or "-").replace(" | ", "\n")
        credits = acc.get("credits") or {}
        if credits.get("balance") is not None:
            quota += f"\ncredits {credits['balance']:g}" + (
                f" (spent today {credits['spent_today']:g})" if credits.get("spent_today") else ""
            )
            if credits.get("exhausted"):
                quota += " out"
        if quota == "-" and acc["models"]:
            fracs = [
                q["remaining_fraction"]
                for q in acc["models"].values()
                if q.get("remaining_fraction") is not None
            ]
            if fracs:
                quota = f"{len(acc['models'])} models, lowest {round(min(fracs) * 100)}%"
        table.add_row(
            acc["id"],
            acc["email"],
            acc["tier"] + (f" ({acc['plan']})" if acc.get("plan") else "") if acc["tier"] else "-",
            state,
            acc["project"] or "-",
            quota,
            _ago(acc.get("last_used")),
        )
    console = _console()
    if not console.is_terminal:
        # Piped or captured output has no width to fit: rich would assume 80
        # columns and fold every cell; print each row whole instead.
        from rich.console import Console

        console = Console(highlight=False, width=1000)
    console.print(table)


def _print_account(ctx: Ctx, data: dict[str, Any], verb: str) -> None:
    acc = data["account"]
    ctx.out(
        data,
        f"{verb} {acc['email']} (id {acc['id']}, tier {acc['tier'] or '-'}, "
        f"project {acc['project'] or '-'}, {len(acc['models'])} models)",
    )


def cmd_accounts(ctx: Ctx) -> int:
    a = ctx.args
    c = ctx.client
    sub = a.accounts_cmd
    if sub in (None, "list"):
        data = c.request("GET", "/accounts")
        if ctx.json:
            ctx.out(data)
        elif not data["accounts"]:
            print("no accounts yet: add one with `agctl accounts add`")
        else:
            _accounts_table(data["accounts"])
        for name, problem in (data.get("broken_files") or {}).items():
            print(f"warning: account file {name} is unreadable and was skipped: {problem}", file=sys.stderr)
        return EXIT_OK
    if sub == "add":
        if a.refresh_token:
            _print_account(
                ctx,
                c.request("POST", "/accounts", json={"refresh_token": a.refresh_token}, timeout=120),
                "added",
            )
            return EXIT_OK
        return _login(ctx)
    if sub in ("import", "import-ide"):
        from ctl.imports import cmd_import

        if sub == "import-ide":  # the older name: the IDE's database only
            a.source, a.all = "ide", False
        return cmd_import(ctx)
    if sub == "remove":
        data = c.request("DELETE", f"/accounts/{a.ref}")
        ctx.out(data, f"removed {data['removed']['email']}")
        return EXIT_OK
    if sub in ("enable", "disable", "reset"):
        _print_account(
            ctx,
            c.request("POST", f"/accounts/{a.ref}/{sub}"),
            f"{sub}d" if sub != "reset" else "cooldowns cleared for",
        )
        return EXIT_OK
    if sub == "refresh":
        if a.ref:
            _print_account(ctx, c.request("POST", f"/accounts/{a.ref}/refresh", timeout=120), "refreshed")
            return EXIT_OK
        data = c.request("POST", "/accounts-refresh", timeout=300)
        failed = [r for r in data["results"] if not r["ok"]]
        text = (
            "\n".join(
                f"{'ok    ' if r['ok'] else 'FAILED'} {r['account']['email']}"
                + (f": {r['error']}" if not r["ok"] else "")
                for r in data["results"]
            )
            or "no accounts"
        )
        ctx.out(data, text)
        return EXIT_FAILED if failed else EXIT_OK
    raise CtlError(f"unknown accounts command {sub}", EXIT_USAGE)


def _login(ctx: Ctx) -> int:
    a = ctx.args
    c = ctx.client
    login = c.request("POST", "/accounts/login")
    lid, url = login["login_id"], login["url"]
    deadline = time.time() + float(a.timeout)
    try:
        if a.no_browser:
            print(
                "Open this URL in a browser, sign in, then paste the URL it redirects to\n"
                "(it starts with http://localhost…/oauth-callback and may show an error page):\n",
                file=sys.stderr,
            )
            print(url, file=sys.stderr)
            pasted = input("\nredirect URL or code: ") if sys.stdin.isatty() else sys.stdin.readline()
            c.request("POST", f"/accounts/login/{lid}/code", json={"redirect": pasted.strip()})
        else:
            opened = os.environ.get("AGCTL_NO_OPEN") != "1" and webbrowser.open(url)
            print(
                (
                    "Opened your browser to sign in. If it did not open, visit:\n"
                    if opened
                    else "Sign in here:\n"
                )
                + url,
                file=sys.stderr,
            )
        spinner = None
        if not ctx.json and sys.stderr.isatty():
            spinner = _console().status("waiting for the Google sign-in…")
            spinner.start()
        try:
            while True:
                left = deadline - time.time()
                if left <= 0:
                    raise CtlError(
                        f"timed out after {a.timeout} s waiting for the sign-in: nothing was added"
                    )
                data = c.request(
                    "POST",
                    f"/accounts/login/{lid}/wait",
                    params={"timeout": min(20.0, left)},
                    timeout=min(20.0, left) + 60,
                )
                if not data.get("pending"):
                    break
        finally:
            if spinner is not None:
                spinner.stop()
    except (KeyboardInterrupt, CtlError):
        try:
            c.request("DELETE", f"/accounts/login/{lid}")
        except CtlError:
            pass
        raise
    _print_account(ctx, data, "added")
    return EXIT_OK


# ---------------------------------------------------------------- logs / stats / monitor


def _log_row(r: dict[str, Any]) -> list[str]:
    """One request as table cells: time, id, route, model → upstream model,
    account, status, latency, tokens in/out."""
    model = r.get("client_model") or "-"
    if r.get("model") and r["model"] != model:
        model += f" → {r['model']}"
    tokens = f"{r.get('input_tokens') or 0}/{r.get('output_tokens') or 0}"
    status = str(r.get("status"))
    if r.get("error_kind"):
        status += f" {r['error_kind']}"
    account = r.get("account") or "-"
    attempts = r.get("attempts") or []
    if isinstance(attempts, list) and len(attempts) > 1:
        account += f" ({len(attempts)} tries)"
    return [
        time.strftime("%m-%d %H:%M:%S", time.localtime(r["ts"])),
        str(r.get("request_id") or "-"),
        f"{r.get('protocol')}/{r.get('route')}" + (" ⇢" if r.get("stream") else ""),
        model,
        account,
        status,
        f"{r['latency_ms']:.0f}ms" if r.get("latency_ms") is not None else "-",
        tokens,
    ]


def cmd_logs(ctx: Ctx) -> int:
    a = ctx.args
    c = ctx.client
    if a.logs_cmd == "show":  # everything known about one request
        row = c.request("GET", f"/logs/{a.request_id}")["row"]
        if ctx.json:
            ctx.out({"row": row})
            return EXIT_OK
        lines: list[str] = []
        for k, v in row.items():
            if k in ("request_body", "response_body") or v is None or v == "":
                continue
            if k == "ts":
                v = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v)) + f" ({_ago(v)})"
            elif k in ("latency_ms", "ttfb_ms"):
                v = f"{v:.0f} ms"
            elif k == "attempts":
                if v:
                    lines.append("attempts")
                for i, att in enumerate(v, 1):
                    err = f"  {att.get('error')}" if att.get("error") else ""
                    lines.append(f"  {i}. {att.get('account')}  {att.get('status') or '-'}{err}")
                continue
            lines.append(f"{k:16} {v}")
        for k in ("request_body", "response_body"):
            if row.get(k):
                lines += ["", f"{k}:", row[k]]
        print("\n".join(lines))
        return EXIT_OK
    if a.n < 1:
        raise CtlError("-n must be at least 1", EXIT_USAGE, "invalid_request")
    filters = {"status": a.status, "model": a.model, "account": a.account}
    data = c.request("GET", "/logs", params={"n": a.n, **filters})
    rows = data["rows"]
    if ctx.json and not a.follow:
        ctx.out(data)
        return EXIT_OK
    if ctx.json:  # --follow --json: one JSON object per line, backlog first
        for r in rows:
            print(json.dumps(r, default=str), flush=True)
    elif rows:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        headers = ("TIME", "REQUEST", "ROUTE", "MODEL", "ACCOUNT", "STATUS", "LATENCY")
        for h in (*headers, "TOKENS in/out"):
            table.add_column(h, no_wrap=True)
        for r in rows:
            table.add_row(*_log_row(r))
        console = _console()
        if not console.is_terminal:  # piped (grep, a file): never wrap or cut a row
            from rich.console import Console

            console = Console(highlight=False, width=1000)
        console.print(table)
    elif not a.follow:
        if data.get("enabled", True):
            print("no requests logged yet")
        else:
            print("no requests logged (the monitor is off: `agctl monitor on`)")
    if not ctx.json and data.get("dropped"):
        print(
            f"({data['dropped']} row(s) dropped since the daemon started: the log could not keep up)",
            file=sys.stderr,
        )
    if not a.follow:
        return EXIT_OK
    try:
        for line in c.stream_lines("/logs/follow", params=filters):
            if not line:
                continue
            row = json.loads(line)
            if "following" in row:
                print("agctl: following new requests (Ctrl-C to stop)", file=sys.stderr, flush=True)
                continue
            if "keepalive" in row:
                continue
            if ctx.json:
                print(json.dumps(row, default=str), flush=True)
            else:
                print("  ".join(_log_row(row)), flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `agctl logs -f | head`
        pass
    return EXIT_OK


def cmd_stats(ctx: Ctx) -> int:
    a = ctx.args
    data = ctx.client.request("GET", "/stats", params={"since": a.since, "by": a.by})
    if ctx.json:
        ctx.out(data)
        return EXIT_OK
    if not data["groups"]:
        print(f"no requests in the last {a.since}")
        return EXIT_OK
    from rich.table import Table

    def ms(v: float | None) -> str:
        return f"{v:.0f}ms" if v is not None else "-"

    table = Table(box=None, pad_edge=False, title=f"last {a.since}, by {a.by}", show_footer=False)
    for h in (a.by.upper(), "REQUESTS", "ERRORS", "TOKENS IN", "TOKENS OUT", "P50", "P95"):
        table.add_column(h, justify="left" if h == a.by.upper() else "right")
    for r in [*data["groups"], data["total"]]:
        table.add_row(
            str(r["key"] or "-"),
            str(r["requests"]),
            str(r["errors"]),
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            ms(r["p50_ms"]),
            ms(r["p95_ms"]),
            end_section=r is data["groups"][-1],
        )
    console = _console()
    if not console.is_terminal:
        from rich.console import Console

        console = Console(highlight=False, width=1000)
    console.print(table)
    return EXIT_OK


def cmd_credits(ctx: Ctx) -> int:
    """``agctl credits [on|off]``: the AI-credit fallback, always with the cap that applies."""
    state = ctx.args.state
    if state is not None:
        ctx.client.request(
            "PUT", "/config/credits.enabled", json={"value": "true" if state == "on" else "false"}
        )
    cfg = ctx.client.request("GET", "/config/credits")["value"]
    accounts = ctx.client.request("GET", "/accounts")["accounts"]
    lines = [
        f"credits  {'on' if cfg['enabled'] else 'off'}: when every account is out of quota for a model, "
        "one retry is paid with Google One AI credits"
        if cfg["enabled"]
        else "credits  off: never spent",
        f"cap      {cfg['daily_limit']} credits per account per day (credits.daily_limit); "
        f"accounts {', '.join(cfg['accounts'])}; groups {', '.join(cfg['groups'])}",
    ]
    for acc in accounts:
        c = acc.get("credits") or {}
        if c.get("balance") is None:
            continue
        state_text = " (out: waits for a new balance)" if c.get("exhausted") else ""
        lines.append(
            f"         {acc['email']}: balance {c['balance']:g}, spent today {c['spent_today']:g} "
            f"in {c['requests_today']} request(s){state_text}"
        )
    ctx.out(
        {"credits": cfg, "accounts": [{"email": a["email"], **(a.get("credits") or {})} for a in accounts]},
        "\n".join(lines),
    )
    return EXIT_OK


def cmd_monitor(ctx: Ctx) -> int:
    state = ctx.args.state
    if state is None:
        info = ctx.client.request("GET", "/monitor")
        mib = info["size_bytes"] / (1024 * 1024)
        ctx.out(
            info,
            "\n".join(
                [
                    f"monitor  {'on' if info['enabled'] else 'off'}  {info['path']} ({mib:.1f} MiB)",
                    f"         {info['written']} written, {info['dropped']} dropped, "
                    f"{info['pending']} queued since start",
                    f"         keeps {info['retention_days']} day(s), at most {info['max_rows']:,} rows"
                    + ("; bodies logged" if info["log_bodies"] else ""),
                ]
            ),
        )
        return EXIT_OK
    data = ctx.client.request("POST", f"/monitor/{state}")
    ctx.out(data, f"monitor {'on' if data['enabled'] else 'off'}")
    return EXIT_OK


# ---------------------------------------------------------------- service files


def _daemon_path() -> str:
    found = shutil.which("antigravityd")
    if found:
        return str(Path(found).absolute())
    candidate = Path(sys.executable).parent / "antigravityd"
    if candidate.exists():
        return str(candidate)
    raise CtlError("cannot find the installed `antigravityd` program on PATH or beside this Python")


def cmd_service(ctx: Ctx) -> int:
    from ctl import service_files

    a = ctx.args
    home = Path(os.environ.get("AGCTL_SERVICE_HOME") or Path.home())
    if sys.platform == "darwin" or a.launchd:
        target = home / "Library" / "LaunchAgents" / f"{service_files.LAUNCHD_LABEL}.plist"
        uid = os.getuid()
        load = f"launchctl bootstrap gui/{uid} {shlex.quote(str(target))}"
        unload = f"launchctl bootout gui/{uid} {shlex.quote(str(target))}"
        if a.service_cmd == "install":
            import platformdirs

            log_dir = platformdirs.user_log_dir("antigravity")
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(service_files.launchd_plist(_daemon_path(), log_dir))
            cmds = [load]
        else:
            cmds = [unload]
    else:
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        if os.environ.get("AGCTL_SERVICE_HOME"):
            config_home = home / ".config"
        target = config_home / "systemd" / "user" / "antigravity.service"
        if a.service_cmd == "install":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(service_files.systemd_unit(_daemon_path()))
            cmds = ["systemctl --user daemon-reload", "systemctl --user enable --now antigravity"]
        else:
            cmds = ["systemctl --user disable --now antigravity"]
    if a.service_cmd == "uninstall":
        if a.now:
            _run_all(cmds)
        existed = target.exists()
        target.unlink(missing_ok=True)
        ctx.out(
            {"removed": str(target), "existed": existed, "commands": cmds},
            f"removed {target}" + ("" if a.now else "\nalso run: " + " && ".join(cmds)),
        )
        return EXIT_OK
    if a.now:
        _run_all(cmds)
    ctx.out(
        {"installed": str(target), "commands": cmds, "ran": bool(a.now)},
        f"wrote {target}\n" + ("started it" if a.now else "now run:\n  " + "\n  ".join(cmds)),
    )
    return EXIT_OK


def _run_all(cmds: list[str]) -> None:
    for cmd in cmds:
        try:
            proc = subprocess.run(shlex.split(cmd), capture_output=True, text=True)
        except OSError as exc:  # e.g. no launchctl / systemctl on this machine
            raise CtlError(
                f"cannot run `{cmd}`: {exc.strerror or exc}; the file is written, run the "
                "command where that program exists"
            ) from None
        if proc.returncode != 0:
            raise CtlError(f"`{cmd}` failed: {proc.stderr.strip() or proc.returncode}")


# ---------------------------------------------------------------- oauth / setup


def cmd_oauth(ctx: Ctx) -> int:
    from ctl.oauth_detect import cmd_detect

    return cmd_detect(ctx)


def cmd_setup(ctx: Ctx) -> int:
    from ctl.setup_clients import cmd_setup as run

    return run(ctx)


def cmd_doctor(ctx: Ctx) -> int:
    from ctl.doctor import cmd_doctor as run

    return run(ctx)


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # bad usage -> exit 2
        self.print_usage(sys.stderr)
        print(f"agctl: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def format_help(self) -> str:
        """``--help`` starts with what the command does, in one line, then
        the usage (which for some commands is several lines of options)."""
        summary = (self.description or "").strip()
        if not summary:
            return super().format_help()
        self.description = None
        try:
            body = super().format_help()
        finally:
            self.description = summary
        return f"{summary}\n\n{body}"


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand its one-line ``help`` (shown in its parent's
    list) as its own description too: `agctl X --help` says what X does.
    Walks the whole tree, so commands added later are covered."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            text = helps.get(name)
            if sub.description is None and isinstance(text, str) and text:
                sub.description = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
            _describe(sub)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument("--socket", default=argparse.SUPPRESS, help="admin socket path (or AGCTL_SOCKET)")

    p = _Parser(
        prog="agctl", description="Control antigravityd (the local Antigravity gateway).", parents=[common]
    )
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[common])
        return sp

    add("status", "show the daemon and proxy state, and why the proxy is not running")
    add("start", "start the proxy listener")
    add("stop", "stop the proxy listener (the daemon stays up)")
    add("restart", "restart the proxy listener (applies port / LAN changes)")
    add("shutdown", "stop the daemon")

    acc = add("accounts", "list and manage the Google accounts (default: list)")
    asub = acc.add_subparsers(dest="accounts_cmd", parser_class=_Parser)
    asub.add_parser("list", help="list the accounts with their state and quota", parents=[common])
    add_p = asub.add_parser("add", help="add an account (browser sign-in)", parents=[common])
    add_p.add_argument(
        "--no-browser", action="store_true", help="print the URL and paste the redirect URL back"
    )
    add_p.add_argument("--refresh-token", help="add from a refresh token, no browser")
    add_p.add_argument("--timeout", type=int, default=300, help="seconds to wait for the sign-in")
    imp = asub.add_parser(
        "import",
        help="import the logins of the Antigravity app / IDE and agy on this machine",
        parents=[common],
    )
    imp.add_argument(
        "--from",
        dest="source",
        choices=["ide", "app", "agy", "file"],
        help="where to look (default: everywhere, keyring first); `file` takes a PATH",
    )
    imp.add_argument("path", nargs="?", help="a state.vscdb or token file to read (with --from file)")
    imp.add_argument("--all", action="store_true", help="import every login found")
    imp = asub.add_parser("import-ide", help="the same as `import --from ide [PATH]`", parents=[common])
    imp.add_argument("path", nargs="?", help="path of state.vscdb (default: the IDE's)")
    for name, h in (
        ("remove", "remove"),
        ("enable", "enable"),
        ("disable", "disable"),
        ("reset", "clear cooldowns of"),
    ):
        sp = asub.add_parser(name, help=f"{h} an account", parents=[common])
        sp.add_argument("ref", metavar="ID-or-EMAIL")
    ref = asub.add_parser("refresh", help="refresh tokens and quota now", parents=[common])
    ref.add_argument("ref", nargs="?", metavar="ID-or-EMAIL")

    cfg = add("config", "show or change config.toml")
    csub = cfg.add_subparsers(dest="config_cmd", required=True, parser_class=_Parser)
    show = csub.add_parser("show", help="print the whole config (secrets hidden)", parents=[common])
    show.add_argument("--secrets", action="store_true", help="show keys and secrets in full")
    g = csub.add_parser("get", help="print one config key", parents=[common])
    g.add_argument("key")
    s = csub.add_parser("set", help="set one key (validated, saved atomically)", parents=[common])
    s.add_argument("key")
    s.add_argument("value")

    key = add("key", "manage the proxy API key (proxy.api_key)")
    ksub = key.add_subparsers(dest="key_cmd", required=True, parser_class=_Parser)
    ksub.add_parser("rotate", help="generate a new proxy.api_key", parents=[common])

    logs = add("logs", "show the proxy's request log, newest last")
    logs.add_argument("-n", type=int, default=50, help="how many of the newest rows (default 50)")
    logs.add_argument("--follow", "-f", action="store_true", help="then stream new rows until Ctrl-C")
    logs.add_argument("--status", help="4xx, 5xx or a code such as 429")
    logs.add_argument("--model", help="client or upstream model name")
    logs.add_argument("--account", help="account email (or its part before @)")
    lsub = logs.add_subparsers(dest="logs_cmd", parser_class=_Parser)
    lshow = lsub.add_parser("show", help="show everything about one request", parents=[common])
    lshow.add_argument("request_id")

    stats = add("stats", "show usage statistics: requests, errors, tokens, latency")
    stats.add_argument("--since", default="24h", help="window: e.g. 30m, 24h, 7d (default 24h)")
    stats.add_argument(
        "--by",
        default="model",
        choices=["model", "account", "client"],
        help="group by upstream model, account, or client (Claude Code, Codex, an SDK: from the user agent)",
    )

    mon = add("monitor", "the request log: show its state, or turn it on or off")
    mon.add_argument("state", nargs="?", choices=["on", "off"])

    cred = add("credits", "the AI-credit fallback when quota is spent: show it, or turn it on or off")
    cred.add_argument("state", nargs="?", choices=["on", "off"])

    oauth = add("oauth", "the OAuth client used for Google sign-in")
    osub = oauth.add_subparsers(dest="oauth_cmd", required=True, parser_class=_Parser)
    det = osub.add_parser(
        "detect", help="find the client id and secret in a local Antigravity / agy install", parents=[common]
    )
    det.add_argument("--yes", "-y", action="store_true", help="save what is found without asking")
    det.add_argument(
        "--path",
        action="append",
        help="an install folder, app bundle, .asar or binary to search (repeatable)",
    )

    setup = add("setup", "point a coding client at the proxy")
    setup.add_argument("client", choices=["claude", "codex", "gemini", "opencode"])
    mode = setup.add_mutually_exclusive_group()
    mode.add_argument("--undo", action="store_true", help="restore the client's files as they were")
    mode.add_argument("--print", action="store_true", help="print shell `export` lines instead of writing")
    setup.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    setup.add_argument("--model", help="the model the client should use (default: the best the pool serves)")

    add("doctor", "check everything, one line each with its fix (exit 1 when anything failed)")

    svc = add("service", "install or remove the systemd user unit or LaunchAgent")
    ssub = svc.add_subparsers(dest="service_cmd", required=True, parser_class=_Parser)
    for name, h in (
        ("install", "write the systemd user unit or LaunchAgent and print how to start it"),
        ("uninstall", "remove the systemd user unit or LaunchAgent"),
    ):
        sp = ssub.add_parser(name, help=h, parents=[common])
        sp.add_argument("--now", action="store_true", help="also run systemctl/launchctl")
        sp.add_argument("--launchd", action="store_true", help=argparse.SUPPRESS)
    _describe(p)
    return p


COMMANDS = {
    "status": cmd_status,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "shutdown": cmd_shutdown,
    "accounts": cmd_accounts,
    "config": cmd_config,
    "key": cmd_key,
    "logs": cmd_logs,
    "stats": cmd_stats,
    "monitor": cmd_monitor,
    "credits": cmd_credits,
    "service": cmd_service,
    "oauth": cmd_oauth,
    "setup": cmd_setup,
    "doctor": cmd_doctor,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, default in (("json", False), ("socket", os.environ.get("AGCTL_SOCKET"))):
        if not hasattr(args, name):
            setattr(args, name, default)
    ctx = Ctx(args)
    try:
        return COMMANDS[args.cmd](ctx)
    except CtlError as exc:
        if ctx.json:
            print(json.dumps({"error": {"kind": exc.kind or "failed", "message": exc.message}}))
        print(f"agctl: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_FAILED
    finally:
        if ctx._client is not None:
            ctx._client.close()
