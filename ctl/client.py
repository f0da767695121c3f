"""The admin API client: JSON over HTTP on the daemon's Unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

USAGE_KINDS = {"config", "invalid_request", "not_found"}


class CtlError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind


class Unreachable(CtlError):
    def __init__(self, socket: Path, why: str) -> None:
        super().__init__(
            f"antigravityd is not running (no answer on {socket}: {why}).\n"
            "Start it with `antigravityd` in a terminal, or `systemctl --user start antigravity` "
            "(after `agctl service install`).",
            EXIT_UNREACHABLE,
            "unreachable",
        )


class AdminClient:
    def __init__(self, socket: Path, timeout: float = 30.0) -> None:
        self.socket = socket
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url="http://agctl",
            timeout=timeout,
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        if not self.socket.exists():
            raise Unreachable(self.socket, "socket file does not exist")
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            resp = self._client.request(
                method,
                path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                **kwargs,
            )
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unreachable(self.socket, type(exc).__name__) from None
        except httpx.TimeoutException:
            raise CtlError("the daemon did not answer in time") from None
        except httpx.TransportError as exc:
            raise _broke_off(exc) from None
        return self._decode(resp)

    @staticmethod
    def _decode(resp: httpx.Response) -> Any:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            kind = str(err.get("kind", ""))
            message = str(err.get("message") or f"HTTP {resp.status_code}")
            code = EXIT_USAGE if kind in USAGE_KINDS and resp.status_code in (400, 404) else EXIT_FAILED
            raise CtlError(message, code, kind)
        return data

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        if not self.socket.exists():
            raise Unreachable(self.socket, "socket file does not exist")
        try:
            with self._client.stream("GET", path, params=params, timeout=None) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(resp)
                yield from resp.iter_lines()  # type: ignore[misc]
        except httpx.ConnectError as exc:
            raise Unreachable(self.socket, type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise _broke_off(exc) from None


def _broke_off(exc: httpx.TransportError) -> CtlError:
    """The socket answered, then the connection broke (the daemon stopped or
    restarted mid-call, or something else listens there)."""
    return CtlError(
        f"the connection to antigravityd broke off before its answer was complete ({type(exc).__name__}); "
        "it may have stopped or restarted: check with `agctl status`"
    )
