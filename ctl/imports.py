"""``agctl accounts import``: logins already on this machine into the pool.

agctl, not the daemon, looks for them: the keyring belongs to the user's
desktop session and relative paths to agctl's working directory. Each login
found is shown with its email before anything is written (from the file when
it says, else from Google through the daemon's ``/accounts/inspect``, which
saves nothing); then each chosen one is added through ``POST /accounts``,
where the daemon refreshes the token itself. Tokens go only over the admin
socket, never to the terminal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctl.client import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CtlError
from daemon.accounts import local_logins
from daemon.accounts.local_logins import FoundLogin, Search

if TYPE_CHECKING:
    from ctl.context import Ctx


def _say(ctx: Ctx, text: str) -> None:
    if not ctx.json:
        print(text, file=sys.stderr, flush=True)


def _search(ctx: Ctx) -> Search:
    a = ctx.args
    choice = a.source
    path = a.path
    if choice == "file" and not path:
        raise CtlError("--from file needs a PATH: `agctl accounts import --from file PATH`", EXIT_USAGE)
    if path:
        # A path given with --from ide (or `import-ide PATH`) is the IDE's database.
        p = Path(os.path.abspath(os.path.expanduser(path)))
        return local_logins.discover(("ide",) if choice == "ide" else ("file",), file=p)
    try:
        sources = local_logins.sources_for(choice)
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    return local_logins.discover(sources)


def _nothing_found(search: Search) -> CtlError:
    tried = "\n".join(f"  - {line}" for line in search.tried) or "  (nowhere: no place known on this OS)"
    return CtlError(
        "no Antigravity login found. Looked in:\n"
        f"{tried}\n"
        "Sign in to Antigravity or agy first, pass a file with `agctl accounts import --from file PATH`, "
        "or sign in here with `agctl accounts add`.",
        EXIT_FAILED,
        "not_found",
    )


def _label(login: FoundLogin) -> str:
    return f"{login.email or '(email unknown)'}  from {local_logins.home_relative(login.location)}"


def _inspect(ctx: Ctx, found: list[FoundLogin]) -> tuple[list[FoundLogin], dict[int, str]]:
    """Fill in the emails the files did not give (the daemon asks Google).
    Returns the logins and, by index, why a login could not be checked."""
    out: list[FoundLogin] = []
    dead: dict[int, str] = {}
    for i, login in enumerate(found):
        if login.email is None:
            try:
                data = ctx.client.request(
                    "POST", "/accounts/inspect", json={"refresh_token": login.refresh_token}, timeout=120
                )
                login = FoundLogin(
                    login.source,
                    login.location,
                    login.refresh_token,
                    str(data["email"]),
                    login.expiry,
                    login.path,
                )
            except CtlError as exc:
                if exc.code == 3 or exc.kind == "config":
                    raise  # no daemon, or no OAuth client: nothing can be checked
                dead[i] = exc.message
        out.append(login)
    return out, dead


def _dedupe_by_email(
    found: list[FoundLogin], dead: dict[int, str]
) -> tuple[list[FoundLogin], dict[int, str]]:
    """One login per account: the first source wins (the keyring is the live
    copy; the app's token file is written once at sign-in, §3.2c)."""
    seen: set[str] = set()
    kept: list[FoundLogin] = []
    kept_dead: dict[int, str] = {}
    for i, login in enumerate(found):
        key = (login.email or "").lower()
        if key and key in seen and i not in dead:
            continue
        if key and i not in dead:
            seen.add(key)
        if i in dead:
            kept_dead[len(kept)] = dead[i]
        kept.append(login)
    return kept, kept_dead


def _choose(ctx: Ctx, found: list[FoundLogin], dead: dict[int, str]) -> list[int]:
    if ctx.args.all:
        return list(range(len(found)))
    usable = [i for i in range(len(found)) if i not in dead]
    if len(usable) <= 1:  # the one that works (or the dead one, to say why)
        return usable or [0]
    if sys.stdin.isatty() and not ctx.json:
        while True:
            answer = input(f"import which login? [1-{len(found)}, a = all, q = none]: ").strip().lower()
            if answer in ("q", ""):
                return []
            if answer in ("a", "all"):
                return list(range(len(found)))
            if answer.isdigit() and 1 <= int(answer) <= len(found):
                return [int(answer) - 1]
    raise CtlError(
        f"{len(found)} logins found (listed above): pass --all to import every one, or pick one "
        "with --from ide|app|agy or --from file PATH",
        EXIT_USAGE,
    )


def cmd_import(ctx: Ctx) -> int:
    search = _search(ctx)
    if not search.found:
        raise _nothing_found(search)
    for line in search.problems:
        _say(ctx, f"note: {line}")
    found, dead = _inspect(ctx, search.found)
    found, dead = _dedupe_by_email(found, dead)
    _say(ctx, "found:")
    for i, login in enumerate(found):
        note = f"   (cannot be used: {dead[i]})" if i in dead else ""
        _say(ctx, f"  {i + 1}. {_label(login)}{note}")
    chosen = _choose(ctx, found, dead)
    imported: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for i in chosen:
        login = found[i]
        where = login.path or login.location
        if i in dead:
            failed.append({**login.public(), "error": dead[i]})
            continue
        try:
            data = ctx.client.request(
                "POST", "/accounts", json={"refresh_token": login.refresh_token}, timeout=120
            )
        except CtlError as exc:
            if exc.code == 3:
                raise
            failed.append({**login.public(), "error": exc.message})
            continue
        imported.append({**login.public(), "account": data["account"]})
        acc = data["account"]
        if not ctx.json:
            print(
                f"imported from {local_logins.home_relative(where) if not login.path else where}: "
                f"{acc['email']} (id {acc['id']}, tier {acc['tier'] or '-'}, "
                f"project {acc['project'] or '-'}, {len(acc['models'])} models)"
            )
    result: dict[str, Any] = {
        "imported": imported,
        "failed": failed,
        "found": [x.public() for x in found],
        "tried": search.tried,
    }
    if len(imported) == 1:  # the shape `import-ide --json` always had
        result["account"] = imported[0]["account"]
        result["path"] = imported[0]["path"] or imported[0]["location"]
    if ctx.json:
        ctx.out(result)
    if failed:
        for f in failed:
            error = str(f["error"])
            if "nothing was added" not in error.lower():
                error = error.rstrip(".") + ". Nothing was added for this login."
            print(f"agctl: {f['location']}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if not chosen:
        _say(ctx, "nothing imported")
    return EXIT_OK
