"""The admin API (Unix socket, used only by agctl).

Errors: ``{"error": {"kind", "message"}}`` with the GatewayError's status;
``kind`` is a stable code agctl maps to exit codes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Litestar, Request, Response, get, post, put
from litestar.exceptions import HTTPException

from daemon import config as config_mod
from daemon.admin import account_routes, monitor_routes
from daemon.admin.common import _svc, body_json
from daemon.app_deps import AdminDeps
from daemon.errors import BadRequest, GatewayError, InternalError, NotFound, PayloadTooLarge

log = logging.getLogger(__name__)


def _error(exc: GatewayError) -> Response[Any]:
    return Response(content={"error": exc.to_dict()}, status_code=exc.status, media_type="application/json")


def _gateway_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, GatewayError)
    return _error(exc)


def _http_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(NotFound(f"unknown admin route {request.method} {request.url.path}"))
    if exc.status_code == 413:
        return _error(PayloadTooLarge("request body is too large"))
    if exc.status_code == 405:
        err = BadRequest(f"{request.method} is not allowed on {request.url.path}")
        err.status = 405  # type: ignore[misc]
        return _error(err)
    if exc.status_code < 500:
        return _error(BadRequest(str(exc.detail)))
    return _error(InternalError("internal error"))


def _internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("admin error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(InternalError(f"internal error: {type(exc).__name__}; see the daemon log"))


@get("/status")
async def status(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _svc(request).status()


@post("/proxy/start", status_code=200)
async def proxy_start(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _svc(request)
    await svc.start_proxy()
    return svc.status()


@post("/proxy/stop", status_code=200)
async def proxy_stop(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _svc(request)
    await svc.stop_proxy()
    return svc.status()


@post("/proxy/restart", status_code=200)
async def proxy_restart(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _svc(request)
    await svc.restart_proxy()
    return svc.status()


@post("/shutdown", status_code=200)
async def shutdown(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = _svc(request)
    # Answer first, then stop: the reply must reach agctl.
    asyncio.get_running_loop().call_later(0.05, svc.request_shutdown)
    return {"shutting_down": True, "pid": svc.status()["daemon"]["pid"]}


@get("/config")
async def config_show(request: Request[Any, Any, Any], secrets: bool = False) -> dict[str, Any]:
    return config_mod.to_builtins(_svc(request).config, show_secrets=secrets)


@get("/config/{key:str}")
async def config_get(request: Request[Any, Any, Any], key: str) -> dict[str, Any]:
    return {"key": key, "value": config_mod.get_value(_svc(request).config, key)}


@put("/config/{key:str}")
async def config_set(request: Request[Any, Any, Any], key: str) -> dict[str, Any]:
    data = await body_json(request)
    raw = data.get("value")
    if not isinstance(raw, str):
        raise BadRequest('body must be {"value": "<string>"}')
    svc = _svc(request)
    value = svc.set_config(key, raw)
    shown = "(hidden)" if key in config_mod.SECRET_KEYS else value
    return {"key": key, "value": shown, "restart_pending": svc.restart_pending}


@post("/key/rotate", status_code=200)
async def key_rotate(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"api_key": _svc(request).rotate_key()}


def create_admin_app(service: AdminDeps) -> Litestar:
    app = Litestar(
        route_handlers=[
            status,
            proxy_start,
            proxy_stop,
            proxy_restart,
            shutdown,
            config_show,
            config_get,
            config_set,
            key_rotate,
            *account_routes.handlers,
            *monitor_routes.handlers,
        ],
        exception_handlers={
            GatewayError: _gateway_handler,
            HTTPException: _http_handler,
            Exception: _internal_handler,
        },
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
    app.state.service = service
    return app
