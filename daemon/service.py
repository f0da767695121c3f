"""The Service: owns config, the account pool, the upstream client, both
listeners and the sd_notify conversation. One per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any

from daemon import __version__
from daemon import config as config_mod
from daemon.accounts.pool import Pool
from daemon.accounts.store import AccountStore
from daemon.backends import BackendPlan
from daemon.compaction import Sealer
from daemon.config import Config
from daemon.dispatch import Dispatcher
from daemon.errors import Conflict, GatewayError, NoAccountAvailable
from daemon.fsutil import ensure_private_dir, remove_stale_temps
from daemon.gc_tuning import tune_after_start
from daemon.listeners import Listener, bind_tcp, bind_unix, raise_fd_limit
from daemon.metrics import Metrics
from daemon.monitor import Monitor
from daemon.paths import Paths
from daemon.protocols.signatures import SignatureStore
from daemon.proxy_state import ProxyState, State
from daemon.refusals import Refusals, monitor_writer
from daemon.response_store import ResponseStore
from daemon.sdnotify import Notifier
from daemon.upstream.http import HttpClient
from daemon.upstream.identity import Identity, VersionWatcher, manifest_url

log = logging.getLogger(__name__)

# How long in-flight requests may run on after SIGTERM / stop.
GRACE_SECONDS = 10.0
NO_ACCOUNT_MESSAGE = "No account available: add one with `agctl accounts add` first"


def next_steps(cfg: Config) -> str:
    """What a first start with no account prints once: the proxy is not
    started (nothing to serve with), so port 8045 refuses connections."""
    steps = [
        ("agctl accounts add", "sign in with Google in a browser (--no-browser over SSH)"),
        ("agctl accounts import", "or take the login of the Antigravity app, IDE or agy on this machine"),
        ("agctl start", "starts the proxy (the first account does it too: proxy.auto_start)"),
        ("agctl status", "says what runs, and why not"),
    ]
    if not cfg.oauth.secret():
        secret = ("agctl config set oauth.client_secret SECRET", "needed to sign in (or: agctl oauth detect)")
        steps.insert(0, secret)
    width = max(len(cmd) for cmd, _ in steps)
    head = f"No account yet, so the proxy ({cfg.bind_host()}:{cfg.proxy.port}) is not started. Next steps:"
    return "\n".join([head, *(f"  {cmd.ljust(width)}  {why}" for cmd, why in steps)])


def _http_settings(cfg: Config) -> tuple[object, ...]:
    """What ``HttpClient`` is made from: a change makes a new one."""
    return (
        cfg.proxy.upstream_proxy,
        cfg.proxy.request_timeout,
        cfg.upstream.connect_timeout,
        cfg.upstream.stream_idle_timeout,
        cfg.limits.upstream_max_body_bytes,
        cfg.limits.upstream_max_line_bytes,
        cfg.limits.upstream_max_header_bytes,
        cfg.limits.upstream_max_headers,
    )


class Service:
    def __init__(self, paths: Paths, cfg: Config, *, log_target: str = "stderr") -> None:
        self.paths = paths
        self._config = cfg
        self.log_target = log_target
        self.started_at = time.time()
        self.proxy_state = ProxyState()
        self.proxy_listener: Listener | None = None
        self.admin_listener: Listener | None = None
        self.bound_host = ""
        self.bound_port = 0
        self.restart_pending = False
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._proxy_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.http = HttpClient(cfg)
        self.store = AccountStore(paths.accounts_dir)
        self.identity = Identity(paths.data_dir / "client_version.json")
        self._configure_identity(cfg)
        self.pool = Pool(self.store, lambda: self._config, self.http, self.identity)
        self.version_watcher = VersionWatcher(self.identity, self._fetch_manifest, self._manifest_url)
        self.monitor = Monitor(paths.monitor_db, lambda: self._config)
        # Exact account tokens are scrubbed from logged bodies too.
        self.monitor.extra_secrets = lambda: [
            t for a in list(self.pool.accounts.values()) for t in (a.access_token, a.refresh_token) if t
        ]
        self.dispatcher = Dispatcher(lambda: self.pool, lambda: self._config)
        self.backends = BackendPlan(lambda: self._config, self.pool.active_count)
        self.signatures = SignatureStore()
        self.metrics = Metrics(lambda: self.pool, lambda: self._config, lambda: self.monitor)
        self.responses = ResponseStore()
        # Seals and opens Codex's compaction items (key made on first use).
        self.compaction = Sealer(paths.compaction_key)
        # Refused requests: counted each, logged one row per client and reason a minute.
        self.refusals = Refusals(monitor_writer(self), self.metrics.refused)
        self.fd_limit = 1024

    # ------------------------------------------------------------ config

    @property
    def config(self) -> Config:
        return self._config

    def auth_settings(self) -> tuple[str, str]:
        return self.effective_auth_mode(), self._config.proxy.api_key

    def effective_auth_mode(self) -> str:
        # "auto" follows the host the proxy is really bound to, not only the
        # config: turning LAN access off while the proxy still listens on
        # 0.0.0.0 (until `agctl restart`) must not switch auth off.
        cfg = self._config
        if cfg.proxy.auth_mode == "auto" and self.bound_host == "0.0.0.0":
            return "all_except_health"
        return cfg.effective_auth_mode()

    def base_url(self) -> str:
        cfg = self._config
        port = self.bound_port or cfg.proxy.port
        return f"http://127.0.0.1:{port}"

    def set_config(self, key: str, raw: str) -> Any:
        new = config_mod.with_value(self._config, key, raw)
        self._apply_config(new)
        if key.startswith("models.") and raw == "":
            return None  # "" removed that mapping: there is no value to read back
        return config_mod.get_value(new, key)

    def rotate_key(self) -> str:
        new = config_mod.with_value(self._config, "proxy.api_key", config_mod.new_api_key())
        self._apply_config(new)
        return new.proxy.api_key

    def _configure_identity(self, cfg: Config) -> None:
        up = cfg.upstream
        self.identity.configure(
            family=up.client_family, version=up.client_version, user_agent_override=up.user_agent
        )

    def _manifest_url(self) -> str:
        up = self._config.upstream
        if not up.version_check:
            return ""
        return up.version_url or manifest_url(up.client_family)

    async def _fetch_manifest(
        self, url: str, headers: dict[str, str], limit: int, timeout: float
    ) -> tuple[int, bytes]:
        resp = await self.http.get(url, headers)
        return resp.status_code, resp.content[:limit]

    def _apply_config(self, new: Config) -> None:
        old = self._config
        config_mod.save(new, self.paths.config_file)
        self._config = new
        self._configure_identity(new)
        running = self.proxy_state.state in (State.RUNNING, State.STARTING)
        if running and (new.proxy.port != self.bound_port or new.bind_host() != self.bound_host):
            self.restart_pending = True
        elif running:
            self.restart_pending = False
        if _http_settings(new) != _http_settings(old):
            old_http = self.http
            self.http = HttpClient(new)
            self.pool.http = self.http
            self._spawn(old_http.aclose())

    # ------------------------------------------------------------ proxy

    def can_serve(self) -> bool:
        zai = self._config.zai
        if zai.enabled and zai.dispatch_mode != "off" and zai.api_key:
            return True
        return self.pool.active_count() > 0

    async def account_added(self) -> None:
        """The first usable account arrived: a proxy that waited only for it
        starts now (``proxy.auto_start``), as it would have at daemon start."""
        st = self.proxy_state
        if (
            self._config.proxy.auto_start
            and st.state == State.STOPPED
            and st.reason == NO_ACCOUNT_MESSAGE
            and self.can_serve()
        ):
            try:
                await self.start_proxy()
            except GatewayError as exc:
                log.warning("proxy not started after the first account: %s", exc.message)
            else:
                log.info("the first account is in: proxy started")

    async def start_proxy(self) -> None:
        async with self._proxy_lock:
            if self.proxy_state.state == State.RUNNING:
                raise Conflict(f"the proxy is already running on {self.base_url()}")
            if not self.can_serve():
                raise NoAccountAvailable(NO_ACCOUNT_MESSAGE)
            self.proxy_state.to(State.STARTING)
            cfg = self._config
            host, port = cfg.bind_host(), cfg.proxy.port
            try:
                sock = bind_tcp(host, port)
                from daemon.proxy.app import create_proxy_app
                from daemon.proxy.connection import ConnectionGuard

                self.bound_host, self.bound_port = host, sock.getsockname()[1]
                guard = ConnectionGuard(lambda: self._config.limits, self.refusals, self.fd_limit)
                listener = Listener(
                    create_proxy_app(self),
                    sock,
                    name="proxy",
                    graceful=GRACE_SECONDS,
                    protocol=guard.protocol_class(),
                )
                await listener.start()
            except GatewayError as exc:
                self.proxy_state.to(State.FAILED, exc.message)
                self.bound_host, self.bound_port = "", 0
                self._notify_status()
                raise
            self.proxy_listener = listener
            self.restart_pending = False
            self.proxy_state.to(State.RUNNING)
            if host == "0.0.0.0":
                log.warning(
                    "the proxy listens on all interfaces (LAN access on), auth mode %s",
                    self.effective_auth_mode(),
                )
            log.info("proxy listening on %s:%s", host, self.bound_port)
            self._notify_status()

    async def stop_proxy(self) -> None:
        async with self._proxy_lock:
            if self.proxy_state.state != State.RUNNING or self.proxy_listener is None:
                if self.proxy_state.state == State.FAILED:
                    self.proxy_state.to(State.STOPPED)
                    self._notify_status()
                    return
                raise Conflict("the proxy is not running")
            self.proxy_state.to(State.STOPPING)
            listener, self.proxy_listener = self.proxy_listener, None
            await listener.stop()
            self.bound_host, self.bound_port = "", 0
            self.restart_pending = False
            self.proxy_state.to(State.STOPPED)
            self._notify_status()

    async def restart_proxy(self) -> None:
        if self.proxy_state.state == State.RUNNING:
            await self.stop_proxy()
        await self.start_proxy()

    def _notify_status(self) -> None:
        self.notifier.status(self.status_line())

    def status_line(self) -> str:
        st = self.proxy_state
        if st.state == State.RUNNING:
            return f"proxy running on {self.bound_host}:{self.bound_port}"
        if st.state == State.FAILED:
            return f"proxy failed: {st.reason}"
        return f"proxy {st.state}"

    def status(self) -> dict[str, Any]:
        cfg = self._config
        st = self.proxy_state
        running = st.state == State.RUNNING
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "uptime": round(time.time() - self.started_at, 3),
                "started_at": self.started_at,
                "socket": str(self.admin_socket_path),
                "config_file": str(self.paths.config_file),
                "data_dir": str(self.paths.data_dir),
                "logs": self.log_target,
            },
            "proxy": {
                "state": str(st.state),
                "reason": st.reason,
                "since": st.since,
                "host": self.bound_host if running else cfg.bind_host(),
                "port": self.bound_port if running else cfg.proxy.port,
                "base_url": self.base_url(),
                "auth_mode": self.effective_auth_mode(),
                "auth_mode_setting": cfg.proxy.auth_mode,
                "allow_lan_access": cfg.proxy.allow_lan_access,
                "restart_pending": self.restart_pending,
            },
            "accounts": {"active": self.pool.active_count(), "total": len(self.pool.accounts)},
            "upstream": {"client": self.identity.public(), "endpoints": list(cfg.upstream.endpoints)},
            # Where the OAuth client secret comes from (never the secret): the
            # daemon's environment is not agctl's, so only the daemon can say.
            "oauth": {
                "client_id": cfg.oauth.client_id,
                "secret_source": "config"
                if cfg.oauth.client_secret
                else "env"
                if os.environ.get(config_mod.SECRET_ENV)
                else "",
            },
            "paths": self.paths_status(),
            "zai": {"enabled": cfg.zai.enabled, "dispatch_mode": cfg.zai.dispatch_mode},
            "credits": {
                "enabled": cfg.credits.enabled,
                "daily_limit": cfg.credits.daily_limit,
                "balance": sum(a.credits.balance or 0 for a in self.pool.accounts.values()),
                "requests_today": sum(
                    a.credits.requests_today
                    for a in self.pool.accounts.values()
                    if a.credits.day == time.strftime("%Y-%m-%d")
                ),
            },
        }

    def paths_status(self) -> dict[str, str]:
        """The files and directories the daemon creates (README "First steps" gives their modes)."""
        p = self.paths
        return {
            "config_file": str(p.config_file),
            "data_dir": str(p.data_dir),
            "accounts_dir": str(p.accounts_dir),
            "monitor_db": str(p.monitor_db),
            "socket": str(self.admin_socket_path),
        }

    # ------------------------------------------------------------ lifecycle

    @property
    def admin_socket_path(self) -> Any:
        from daemon.paths import socket_path

        return socket_path(self.paths)

    def request_shutdown(self) -> None:
        log.info("shutdown requested")
        self._stop.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)
        self.fd_limit = raise_fd_limit()
        log.debug("file descriptor limit %d", self.fd_limit)
        sock_path = self.admin_socket_path
        # First, so that a second daemon on the same home refuses (Conflict)
        # before it touches the accounts or the monitor database.
        admin_sock = bind_unix(sock_path, own_dir=sock_path == self.paths.socket)
        try:
            # Accounts are loaded before the admin socket answers (agctl waits
            # in the listen backlog meanwhile): it never sees a half-started daemon.
            # Holding the socket, this is the only writer: a temp file
            # left now is from a write that died before its rename.
            cfg_file = self.paths.config_file
            for stale in [
                *remove_stale_temps(cfg_file.parent, prefix=f".{cfg_file.name}."),
                *remove_stale_temps(self.paths.accounts_dir),
            ]:
                log.info("removed %s, left by a write that did not finish", stale.name)
            self.pool.load()
            ensure_private_dir(self.paths.accounts_dir)
            await self.monitor.start()
            from daemon.admin.app import create_admin_app

            self.admin_listener = Listener(create_admin_app(self), admin_sock, name="admin", graceful=2.0)
            await self.admin_listener.start()
        except BaseException:
            admin_sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock_path)
            raise
        log.info("antigravityd %s (pid %s) admin socket %s", __version__, os.getpid(), sock_path)
        if self._config.proxy.auto_start:
            try:
                await self.start_proxy()
            except GatewayError as exc:
                # No account at all is a first start, not a fault: next steps below, no warning.
                level = logging.INFO if self._first_start() else logging.WARNING
                log.log(level, "proxy not started: %s", exc.message)
                if self.proxy_state.state == State.STOPPED:
                    self.proxy_state.reason = exc.message
        if self._first_start():
            self._print_next_steps()
        self.pool.start_background()
        self.version_watcher.start()
        self._spawn(self.refusals.run_sweeper())
        tune_after_start()
        if self.notifier.enabled:
            log.debug("sd_notify via %s", self.notifier.backend)
        self.notifier.ready(self.status_line())
        interval = self.notifier.watchdog_interval()
        if interval and self.notifier.enabled:
            self._spawn(self._watchdog(interval))
        await self._stop.wait()
        await self.shutdown()
        return 0

    def _first_start(self) -> bool:
        return not self.pool.accounts and not self.can_serve()

    def _print_next_steps(self) -> None:
        text = next_steps(self._config)
        if self.log_target == "stderr":  # a terminal (or a file): a plain block, once
            print(f"\n{text}\n", file=sys.stderr, flush=True)
        else:
            log.info("%s", text)

    async def _watchdog(self, interval: float) -> None:
        # Sent from the event loop itself: a blocked loop stops the pings.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        if self.proxy_listener is not None:
            with contextlib.suppress(GatewayError):
                await self.stop_proxy()
        await self.version_watcher.stop()
        await self.pool.stop_background()
        for task in list(self._tasks):
            task.cancel()
        if self.admin_listener is not None:
            await self.admin_listener.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.admin_socket_path)
        self.refusals.sweep(everything=True)  # the counts not yet written
        await self.monitor.stop()
        await self.http.aclose()
        log.info("antigravityd stopped")
