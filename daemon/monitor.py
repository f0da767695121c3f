"""The request log: one SQLite row per proxied request (``data/monitor.sqlite3``, WAL).

Writes never block the request path: ``record`` puts the row on a bounded
queue (a full queue counts a drop, never stalls) and one writer thread
inserts in batches; the slow parts of a row (body redaction, the scrub of
known secret values) run in that thread, not on the event loop.

Bounds (the file must not grow without limit on a busy machine):

* retention: rows older than ``monitor.retention_days`` are deleted when the
  writer starts and then once a day (``RETENTION_EVERY``), idle or not;
* rows: at most ``max_rows`` (default ``MAX_ROWS``); past it the oldest rows
  go, down to ``PRUNE_TO`` of the cap so pruning does not run every batch;
* bytes: when the live pages pass ``max_bytes`` (default ``MAX_DB_BYTES``,
  what logged bodies can reach before the row cap does) the oldest rows go
  the same way; freed pages are given back with ``incremental_vacuum`` and
  the WAL truncated, so the files on disk shrink too (between batches the
  file can pass the cap by at most one batch).

Never stored: API keys, access/refresh tokens, ``Authorization`` headers.
Headers are not logged at all; text fields and bodies (only with
``monitor.log_bodies``, capped at ``max_body_bytes``) pass through
``daemon.errors.redact`` and a scrub of the exact secret values the daemon
knows: the config's keys always, plus whatever ``extra_secrets`` returns
(the service can hand it the accounts' access and refresh tokens).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from daemon.config import Config
from daemon.errors import redact
from daemon.fsutil import ensure_private_dir

if TYPE_CHECKING:
    from daemon.records import RequestCtx

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000
BATCH_MAX = 500
# How long the writer lets rows gather before a transaction (seconds).
BATCH_WAIT = 0.05
# Check the size bounds after this many rows, or this long after a write.
BOUNDS_ROWS = 1000
BOUNDS_SECONDS = 10.0
RETENTION_EVERY = 24 * 3600.0
# How long the idle writer sleeps between looks at the retention clock.
IDLE_TICK = 60.0
# ~400 bytes a row without bodies: 100k rows is ~40 MB with indexes.
MAX_ROWS = 100_000
MAX_DB_BYTES = 256 * 1024 * 1024
PRUNE_TO = 0.9
# Used when log_bodies is on and max_body_bytes is 0 (unset).
DEFAULT_BODY_CAP = 64 * 1024
ERROR_CAP = 2000
UA_CAP = 300
# Rows queued with their bodies at most (x 2 x the body cap of memory).
BODY_QUEUE_MAX = 500
# A follower that does not read is not allowed to grow memory.
FOLLOW_QUEUE_MAX = 1000

COLUMNS = (
    "ts",
    "request_id",
    "protocol",
    "route",
    "client_model",
    "model",
    "account",
    "stream",
    "status",
    "error_kind",
    "error",
    "attempts",
    "latency_ms",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
    "thinking_tokens",
    "cached_tokens",
    "client",
    "user_agent",
    "credits",
    "request_body",
    "response_body",
)
_BODY_AT = COLUMNS.index("request_body")
_TEXT_AT = tuple(COLUMNS.index(c) for c in ("client_model", "model", "error", "attempts", "user_agent"))
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL, request_id TEXT NOT NULL, protocol TEXT, route TEXT,
  client_model TEXT, model TEXT, account TEXT, stream INTEGER, status INTEGER,
  error_kind TEXT, error TEXT, attempts TEXT, latency_ms REAL, ttfb_ms REAL,
  input_tokens INTEGER, output_tokens INTEGER, thinking_tokens INTEGER,
  cached_tokens INTEGER, client TEXT, user_agent TEXT, request_body BLOB, response_body BLOB,
  credits INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE INDEX IF NOT EXISTS requests_rid ON requests(request_id);
"""
_ID_SPAN = "SELECT (SELECT min(id) FROM requests), (SELECT max(id) FROM requests)"
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_encode = msgspec.json.Encoder().encode

STATS_BY = ("model", "account", "client")


def connect(path: Path) -> sqlite3.Connection:
    ensure_private_dir(path.parent)
    con = sqlite3.connect(str(path), timeout=5, isolation_level=None, check_same_thread=False)
    # Only takes effect on a new file (before the table exists): lets
    # incremental_vacuum give pruned pages back to the file system.
    con.execute("PRAGMA auto_vacuum=INCREMENTAL")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    # Databases of earlier releases lack later columns: add them (SQLite adds
    # a column without rewriting the table).
    have = {row[1] for row in con.execute("PRAGMA table_info(requests)")}
    if "credits" not in have:
        con.execute("ALTER TABLE requests ADD COLUMN credits INTEGER DEFAULT 0")
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            p.chmod(0o600)
        except OSError:
            pass
    return con


# ---------------------------------------------------------------- pure helpers


def status_clause(status: str) -> tuple[int, int]:
    """``4xx`` / ``5xx`` / ``429`` -> the [lo, hi) status range; ValueError if neither."""
    s = status.strip().lower()
    if len(s) == 3 and s.endswith("xx") and s[0] in "12345":
        lo = int(s[0]) * 100
        return lo, lo + 100
    if s.isdigit() and 100 <= int(s) <= 599:
        return int(s), int(s) + 1
    raise ValueError(f"status filter {status!r}: use 4xx, 5xx or a code such as 429")


def account_matches(account: str | None, want: str) -> bool:
    """An email, case-insensitively, or just its local part (``alice``)."""
    acct = (account or "").lower()
    w = want.lower()
    return acct == w or ("@" not in w and acct.split("@")[0] == w)


def row_matches(
    row: dict[str, Any],
    *,
    status: str | None = None,
    model: str | None = None,
    account: str | None = None,
) -> bool:
    """The filters of ``query`` for a row already in memory (``logs --follow``)."""
    if status:
        lo, hi = status_clause(status)
        if not lo <= int(row.get("status") or 0) < hi:
            return False
    if model and model not in (row.get("client_model"), row.get("model")):
        return False
    return not account or account_matches(row.get("account"), account)


# (substring of the lower-cased user agent, client family). First match wins,
# so the tools come before the SDKs they are built on: Claude Code sends
# "claude-cli/1.0.x (external, cli)" through the Anthropic JS SDK, Codex
# "codex_cli_rs/0.x ..." (or codex_exec), the Gemini CLI "GeminiCLI/0.x".
_CLIENT_FAMILIES: tuple[tuple[str, str], ...] = (
    ("claude-cli/", "claude-code"),
    ("claude-code", "claude-code"),
    ("codex", "codex"),
    ("geminicli", "gemini-cli"),
    ("gemini-cli", "gemini-cli"),
    ("opencode", "opencode"),
    ("cursor", "cursor"),
    ("cline", "cline"),
    ("roo-code", "roo-code"),
    ("aider", "aider"),
    ("litellm", "litellm"),
    ("langchain", "langchain"),
    ("google-genai-sdk", "google-genai-sdk"),
    ("google-api-", "google-api-client"),
    ("python-httpx", "httpx"),
    ("python-requests", "requests"),
    ("aiohttp", "aiohttp"),
    ("curl/", "curl"),
    ("wget", "wget"),
)
# The OpenAI and Anthropic SDKs send "<Class>/<Lang> <version>", e.g.
# "OpenAI/Python 1.99.0", "AsyncAnthropic/Python 0.60.0", "Anthropic/JS 0.54.0".
_SDK_RE = re.compile(r"(openai|anthropic)/(python|js)\b")
_PRODUCT_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}")


def client_family(user_agent: str) -> str:
    """Which kind of client sent a request, from its User-Agent: tells Claude
    Code from Codex from the SDKs; an unknown agent is named by its product
    token ("unknown" when there is none)."""
    ua = (user_agent or "").lower()
    for needle, family in _CLIENT_FAMILIES:
        if needle in ua:
            return family
    sdk = _SDK_RE.search(ua)
    if sdk:
        return f"{sdk.group(1)}-sdk/{sdk.group(2)}"
    m = _PRODUCT_RE.match((user_agent or "").strip())
    return m.group(0).lower() if m else "unknown"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """``30m`` / ``24h`` / ``7d`` / ``2w`` / seconds -> an epoch time that long ago."""
    m = _DURATION_RE.match(value or "")
    if not m:
        raise ValueError(f"since {value!r}: use a duration such as 30m, 24h or 7d")
    now = time.time() if now is None else now
    return now - float(m.group(1)) * _UNIT[m.group(2)]


# ---------------------------------------------------------------- the monitor


class Monitor:
    def __init__(
        self,
        path: Path,
        config: Callable[[], Config],
        *,
        queue_max: int = QUEUE_MAX,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_DB_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._config = config
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._clock = clock
        # SimpleQueue (C) and a bound checked by hand: queue.Queue's lock and
        # Condition were ~2 % of a proxied request's CPU (tests/bench profile).
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._queue_max = queue_max
        self._thread: threading.Thread | None = None
        # Two counters, one per thread that writes it (no shared +=).
        self._dropped_full = 0  # event loop: the queue was full
        self._dropped_failed = 0  # writer: a batch could not be written
        self.written = 0
        self.pruned = 0
        self._last_retention = 0.0
        self._bounds_written = -1  # check once at start
        self._bounds_at = 0.0
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: More exact secret values to scrub from every stored text, besides
        #: the config's keys and what ``redact`` recognises (e.g. the
        #: accounts' tokens). Called in the writer thread, once per batch.
        self.extra_secrets: Callable[[], Iterable[str]] | None = None

    @property
    def enabled(self) -> bool:
        return self._config().monitor.enabled

    @property
    def dropped(self) -> int:
        return self._dropped_full + self._dropped_failed

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="monitor-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._thread = None

        def _finish() -> None:
            self._queue.put(None)  # what is queued is written first (FIFO), then the writer ends
            thread.join(10)

        await asyncio.get_running_loop().run_in_executor(None, _finish)

    # ---------------------------------------------------------------- request path

    def record(self, ctx: RequestCtx) -> None:
        """Queue one request's row. O(small): never waits for the writer."""
        if ctx.latency_ms is None:
            ctx.latency_ms = (time.perf_counter() - ctx.t0) * 1000
        cfg = self._config().monitor
        if not cfg.enabled:
            return
        req_body = resp_body = None
        # Bodies only when asked for, cut to the cap here (the queue holds no
        # more than that), and only while the writer keeps up: a backlog keeps
        # its rows but not their bodies, so memory stays bounded.
        if cfg.log_bodies and self._queue.qsize() < BODY_QUEUE_MAX:
            cap = cfg.max_body_bytes or DEFAULT_BODY_CAP
            req_body, resp_body = ctx.request_body[:cap], ctx.response_body[:cap]
        row = (
            ctx.started,
            ctx.request_id,
            ctx.protocol,
            ctx.route,
            ctx.client_model[:200],
            ctx.model[:200],
            ctx.account,
            int(ctx.stream),
            ctx.status,
            ctx.error_kind,
            # Text is scrubbed by the writer (off the event loop) and, for
            # live followers, in _publish.
            ctx.error[:ERROR_CAP],
            _encode(ctx.attempts).decode() if ctx.attempts else "[]",
            round(ctx.latency_ms, 3),
            round(ctx.ttfb_ms, 3) if ctx.ttfb_ms is not None else None,
            ctx.usage.input_tokens,
            ctx.usage.output_tokens,
            ctx.usage.thinking_tokens,
            ctx.usage.cached_tokens,
            ctx.client,
            ctx.user_agent[:UA_CAP],
            int(ctx.credits),
            # Raw bytes: redacted by the writer, off the event loop.
            req_body,
            resp_body,
        )
        if self._queue.qsize() >= self._queue_max:
            self._dropped_full += 1
        else:
            self._queue.put(row)
        if self._listeners:
            self._publish(row)

    def _publish(self, row: tuple[Any, ...]) -> None:
        d = dict(zip(COLUMNS[:_BODY_AT], row[:_BODY_AT], strict=True))
        for i in _TEXT_AT:
            if row[i]:
                d[COLUMNS[i]] = redact(row[i])
        try:
            d["attempts"] = msgspec.json.decode(d["attempts"])
        except msgspec.DecodeError:
            pass
        loop = self._loop
        try:
            same_loop = loop is None or asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        for q in list(self._listeners):
            if q.qsize() >= FOLLOW_QUEUE_MAX:
                continue  # a stalled follower misses rows; the request never waits
            if same_loop:
                q.put_nowait(d)
            elif loop is not None:
                loop.call_soon_threadsafe(q.put_nowait, d)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._listeners.discard(q)

    # ---------------------------------------------------------------- writer thread

    def _scrubber(self) -> Callable[[str], str]:
        cfg = self._config()
        found = [cfg.proxy.api_key, cfg.zai.api_key, cfg.oauth.client_secret]
        if self.extra_secrets is not None:
            try:
                found += list(self.extra_secrets())
            except Exception:  # a broken hook must not lose the rows: redact() still runs
                log.exception("monitor extra_secrets hook failed")
        # Short values would scrub ordinary words; longest first so a secret
        # that contains another is replaced whole.
        values = sorted({s for s in found if s and len(s) >= 8}, key=len, reverse=True)

        def scrub(text: str) -> str:
            text = redact(text)
            for s in values:
                if s in text:
                    text = text.replace(s, s[:3] + "…")
            return text

        return scrub

    def _body(self, raw: bytes | None, scrub: Callable[[str], str]) -> bytes | None:
        cfg = self._config().monitor
        if not cfg.log_bodies or not raw:
            return None
        cap = cfg.max_body_bytes or DEFAULT_BODY_CAP
        return scrub(bytes(raw[:cap]).decode("utf-8", "replace")).encode()

    def _prepare(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        scrub = self._scrubber()
        out = []
        for item in batch:
            row = list(item)
            for i in _TEXT_AT:
                if row[i]:
                    row[i] = scrub(row[i])
            row[_BODY_AT] = self._body(row[_BODY_AT], scrub)
            row[_BODY_AT + 1] = self._body(row[_BODY_AT + 1], scrub)
            out.append(tuple(row))
        return out

    def _writer(self) -> None:
        try:
            con = connect(self.path)
        except sqlite3.Error:
            log.exception("monitor database %s cannot be opened; request log off", self.path)
            self._drain_as_dropped()
            return
        try:
            self._maintain(con)
            while True:
                try:
                    item = self._queue.get(timeout=IDLE_TICK)
                except queue.Empty:
                    self._maintain(con)  # retention runs daily even when idle
                    continue
                if item is None:
                    return
                if self._queue.qsize() < BATCH_MAX:
                    # Let a burst gather: one transaction for many rows
                    # instead of a wake-up and a commit per request.
                    time.sleep(BATCH_WAIT)
                batch = [item]
                done = False
                while len(batch) < BATCH_MAX:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        done = True
                        break
                    batch.append(nxt)
                self._flush(con, batch)
                self._maintain(con)
                if done:
                    return
        finally:
            con.close()

    def _drain_as_dropped(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_TICK)
            except queue.Empty:
                continue
            if item is None:
                return
            self._dropped_failed += 1

    def _flush(self, con: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
        try:
            rows = self._prepare(batch)
            con.execute("BEGIN IMMEDIATE")
            con.executemany(_INSERT, rows)
            con.execute("COMMIT")
            self.written += len(batch)
        except Exception:  # sqlite3.Error, or a bug in _prepare: the rows are lost, counted
            log.exception("monitor write failed; %d row(s) lost", len(batch))
            self._dropped_failed += len(batch)
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _maintain(self, con: sqlite3.Connection) -> None:
        try:
            now = self._clock()
            if now - self._last_retention >= RETENTION_EVERY:
                self.apply_retention(con, now=now)
            # The size bound is checked every so many rows or seconds, not
            # after every batch (it costs page-count pragmas and a DELETE).
            rows_since = self.written - self._bounds_written
            if rows_since >= max(1, min(BOUNDS_ROWS, self.max_rows // 10)) or (
                rows_since and time.monotonic() - self._bounds_at >= BOUNDS_SECONDS
            ):
                self._bounds_written = self.written
                self._bounds_at = time.monotonic()
                self.enforce_bounds(con)
        except sqlite3.Error:
            log.exception("monitor maintenance failed")

    def apply_retention(self, con: sqlite3.Connection | None = None, *, now: float | None = None) -> int:
        """Delete rows older than ``monitor.retention_days`` (0 keeps them);
        returns how many went. Without ``con`` it opens the file itself."""
        now = self._clock() if now is None else now
        self._last_retention = now
        days = self._config().monitor.retention_days
        if days <= 0:
            return 0
        own = con is None
        c = connect(self.path) if con is None else con
        try:
            n = c.execute("DELETE FROM requests WHERE ts < ?", (now - days * 86400,)).rowcount
            if n:
                log.info("monitor retention: %d row(s) older than %d day(s) deleted", n, days)
                self._reclaim(c)
        finally:
            if own:
                c.close()
        return n

    def enforce_bounds(self, con: sqlite3.Connection) -> int:
        """Keep the table under ``max_rows`` rows and ``max_bytes`` of live
        pages by deleting the oldest rows; returns how many went."""
        # Two subqueries: SQLite answers each from the primary key's ends,
        # while `SELECT min(id), max(id)` in one query scans the whole table.
        lo, hi = con.execute(_ID_SPAN).fetchone()
        if lo is None:
            return 0
        deleted = 0
        # ids only grow and only the oldest rows are ever deleted, so the id
        # span bounds the row count without a COUNT(*) scan.
        if hi - lo + 1 > self.max_rows:
            keep_from = hi - int(self.max_rows * PRUNE_TO) + 1
            deleted += con.execute("DELETE FROM requests WHERE id < ?", (keep_from,)).rowcount
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        if (pages - free) * page_size > self.max_bytes:
            lo, hi = con.execute(_ID_SPAN).fetchone()
            if lo is not None:
                # Bodies make rows uneven: drop the oldest share over the cap.
                over = (pages - free) * page_size / self.max_bytes
                share = 1 - PRUNE_TO / over
                cut = lo + max(1, int((hi - lo + 1) * share))
                deleted += con.execute("DELETE FROM requests WHERE id < ?", (cut,)).rowcount
        if deleted:
            self.pruned += deleted
            log.info(
                "monitor: %d oldest row(s) pruned (max %d rows, %d bytes)",
                deleted,
                self.max_rows,
                self.max_bytes,
            )
            self._reclaim(con)
        return deleted

    @staticmethod
    def _reclaim(con: sqlite3.Connection) -> None:
        # incremental_vacuum frees one page per step and sqlite3's execute()
        # steps once: executescript runs it to the end.
        con.executescript("PRAGMA incremental_vacuum;")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # ---------------------------------------------------------------- reading

    def _read(self) -> sqlite3.Connection:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        con.row_factory = sqlite3.Row
        return con

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
        bodies: bool = False,
    ) -> list[dict[str, Any]]:
        """Newest ``limit`` rows matching the filters, oldest first.
        ValueError for a malformed status filter."""
        where: list[str] = []
        args: list[Any] = []
        if request_id:
            where.append("request_id = ?")
            args.append(request_id)
        if status:
            lo, hi = status_clause(status)
            where.append("status >= ? AND status < ?")
            args += [lo, hi]
        if model:
            where.append("(client_model = ? OR model = ?)")
            args += [model, model]
        if account:
            where.append("(account = ? COLLATE NOCASE OR (instr(?, '@') = 0 AND account LIKE ? || '@%'))")
            args += [account, account, account]
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if after_id is not None:
            where.append("id > ?")
            args.append(after_id)
        if not self.path.exists():
            return []
        cols = COLUMNS if bodies else COLUMNS[:_BODY_AT]
        sql = "SELECT id, " + ", ".join(cols) + " FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        con = self._read()
        try:
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
            r["stream"] = bool(r.get("stream"))
        rows.reverse()
        return rows

    def stats(self, *, since: float | None = None, by: str = "model") -> dict[str, Any]:
        """Per-group requests, errors (status >= 400), tokens in/out and
        p50/p95 latency since ``since``; ``by``: model (the upstream model, or
        the client's name when none was resolved), account, or client (the
        client family from the user agent, see ``client_family``)."""
        if by not in STATS_BY:
            raise ValueError(f"by {by!r}: use one of {', '.join(STATS_BY)}")
        groups: dict[str, dict[str, Any]] = {}
        lat: dict[str, list[float]] = {}
        if self.path.exists():
            con = self._read()
            try:
                cur = con.execute(
                    "SELECT model, client_model, account, user_agent, status, latency_ms, "
                    "input_tokens, output_tokens FROM requests WHERE ts >= ?",
                    (since if since is not None else 0.0,),
                )
                for r in cur:
                    if by == "model":
                        key = r["model"] or r["client_model"] or ""
                    elif by == "account":
                        key = r["account"] or ""
                    else:
                        key = client_family(r["user_agent"] or "")
                    g = groups.get(key)
                    if g is None:
                        g = groups[key] = {
                            "key": key,
                            "requests": 0,
                            "errors": 0,
                            "input_tokens": 0,
                            "output_tokens": 0,
                        }
                        lat[key] = []
                    g["requests"] += 1
                    if (r["status"] or 0) >= 400:
                        g["errors"] += 1
                    g["input_tokens"] += r["input_tokens"] or 0
                    g["output_tokens"] += r["output_tokens"] or 0
                    if r["latency_ms"] is not None:
                        lat[key].append(float(r["latency_ms"]))
            finally:
                con.close()
        total = {"key": "total", "requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0}
        every: list[float] = []
        for key, g in groups.items():
            values = sorted(lat[key])
            g["p50_ms"] = percentile(values, 50)
            g["p95_ms"] = percentile(values, 95)
            for k in ("requests", "errors", "input_tokens", "output_tokens"):
                total[k] += g[k]
            every += values
        every.sort()
        total["p50_ms"] = percentile(every, 50)
        total["p95_ms"] = percentile(every, 95)
        ordered = sorted(groups.values(), key=lambda g: (-g["requests"], g["key"]))
        return {"since": since, "by": by, "groups": ordered, "total": total}

    def info(self) -> dict[str, Any]:
        """What ``agctl monitor`` shows."""
        size = 0
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                size += p.stat().st_size
            except OSError:
                pass
        cfg = self._config().monitor
        return {
            "enabled": cfg.enabled,
            "path": str(self.path),
            "size_bytes": size,
            "written": self.written,
            "dropped": self.dropped,
            "pending": self.pending,
            "pruned": self.pruned,
            "retention_days": cfg.retention_days,
            "max_rows": self.max_rows,
            "max_bytes": self.max_bytes,
            "log_bodies": cfg.log_bodies,
        }
