"""Admin API routes for accounts (``agctl accounts …``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Request, delete, get, post

from daemon.accounts import ide_import, oauth
from daemon.accounts.store import Account
from daemon.admin.common import _svc, body_json
from daemon.errors import BadRequest, ConfigError, GatewayError, UpstreamError
from daemon.upstream.cloudcode import UpstreamHTTPError

CHECK_CONCURRENCY = 4


def _upstream(exc: UpstreamHTTPError) -> GatewayError:
    return UpstreamError(f"Google answered {exc.status}: {exc.message}", upstream_status=exc.status)


async def _add(request: Request[Any, Any, Any], refresh_token: str, what: str, **kw: Any) -> Account:
    """Add (or update) an account; a failure says what failed and that nothing
    was saved (the pool writes the account file only once everything worked)."""
    svc = _svc(request)
    try:
        acct = await svc.pool.add_refresh_token(refresh_token, **kw)
    except UpstreamHTTPError as exc:
        raise _not_added(_upstream(exc), what) from None
    except ConfigError:
        raise  # already says exactly what to set
    except GatewayError as exc:
        raise _not_added(exc, what) from None
    await svc.account_added()
    return acct


def _not_added(exc: GatewayError, what: str) -> GatewayError:
    return type(exc)(
        f"{what} failed: {exc.message.rstrip('.')}. Nothing was added.",
        retry_after=exc.retry_after,
        param=exc.param,
        upstream_status=exc.upstream_status,
    )


@get("/accounts")
async def accounts_list(request: Request[Any, Any, Any]) -> dict[str, Any]:
    pool = _svc(request).pool
    return {"accounts": pool.list_public(), "broken_files": pool.store.broken}


@post("/accounts", status_code=200)
async def accounts_add(request: Request[Any, Any, Any]) -> dict[str, Any]:
    data = await body_json(request)
    token = data.get("refresh_token")
    if not isinstance(token, str) or not token.strip():
        raise BadRequest("refresh_token is required")
    acct = await _add(request, token, "adding the account")
    return {"account": acct.public()}


@post("/accounts/inspect", status_code=200)
async def accounts_inspect(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Whose login a refresh token is, before anything is written: refresh it
    (the stored access token is never trusted, UPSTREAM.md §3.2) and ask
    userinfo. Saves nothing; says whether the pool has the account already."""
    data = await body_json(request)
    token = data.get("refresh_token")
    if not isinstance(token, str) or not token.strip():
        raise BadRequest("refresh_token is required")
    svc = _svc(request)
    cfg = svc.config
    try:
        tokens = await oauth.refresh(svc.pool.http, cfg, token.strip())
        info = await oauth.userinfo(svc.pool.http, cfg, tokens.access_token)
    except ConfigError:
        raise
    except GatewayError as exc:
        raise type(exc)(
            f"checking the login failed: {exc.message.rstrip('.')}",
            upstream_status=exc.upstream_status,
        ) from None
    email = str(info["email"])
    known = any(a.email.lower() == email.lower() for a in svc.pool.accounts.values())
    return {"email": email, "known": known}


@post("/accounts/import-ide", status_code=200)
async def accounts_import(request: Request[Any, Any, Any]) -> dict[str, Any]:
    data = await body_json(request)
    path = data.get("path")
    token, used = ide_import.read_refresh_token(path if isinstance(path, str) and path else None)
    acct = await _add(request, token, f"importing the IDE's account from {used}")
    return {"account": acct.public(), "path": str(used)}


@post("/accounts/login", status_code=200)
async def login_start(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _svc(request)
    login = await svc.pool.logins.start(svc.config)
    return login.public()


@post("/accounts/login/{login_id:str}/code", status_code=200)
async def login_code(request: Request[Any, Any, Any], login_id: str) -> dict[str, Any]:
    data = await body_json(request)
    pasted = data.get("redirect")
    if not isinstance(pasted, str):
        raise BadRequest("redirect (the pasted redirect URL or code) is required")
    _svc(request).pool.logins.submit(login_id, pasted)
    return {"accepted": True}


@post("/accounts/login/{login_id:str}/wait", status_code=200)
async def login_wait(request: Request[Any, Any, Any], login_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Long-poll: the added account once the browser came back, or
    {"pending": true} after ``timeout`` seconds (agctl polls again)."""
    svc = _svc(request)
    logins = svc.pool.logins
    login = logins.get(login_id)
    try:
        got = await asyncio.wait_for(asyncio.shield(login.result), timeout=max(0.1, min(timeout, 60.0)))
    except TimeoutError:
        if time.time() - login.created > oauth.LOGIN_TIMEOUT:
            await logins.close(login_id)
            raise BadRequest(
                f"the login timed out after {int(oauth.LOGIN_TIMEOUT)} s: nothing was added"
            ) from None
        return {"pending": True}
    except GatewayError:
        await logins.close(login_id)
        raise
    try:
        cfg = svc.config
        try:
            tokens = await oauth.exchange_code(
                svc.pool.http, cfg, got["code"], login.redirect_uri, login.verifier
            )
        except ConfigError:
            raise
        except GatewayError as exc:
            raise _not_added(exc, "the Google sign-in (exchanging the code for tokens)") from None
        if not tokens.refresh_token:
            raise BadRequest(
                "Google returned no refresh token (consent was not offline): nothing was added; try again"
            )
        acct = await _add(request, tokens.refresh_token, "the Google sign-in", tokens=tokens)
    finally:
        await logins.close(login_id)
    return {"account": acct.public()}


@delete("/accounts/login/{login_id:str}", status_code=200)
async def login_cancel(request: Request[Any, Any, Any], login_id: str) -> dict[str, Any]:
    await _svc(request).pool.logins.close(login_id)
    return {"cancelled": True}


@delete("/accounts/{ref:str}", status_code=200)
async def accounts_remove(request: Request[Any, Any, Any], ref: str) -> dict[str, Any]:
    pool = _svc(request).pool
    acct = pool.find(ref)
    pool.remove(acct)
    return {"removed": acct.public()}


@post("/accounts/{ref:str}/{action:str}", status_code=200)
async def accounts_action(request: Request[Any, Any, Any], ref: str, action: str) -> dict[str, Any]:
    pool = _svc(request).pool
    acct = pool.find(ref)
    if action == "enable":
        pool.enable(acct)
    elif action == "disable":
        data = await body_json(request)
        pool.disable(acct, str(data.get("reason") or "disabled by the user"))
    elif action == "reset":
        pool.reset_cooldowns(acct)
    elif action == "refresh":
        try:
            await pool.refresh_account(acct)
        except UpstreamHTTPError as exc:
            raise _upstream(exc) from None
    else:
        raise BadRequest(f"unknown account action {action!r}: enable, disable, reset or refresh")
    return {"account": acct.public()}


@post("/accounts-refresh", status_code=200)
async def accounts_refresh_all(request: Request[Any, Any, Any]) -> dict[str, Any]:
    pool = _svc(request).pool
    results: list[dict[str, Any]] = []
    for acct in list(pool.accounts.values()):
        try:
            await pool.refresh_account(acct)
            results.append({"account": acct.public(), "ok": True})
        except (GatewayError, UpstreamHTTPError) as exc:
            results.append(
                {"account": acct.public(), "ok": False, "error": str(getattr(exc, "message", exc))}
            )
    return {"results": results}


@post("/accounts-check", status_code=200)
async def accounts_check(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What ``agctl doctor`` reports per account. Each enabled account is
    refreshed now, as ``agctl accounts refresh`` does (token, project, quota
    windows; a rotated refresh token is saved, a dead one disables the account
    as any refresh would); a disabled one is shown as it is, since a refresh
    cannot undo what disabled it. Errors keep their kind, so the caller can
    tell "Google cannot be reached" from "Google said no". Never a token."""
    pool = _svc(request).pool
    # A few at a time: a big pool must not burst Google's token endpoint.
    gate = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def check(acct: Account) -> dict[str, Any]:
        error: dict[str, Any] | None = None
        checked = acct.enabled
        if checked:
            try:
                async with gate:
                    await pool.refresh_account(acct)
            except UpstreamHTTPError as exc:
                error = {"kind": "upstream", "message": exc.message, "upstream_status": exc.status}
            except GatewayError as exc:
                error = {"kind": exc.kind, "message": exc.message, "upstream_status": exc.upstream_status}
        return {
            "account": acct.public(),
            "checked": checked,
            "ok": error is None,
            "error": error,
        }

    results = await asyncio.gather(*(check(a) for a in list(pool.accounts.values())))
    return {"results": list(results), "broken_files": pool.store.broken}


handlers = [
    accounts_list,
    accounts_add,
    accounts_import,
    accounts_inspect,
    login_start,
    login_code,
    login_wait,
    login_cancel,
    accounts_remove,
    accounts_action,
    accounts_refresh_all,
    accounts_check,
]
