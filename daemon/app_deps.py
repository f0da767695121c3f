"""What each app is given, named: the admin API and the proxy take an object
with exactly these members (the Service has them all), never the Service's
type itself, so neither app imports the module that wires it (STYLE.md:
a small typed context per layer, as mitmproxy's layers get)."""

from __future__ import annotations

from typing import Any, Protocol

from daemon.accounts.pool import Pool
from daemon.backends import BackendPlan
from daemon.compaction import Sealer
from daemon.config import Config
from daemon.dispatch import Dispatcher
from daemon.metrics import Metrics
from daemon.monitor import Monitor
from daemon.protocols.signatures import SignatureStore
from daemon.refusals import Refusals
from daemon.response_store import ResponseStore
from daemon.upstream.http import HttpClient


class AdminDeps(Protocol):
    """What the admin API (``agctl``'s side) uses."""

    @property
    def config(self) -> Config: ...

    pool: Pool
    monitor: Monitor
    restart_pending: bool

    def status(self) -> dict[str, Any]: ...
    def set_config(self, key: str, raw: str) -> Any: ...
    def rotate_key(self) -> str: ...
    async def start_proxy(self) -> None: ...
    async def stop_proxy(self) -> None: ...
    async def restart_proxy(self) -> None: ...
    async def account_added(self) -> None: ...
    def request_shutdown(self) -> None: ...


class ProxyDeps(Protocol):
    """What the proxy app and its routes use."""

    @property
    def config(self) -> Config: ...

    pool: Pool
    dispatcher: Dispatcher
    backends: BackendPlan
    monitor: Monitor
    metrics: Metrics
    signatures: SignatureStore
    responses: ResponseStore
    refusals: Refusals
    http: HttpClient
    compaction: Sealer  # seals Codex's compaction items (routes_openai)
    started_at: float

    def auth_settings(self) -> tuple[str, str]: ...
    def base_url(self) -> str: ...
