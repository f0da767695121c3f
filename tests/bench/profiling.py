"""Read py-spy's raw (collapsed-stack) output and say where the time goes.

py-spy ``record --format raw --threads [--native]`` writes one line per
distinct stack: ``thread (TID): NAME;frame;frame;...;leaf COUNT``, a Python
frame looking like ``func (path/to/file.py:LINE)`` and a native one like
``func (file.c:LINE)`` or ``0xADDR (lib.so)``.

Two views, both in % of the samples of the thread that serves requests
(MainThread; other threads are listed by their own share):

* **by layer** — each sample goes to ONE layer: the innermost frame that
  belongs to a known layer (a native msgspec/httptools/libc frame counts for
  its library; time inside libpython counts for the Python frame that called
  into it). These add up to 100 %.
* **inclusive** — the share of samples with a given function anywhere on
  the stack (what removing that call would save at most).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<where>[^()]*)\)$")

# (layer, substrings of a Python frame's file path), first match wins; the
# daemon's own modules come first so that they are told apart.
PY_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "daemon: monitor record + metrics",
        ("daemon/monitor.py", "daemon/metrics.py", "prometheus_client/"),
    ),
    ("daemon: translation (protocols/)", ("daemon/protocols/",)),
    ("daemon: dispatch + pool", ("daemon/dispatch.py", "daemon/accounts/", "daemon/models.py")),
    ("daemon: upstream HTTP client (http.py)", ("daemon/upstream/http.py",)),
    ("daemon: upstream callers", ("daemon/upstream/",)),
    ("daemon: proxy routes/serving/auth", ("daemon/proxy/",)),
    ("daemon: other", ("daemon/",)),
    ("aiohttp + multidict/yarl", ("aiohttp/", "multidict/", "yarl/", "propcache/")),
    ("httpx", ("httpx/",)),
    ("httpcore + h11", ("httpcore/", "h11/")),
    ("anyio + sniffio", ("anyio/", "sniffio/")),
    ("litestar", ("litestar/",)),
    ("uvicorn", ("uvicorn/",)),
    ("logging", ("logging/",)),
    (
        "stdlib: json/re/datetime/etc",
        (
            "json/",
            "re/",
            "re.py",
            "datetime",
            "secrets",
            "random",
            "typing",
            "enum",
            "copy",
            "contextlib",
            "functools",
            "email/",
            "urllib/",
            "http/",
            "base64",
            "hashlib",
        ),
    ),
    ("asyncio", ("asyncio/",)),
    ("uvloop", ("uvloop/",)),
    ("queue/threading", ("queue.py", "threading.py")),
]
# Native frames (``--native``) that are a library's own work.
NATIVE_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("msgspec (C)", ("_core.c", "msgspec")),
    ("httptools parser (C)", ("httptools", "llhttp", "parser.c", "api.c", "http.c")),
    ("uvloop / libuv (C)", ("loop.c", "uvloop", "libuv", "core.c", "linux.c", "stream.c", "tcp.c")),
    ("sqlite (C)", ("sqlite",)),
    ("GC", ("gc_collect", "gcmodule")),
]
IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "uv__io_poll")
# A helper thread (the monitor writer) parked on its queue is idle, though
# py-spy cannot always tell (it sees a thread inside a lock wait).
IDLE_PY = ("Condition.wait", "Queue.get", "Event.wait")


@dataclass
class Profile:
    samples: int = 0  # main thread
    threads: Counter[str] = field(default_factory=Counter)
    layers: Counter[str] = field(default_factory=Counter)
    self_funcs: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    idle: int = 0
    thread_busy: Counter[str] = field(default_factory=Counter)  # not parked on a queue

    def pct(self, n: int) -> float:
        return 100.0 * n / self.samples if self.samples else 0.0


def _parse_frame(frame: str) -> tuple[str, str, bool]:
    """(function, file, is_python)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "", False
    where = m.group("where")
    file = where.rsplit(":", 1)[0] if ":" in where else where
    return m.group("func"), file, file.endswith(".py") or file.startswith("<")


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "/lib/python3":
                file = file.split("/", 1)[1] if "/" in file else file
    return file


def _py_layer(file: str) -> str | None:
    for layer, keys in PY_LAYERS:
        if any(k in file for k in keys):
            return layer
    return None


def _native_layer(func: str, file: str) -> str | None:
    text = f"{func} {file}"
    for layer, keys in NATIVE_LAYERS:
        if any(k in text for k in keys):
            return layer
    if "libc.so" in file or func in (
        "write",
        "writev",
        "send",
        "sendto",
        "recv",
        "recvfrom",
        "read",
    ):
        return "syscalls + libc"
    return None


def parse(path: Path, main_thread: str = "MainThread") -> Profile:
    prof = Profile()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = stack.split(";")
        head = frames[0]
        thread = head.split(":", 1)[1].strip() if ":" in head else head
        prof.threads[thread] += count
        parsed = [_parse_frame(f) for f in frames[1:]]
        if thread != main_thread:
            py = [func for func, _file, is_py in parsed if is_py]
            if not (py and py[-1] in IDLE_PY) and not any(f in IDLE_PY for f in py[-3:]):
                prof.thread_busy[thread] += count
            continue
        prof.samples += count
        leaf_func = parsed[-1][0] if parsed else ""
        if any(leaf_func.startswith(x) for x in IDLE_LEAVES):
            prof.idle += count
            prof.layers["idle: waiting in epoll"] += count
            continue
        # layer: innermost frame that names one
        layer = None
        for func, file, is_py in reversed(parsed):
            layer = _py_layer(file) if is_py else _native_layer(func, file)
            if layer:
                break
        prof.layers[layer or "other"] += count
        # self: innermost Python frame (native time belongs to its caller)
        for func, file, is_py in reversed(parsed):
            if is_py:
                prof.self_funcs[f"{func} ({_short(file)})"] += count
                break
        seen = set()
        for func, file, is_py in parsed:
            if is_py:
                key = f"{func} ({_short(file)})"
                if key not in seen:
                    seen.add(key)
                    prof.inclusive[key] += count
    return prof


def markdown(prof: Profile, *, top: int = 25, title: str = "") -> str:
    out = []
    if title:
        out.append(f"#### {title}\n")
    total_threads = sum(prof.threads.values())
    others = [
        f"{t}: {n} samples, {prof.thread_busy[t]} of them busy (not parked on its queue)"
        for t, n in prof.threads.most_common()
        if t != "MainThread"
    ]
    out.append(
        f"{prof.samples} samples of MainThread, the event loop "
        f"({prof.pct(prof.idle):.1f} % of them idle in epoll)"
        + (f"; other threads — {'; '.join(others)}" if others else "")
        + f" ({total_threads} samples in all).\n"
    )
    out.append("| layer (self time, innermost frame) | % of MainThread samples |\n|---|---:|")
    for layer, n in prof.layers.most_common():
        out.append(f"| {layer} | {prof.pct(n):.1f} |")
    out.append("")
    out.append(f"Top {top} functions by self time (native time counted to the calling Python function):\n")
    out.append("| % self | function |\n|---:|---|")
    for func, n in prof.self_funcs.most_common(top):
        out.append(f"| {prof.pct(n):.1f} | `{func}` |")
    out.append("")
    out.append("Inclusive time of the daemon's own functions and the big library entry points:\n")
    out.append("| % incl. | function |\n|---:|---|")
    shown = 0
    for func, n in prof.inclusive.most_common():
        if shown >= top:
            break
        if "daemon/" in func or any(
            k in func
            for k in (
                "AsyncClient.send",
                "AsyncConnectionPool.handle_async_request",
                "Response.to_asgi_response",
                "HTTPRoute.handle",
                "Litestar.__call__",
                "RequestResponseCycle.run_asgi",
                "Stream",
                "msgspec",
                "Logger.",
                "Request.body",
                "AuthMiddleware",
            )
        ):
            if func.startswith(("main (daemon/__main__", "_amain", "Service.run")):
                continue
            out.append(f"| {prof.pct(n):.1f} | `{func}` |")
            shown += 1
    out.append("")
    return "\n".join(out)
