"""The request log: one SQLite row per proxied request (``data/monitor.sqlite3``, WAL).

Writes never block the request path: ``record`` puts the row on a bounded
queue (a full queue counts a drop, never stalls), and one writer thread
inserts in batches. Retention is applied daily. Keys, tokens and
Authorization headers are never stored (bodies only when enabled, capped,
and redacted).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from daemon.config import Config
from daemon.errors import redact
from daemon.fsutil import ensure_private_dir

if TYPE_CHECKING:
    from daemon.dispatch import RequestCtx

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000
BATCH_MAX = 500
RETENTION_EVERY = 24 * 3600.0

COLUMNS = (
    "ts", "request_id", "protocol", "route", "client_model", "model", "account", "stream",
    "status", "error_kind", "error", "attempts", "latency_ms", "ttfb_ms", "input_tokens",
    "output_tokens", "thinking_tokens", "cached_tokens", "client", "user_agent",
    "request_body", "response_body",
)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL, request_id TEXT NOT NULL, protocol TEXT, route TEXT,
  client_model TEXT, model TEXT, account TEXT, stream INTEGER, status INTEGER,
  error_kind TEXT, error TEXT, attempts TEXT, latency_ms REAL, ttfb_ms REAL,
  input_tokens INTEGER, output_tokens INTEGER, thinking_tokens INTEGER,
  cached_tokens INTEGER, client TEXT, user_agent TEXT, request_body BLOB, response_body BLOB
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE INDEX IF NOT EXISTS requests_rid ON requests(request_id);
"""
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_encode = msgspec.json.Encoder().encode


def connect(path: Path) -> sqlite3.Connection:
    ensure_private_dir(path.parent)
    con = sqlite3.connect(str(path), timeout=5, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    try:
        path.chmod(0o600)
    except OSError:  # pragma: no cover
        pass
    return con


class Monitor:
    def __init__(self, path: Path, config: Callable[[], Config]) -> None:
        self.path = path
        self._config = config
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0
        self._last_retention = 0.0
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return self._config().monitor.enabled

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="monitor-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=1)
        except queue.Full:
            pass
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5)
        self._thread = None

    def _body(self, raw: bytes) -> bytes | None:
        cfg = self._config().monitor
        if not cfg.log_bodies or not raw:
            return None
        cap = cfg.max_body_bytes or 64 * 1024
        return redact(raw[:cap].decode("utf-8", "replace")).encode()

    def record(self, ctx: RequestCtx) -> None:
        if ctx.latency_ms is None:
            ctx.latency_ms = (time.perf_counter() - ctx.t0) * 1000
        if not self.enabled:
            return
        row = (
            ctx.started, ctx.request_id, ctx.protocol, ctx.route, ctx.client_model, ctx.model,
            ctx.account, int(ctx.stream), ctx.status, ctx.error_kind, redact(ctx.error)[:2000],
            _encode(ctx.attempts).decode(), round(ctx.latency_ms, 3),
            round(ctx.ttfb_ms, 3) if ctx.ttfb_ms is not None else None,
            ctx.usage.input_tokens, ctx.usage.output_tokens, ctx.usage.thinking_tokens,
            ctx.usage.cached_tokens, ctx.client, ctx.user_agent[:300],
            self._body(ctx.request_body), self._body(ctx.response_body),
        )
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
        if self._listeners:
            d = dict(zip(COLUMNS, row, strict=True))
            d.pop("request_body")
            d.pop("response_body")
            for q in list(self._listeners):
                if q.qsize() < 1000:
                    q.put_nowait(d)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(q)

    def _writer(self) -> None:
        try:
            con = connect(self.path)
        except sqlite3.Error:
            log.exception("monitor database %s cannot be opened; request log off", self.path)
            return
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                while len(batch) < BATCH_MAX:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._flush(con, batch)
                        return
                    batch.append(nxt)
                self._flush(con, batch)
                self._retention(con)
        finally:
            con.close()

    def _flush(self, con: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        try:
            con.execute("BEGIN")
            con.executemany(_INSERT, batch)
            con.execute("COMMIT")
            self.written += len(batch)
        except sqlite3.Error:
            log.exception("monitor write failed; %d row(s) lost", len(batch))
            self.dropped += len(batch)
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _retention(self, con: sqlite3.Connection, *, force: bool = False) -> int:
        now = time.time()
        if not force and now - self._last_retention < RETENTION_EVERY:
            return 0
        self._last_retention = now
        days = self._config().monitor.retention_days
        if days <= 0:
            return 0
        cur = con.execute("DELETE FROM requests WHERE ts < ?", (now - days * 86400,))
        return cur.rowcount

    # ---------------------------------------------------------------- reading

    def query(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        model: str | None = None,
        account: str | None = None,
        request_id: str | None = None,
        since: float | None = None,
        after_id: int | None = None,
    ) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        where, args = [], []  # type: ignore[var-annotated]
        if request_id:
            where.append("request_id = ?")
            args.append(request_id)
        if status:
            if status.endswith("xx") and status[0].isdigit():
                lo = int(status[0]) * 100
                where.append("status >= ? AND status < ?")
                args += [lo, lo + 100]
            else:
                where.append("status = ?")
                args.append(int(status))
        if model:
            where.append("(client_model = ? OR model = ?)")
            args += [model, model]
        if account:
            where.append("account = ?")
            args.append(account)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if after_id is not None:
            where.append("id > ?")
            args.append(after_id)
        sql = "SELECT id, " + ", ".join(COLUMNS) + " FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            rows = [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()
        for r in rows:
            for k in ("request_body", "response_body"):
                if isinstance(r.get(k), bytes):
                    r[k] = r[k].decode("utf-8", "replace")
            try:
                r["attempts"] = msgspec.json.decode(r["attempts"] or "[]")
            except msgspec.DecodeError:
                pass
        rows.reverse()
        return rows
