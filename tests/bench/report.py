"""The benchmark's figures (``Results``), judged against issue 8's targets,
as a markdown report and a short plain-text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_MONITOR = "antigravity, monitor off"
FLOOR_ASGI = "floor: bare ASGI + upstream client"
FLOOR_LITESTAR = "floor: Litestar route + upstream client"

# Issue 8's targets.
TARGETS = {
    "added_p50_ms": 1.0,
    "added_p99_ms": 3.0,
    "rps_one_core": 2000.0,
    "x_litellm_rps": 5.0,
    "of_litellm_added": 0.2,
    "chunk_added_ms": 1.0,
    "kb_per_stream": 50.0,
}

Row = tuple[str, str, str, str, str]  # metric, antigravity, LiteLLM, target, status


@dataclass
class Results:
    started: str = ""
    command: str = ""
    quick: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    streaming: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, Any] = field(default_factory=dict)


def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "–" if x != x else f"{x:,.{nd}f}"  # x != x: NaN
    return str(x)


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _mb(kb: Any) -> str:
    return f"{kb / 1024:.1f}" if kb else "–"


# --------------------------------------------------------------------------- verdicts


def _latency_rows(res: Results) -> list[Row]:
    ag = res.latency.get("added antigravity")
    ll = res.latency.get("added litellm")
    nm = res.latency.get(f"added {NO_MONITOR}")
    if not ag:
        return []
    lite = (lambda k: _f(ll[k], 3)) if ll else (lambda k: "–")
    rows = [
        ("added latency p50 (ms)", _f(ag["p50"], 3), lite("p50"), "< 1", _ok(ag["p50"] < 1.0)),
        ("added latency p99 (ms)", _f(ag["p99"], 3), lite("p99"), "< 3", _ok(ag["p99"] < 3.0)),
    ]
    if ll and ll["p50"] > 0:
        ratio = ag["p50"] / ll["p50"]
        ok = ratio <= TARGETS["of_litellm_added"]
        rows.append(("added p50 ÷ LiteLLM's", f"{ratio:.3f}", "1", "<= 0.2", _ok(ok)))
    if nm:
        rows.append(("added p50, monitor off (ms)", _f(nm["p50"], 3), "–", "(ablation)", "info"))
    return rows


def _throughput_rows(res: Results) -> list[Row]:
    tp = {(r["target"], r["concurrency"]): r for r in res.throughput}
    rows: list[Row] = []
    ag = [r for (n, _), r in tp.items() if n == "antigravity"]
    ll = [r for (n, _), r in tp.items() if n == "litellm"]
    if not ag:
        return rows
    best = max(r["rps"] for r in ag)
    ll_best = _f(max(r["rps"] for r in ll), 0) if ll else "–"
    ok = best >= TARGETS["rps_one_core"]
    rows.append(("req/s, best of c=1/16/64 (CPU 0)", _f(best, 0), ll_best, ">= 2,000", _ok(ok)))
    per_core = [r["rps"] / r["cpu_share"] for r in ag if r.get("cpu_share")]
    if per_core:
        rows.append(("req/s per full core (req/s ÷ CPU share)", _f(max(per_core), 0), "–", "", "info"))
    a, b = tp.get(("antigravity", 16)), tp.get(("litellm", 16))
    if a and b and b["rps"] > 0:
        x = a["rps"] / b["rps"]
        ok = x >= TARGETS["x_litellm_rps"]
        rows.append(("req/s ÷ LiteLLM's, c=16", f"{x:.1f}", "1", ">= 5", _ok(ok)))
        if a.get("cpu_us_per_req") and b.get("cpu_us_per_req"):
            x = b["cpu_us_per_req"] / a["cpu_us_per_req"]
            rows.append(("LiteLLM CPU/req ÷ ours, c=16", f"{x:.1f}", "1", "(>= 5)", "info"))
    for floor in (FLOOR_ASGI, FLOOR_LITESTAR):
        f16 = tp.get((floor, 16))
        if f16:
            cost = f16.get("cpu_us_per_req", 0)
            rows.append(
                (f"c=16 req/s (CPU µs/req), {floor}", f"{f16['rps']:,.0f} ({cost:,.0f})", "–", "", "info")
            )
    n16 = tp.get((NO_MONITOR, 16))
    if a and n16:
        on = f"{a['rps']:,.0f} ({a.get('cpu_us_per_req', 0):,.0f})"
        off = f"{n16['rps']:,.0f} ({n16.get('cpu_us_per_req', 0):,.0f})"
        rows.append(("c=16 req/s (CPU µs/req), monitor on → off", f"{on} → {off}", "–", "", "info"))
    return rows


def _stream_rows(res: Results) -> list[Row]:
    st = res.streaming.get("added antigravity")
    stl = res.streaming.get("added litellm")
    if not st:
        return []
    lite = (lambda k: _f(stl[k], 3)) if stl else (lambda k: "–")
    rows = [
        ("stream TTFB added p50 (ms)", _f(st["ttfb_p50_ms"], 3), lite("ttfb_p50_ms"), "", "info"),
        (
            "per-chunk added delay p50 (ms)",
            _f(st["chunk_p50_ms"], 3),
            lite("chunk_p50_ms"),
            "< 1",
            _ok(st["chunk_p50_ms"] < TARGETS["chunk_added_ms"]),
        ),
        (
            "per-chunk added delay p99 (ms)",
            _f(st["chunk_p99_ms"], 3),
            lite("chunk_p99_ms"),
            "",
            "info",
        ),
    ]
    s, d = res.streaming["antigravity"], res.streaming["direct"]
    # A buffering proxy sends most chunks together. A few chunks arrive
    # together direct too, when the client was not scheduled in time (a busy
    # machine), so the proxy is judged against direct.
    every = (
        s["chunks_per_stream_min"] >= s["chunks_expected"]
        and s["coalesced_chunks"] <= d["coalesced_chunks"] + 0.01 * s["chunks_total"]
    )
    alone = s["chunks_total"] - s["coalesced_chunks"]
    direct_alone = d["chunks_total"] - d["coalesced_chunks"]
    shown = f"{alone}/{s['chunks_total']} (direct {direct_alone}/{d['chunks_total']})"
    rows.append(("chunks forwarded one by one", shown, "–", "all", _ok(every)))
    return rows


def _memory_rows(res: Results) -> list[Row]:
    mem = res.memory
    rows: list[Row] = []
    if mem.get("kb_per_stream") is not None:
        flowing, asked = mem.get("open_streams"), mem.get("streams_asked")
        ok = mem["kb_per_stream"] < TARGETS["kb_per_stream"] and flowing == asked
        label = f"RSS per open stream (KB; {flowing} of {asked} flowing)"
        rows.append((label, _f(mem["kb_per_stream"], 1), "–", "< 50", _ok(ok)))
        if mem.get("kb_per_request") is not None and flowing != asked:
            label = f"RSS per request in flight (KB; {mem.get('in_flight')})"
            rows.append((label, _f(mem["kb_per_request"], 1), "–", "", "info"))
    if mem.get("idle_cold_kb"):
        rows.append(("RSS idle (MB)", _mb(mem["idle_cold_kb"]), _mb(mem.get("litellm_idle_kb")), "", "info"))
    return rows


def verdicts(res: Results) -> list[Row]:
    return _latency_rows(res) + _throughput_rows(res) + _stream_rows(res) + _memory_rows(res)


# --------------------------------------------------------------------------- markdown


def _table(head: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """``align``: one of l/r per column."""
    out = ["| " + " | ".join(head) + " |"]
    out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
    return out


def _header(res: Results) -> list[str]:
    m = res.machine
    load0 = ", ".join(f"{x:.2f}" for x in m.get("loadavg_start", ()))
    load1 = ", ".join(f"{x:.2f}" for x in m.get("loadavg_end", ()))
    pinned = (
        "Daemon(s) and LiteLLM pinned to CPU 0; fake, wrk and the runner to CPU 1."
        if m.get("pinned")
        else "NOT pinned (taskset missing, fewer than 2 cores, or --no-pin)."
    )
    out = [
        f"# antigravity benchmark — {res.started}\n",
        f"Command: `{res.command}` ({'quick' if res.quick else 'full'} run)\n",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}; load average at start {load0}, at end {load1}. {pinned}\n",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in res.versions.items()) + "\n",
    ]
    if res.errors:
        out.append("**Problems in this run:**\n")
        out += [f"- {e}" for e in res.errors]
        out.append("")
    return out


def _latency_section(res: Results) -> list[str]:
    if not res.latency:
        return []
    out = [
        "## 1. Added latency (sequential, non-stream)\n",
        "OpenAI chat → Gemini (1 KB prompt, ~200-token answer) through the proxy, against the "
        "same call straight to the fake (v1internal for antigravity, the public Gemini API for "
        "LiteLLM); one keep-alive connection each, the targets interleaved request by request "
        "(antigravity with direct, then LiteLLM with direct to the public API; LiteLLM is stopped "
        "with SIGSTOP whenever it is not the one measured, so that its background work does not "
        "land on the others' core). Added = proxied percentile − direct percentile.\n",
    ]
    rows = []
    for name, s in res.latency.items():
        if not name.startswith("added"):
            cells = [_f(s[k], 3) for k in ("p50", "p90", "p99", "mean", "max")]
            rows.append([name, str(s["n"]), *cells, str(s["errors"])])
    for name, s in res.latency.items():
        if name.startswith("added"):
            p50, p99 = f"**{_f(s['p50'], 3)}**", f"**{_f(s['p99'], 3)}**"
            rows.append([f"**{name}**", "", p50, _f(s["p90"], 3), p99, _f(s["mean"], 3), "", ""])
    head = ["target", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms", "max ms", "errors"]
    return out + _table(head, "lrrrrrrr", rows)


def _throughput_section(res: Results) -> list[str]:
    if not res.throughput:
        return []
    out = [
        "## 2. Throughput (wrk, non-stream)\n",
        "`wrk -t1 -cN` with a Lua script POSTing the same bodies. Server CPU share = its "
        "user+system CPU time over the run's wall time (1.00 = one full core); CPU µs/request "
        "is what a request costs whatever other processes took from CPU 0 (last column).\n",
    ]
    rows = [
        [
            str(r["concurrency"]),
            r["target"],
            _f(r["rps"], 0),
            _f(r["p50_ms"]),
            _f(r["p99_ms"]),
            str(r["errors"]),
            str(r["non_2xx"]),
            _f(r.get("cpu_share")),
            _f(r.get("cpu_us_per_req"), 0),
            _f(r.get("others_on_core")),
        ]
        for r in res.throughput
    ]
    head = ["c", "target", "req/s", "p50 ms", "p99 ms", "errors", "non-2xx"]
    head += ["server CPU share", "CPU µs/req", "CPU 0 taken by others"]
    out += _table(head, "rlrrrrrrrr", rows)
    tp = {(r["target"], r["concurrency"]): r for r in res.throughput}
    ratios = []
    for conc in sorted({r["concurrency"] for r in res.throughput}):
        a, b = tp.get(("antigravity", conc)), tp.get(("litellm", conc))
        if a and b and b["rps"] and a.get("cpu_us_per_req"):
            cpu = b["cpu_us_per_req"] / a["cpu_us_per_req"]
            ratios.append(f"c={conc}: {a['rps'] / b['rps']:.1f}x req/s, {cpu:.1f}x less CPU/req")
    if ratios:
        out.append("antigravity vs LiteLLM: " + "; ".join(ratios) + ".\n")
    return out


def _stream_section(res: Results) -> list[str]:
    if not res.streaming:
        return []
    out = [
        "## 3. Streaming (200 chunks, 10 ms apart)\n",
        "Each chunk's text starts with the fake's CLOCK_MONOTONIC time at its write; the client "
        "takes the time of the recv that completed the chunk. Chunk delay = arrival − send, per "
        "chunk (one-way, one clock); added = proxied − direct at the same percentile. A "
        "*coalesced* chunk arrived in the same recv as the one before (held back, sent "
        "together). TTFB (status line received − request sent) comes from many separate short "
        "streams (2 events), interleaved.\n",
    ]
    rows = []
    for name, s in res.streaming.items():
        if name.startswith("added"):
            continue
        d = s["chunk_delay_ms"]
        rows.append(
            [
                name,
                str(s["streams"]),
                f"{s['chunks_per_stream_min']}/{s['chunks_expected']}",
                _f(s["ttfb_ms"]["p50"], 3),
                _f(s["first_chunk_ms"]["p50"], 3),
                _f(d["p50"], 3),
                _f(d["p99"], 3),
                _f(d["max"], 3),
                _f(s["gap_ms"]["p50"], 2),
                f"{s['coalesced_chunks']}/{s['chunks_total']}",
                str(s["late_chunks_over_5ms"]),
            ]
        )
    head = ["target", "streams", "min chunks", "TTFB p50 ms", "first chunk p50 ms"]
    head += ["chunk delay p50 ms", "p99 ms", "max ms", "gap p50 ms", "coalesced", ">5 ms late"]
    out += _table(head, "lrrrrrrrrrr", rows)
    rows = [
        [name] + [_f(s[k], 3) for k in ("ttfb_p50_ms", "first_chunk_p50_ms", "chunk_p50_ms", "chunk_p99_ms")]
        for name, s in res.streaming.items()
        if name.startswith("added")
    ]
    head = ["added", "TTFB p50 ms", "first chunk p50 ms", "per-chunk p50 ms", "per-chunk p99 ms"]
    out += _table(head, "lrrrr", rows)
    for name, s in res.streaming.items():
        if not name.startswith("added") and s.get("failed"):
            out.append(f"- {name}: {len(s['failed'])} stream(s) failed: {s['failed'][:3]}")
    return out


def _memory_section(res: Results) -> list[str]:
    mem = res.memory
    if not mem:
        return []
    out = ["## 4. Memory (daemon RSS)\n"]
    flowing, asked = mem.get("open_streams", "?"), mem.get("streams_asked", "?")
    states = [
        ("idle, right after start + account add", mem.get("idle_cold_kb")),
        ("idle, warm (after the load phases)", mem.get("idle_warm_kb")),
        (f"{asked} streams asked for, {flowing} flowing", mem.get("rss_open_kb")),
        ("3 s after the clients closed them", mem.get("rss_after_close_kb")),
    ]
    out += _table(["state", "RSS MB"], "lr", [[k, _mb(v)] for k, v in states if v])
    if mem.get("kb_per_stream") is not None:
        delta = (mem["rss_open_kb"] - mem["idle_warm_kb"]) / 1024
        out.append(
            f"Per flowing stream: {delta:.1f} MB / {flowing} = **{_f(mem['kb_per_stream'], 1)} KB**"
            + (
                f"; per request in flight ({mem.get('in_flight')}, flowing or waiting): "
                f"{_f(mem.get('kb_per_request'), 1)} KB.\n"
                if flowing != asked
                else ".\n"
            )
        )
    out.append(
        f"The client opened {mem.get('client_opened')} connections; {flowing} had data flowing "
        f"at the measurement ({mem.get('wait_s')} s after the first); the fake had "
        f"{mem.get('upstream_streams_open')} upstream streams open. Daemon fds: "
        f"{mem.get('fds_idle')} idle, {mem.get('fds_open')} with the streams, "
        f"{mem.get('fds_after_close')} after close; upstream streams still open 3 s after the "
        f"clients left: {mem.get('upstream_streams_after_close')}. Client-side failures: "
        f"{mem.get('client_failed')} {mem.get('client_errors') or ''}\n"
    )
    if flowing != asked and mem.get("upstream_streams_open") == flowing:
        out.append(
            f"Only {flowing} of {asked} streams could flow: the daemon's upstream connection pool "
            "is the limit (the others wait for a free connection).\n"
        )
    if mem.get("litellm_idle_kb"):
        out.append(
            f"LiteLLM (whole process tree): {_mb(mem['litellm_idle_kb'])} MB idle, "
            f"{_mb(mem.get('litellm_after_kb'))} MB at the end of the run.\n"
        )
    return out


def _profile_section(res: Results) -> list[str]:
    if not res.profiles:
        return []
    out = [
        "## 5. Profile of the daemon (py-spy)\n",
        "Layers: each sample goes to the innermost frame that names one (they add up to 100 %). "
        "`Runner.run` self time is the uvloop event loop's own C code (socket reads and "
        "writes, callbacks). On a busy machine the daemon is often preempted at syscalls, and "
        "a preempted thread still counts as sampled there: syscall sites (poll, write, "
        "getrandom, futex wake) weigh more than on a quiet machine.\n",
    ]
    for p in res.profiles.values():
        out.append(p["markdown"])
        out.append(f"Raw stacks: `{p['file']}`.\n")
    return out


def report(res: Results) -> str:
    lines = _header(res)
    lines.append("## Summary against the targets\n")
    head = ["metric", "antigravity", "LiteLLM", "target", "status"]
    lines += _table(head, "lrrrl", [list(r) for r in verdicts(res)])
    for section in (
        _latency_section,
        _throughput_section,
        _stream_section,
        _memory_section,
        _profile_section,
    ):
        lines += section(res)
    if res.notes:
        lines.append("## Notes\n")
        lines += [f"- {n}" for n in res.notes]
    return "\n".join(lines) + "\n"


def short_table(res: Results) -> str:
    head = ("metric", "antigravity", "LiteLLM", "target", "status")
    rows = [head, *verdicts(res)]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
