"""The antigravity benchmark: one command, one markdown report.

    python tests/bench/run.py                # full run, LiteLLM as the reference peer
    python tests/bench/run.py --quick        # shorter phases, fewer streams
    python tests/bench/run.py --no-litellm   # antigravity vs direct only
    python tests/bench/run.py --setup        # install LiteLLM + py-spy (separate venvs), wrk

Everything runs on this machine, on loopback: a cheap fake Google
(``tests/bench/fakeserver.py``), the real ``antigravityd`` (pinned to CPU 0)
and, unless ``--no-litellm``, the LiteLLM proxy (also CPU 0), with the fake,
``wrk`` and this runner on CPU 1. Phases, all in one run so that ratios hold
on a noisy machine:

1. added latency: sequential non-stream OpenAI chat (1 KB prompt, ~200-token
   answer), direct / antigravity / LiteLLM interleaved request by request;
2. throughput: ``wrk`` at concurrency 1, 16, 64, with each server's CPU use;
3. streaming: 200 chunks 10 ms apart, every chunk stamped by the fake with
   its send time (CLOCK_MONOTONIC), so the client knows each chunk's delay;
4. memory: the daemon's RSS idle and with 1,000 streams held open;
5. profile: py-spy on the daemon under non-stream and stream load.

A second daemon with ``[monitor] enabled = false`` runs beside the first
(``--no-ablation`` leaves it out) and takes part in phases 1 and 2: the
difference is what the request log costs.

The report goes to stdout and ``tests/bench/results/<date>.md`` (git-ignored),
with the raw figures beside it as JSON. Every process started is stopped on
exit, on Ctrl-C, and at the run's time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import msgspec  # noqa: E402

from tests.bench import profiling  # noqa: E402
from tests.bench.clients import Conn, HeldStreams, StreamTiming, build_request, hold_streams  # noqa: E402
from tests.bench.fakeserver import ACCESS_TOKEN, MODEL, PROJECT  # noqa: E402
from tests.bench.procs import CpuMeter, Procs, can_pin, open_fds, rss_kb, run_bounded  # noqa: E402
from tests.bench.report import FLOOR_ASGI, FLOOR_LITESTAR, NO_MONITOR, Results, report, short_table  # noqa: E402
from tests.conftest import base_config, free_port  # noqa: E402

HOST = "127.0.0.1"
DAEMON_CPU = 0  # the daemon (and LiteLLM) run here
HARNESS_CPU = 1  # fake, wrk, this runner

# Where --setup puts the peer and the tools (outside the repo, never in .venv).
BENCH_DIR = Path(os.environ.get("AG_BENCH_DIR", "/tmp/ag-bench"))
LITELLM_VENV = BENCH_DIR / "litellm-venv"
TOOLS_VENV = BENCH_DIR / "tools-venv"
# The version PERFORMANCE.md measured; 1.107.0 was a compromised release.
LITELLM_SPEC = "litellm[proxy]==1.108.7"
LITELLM_KEY = "sk-bench-litellm-master-0123456789"
DAEMON_KEY = "sk-test-0123456789abcdef"


@dataclass
class Plan:
    latency_n: int
    warmup_n: int
    litellm_latency_n: int
    wrk_seconds: int
    concurrencies: tuple[int, ...]
    stream_reps: int
    ttfb_n: int
    stream_chunks: int
    stream_delay: float
    streams_held: int
    profile_seconds: int
    time_limit: int


FULL = Plan(
    latency_n=2000,
    warmup_n=200,
    litellm_latency_n=1000,
    wrk_seconds=10,
    concurrencies=(1, 16, 64),
    stream_reps=8,
    ttfb_n=300,
    stream_chunks=200,
    stream_delay=0.010,
    streams_held=1000,
    profile_seconds=12,
    time_limit=40 * 60,
)
QUICK = Plan(
    latency_n=400,
    warmup_n=50,
    litellm_latency_n=200,
    wrk_seconds=3,
    concurrencies=(1, 16, 64),
    stream_reps=2,
    ttfb_n=60,
    stream_chunks=200,
    stream_delay=0.010,
    streams_held=200,
    profile_seconds=5,
    time_limit=15 * 60,
)

# --------------------------------------------------------------------------- workload

SYSTEM = "You are a careful assistant for an engineering team. Answer in plain prose."
NOTES = " ".join(
    f"Note {i}: the nightly build on runner {i % 7} passed after retrying step {i % 5} twice."
    for i in range(12)
)
USER = "Summarise these notes in about two hundred words for the weekly status report. " + NOTES
CHAT = {
    "model": MODEL,
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
    "max_tokens": 256,
    "temperature": 0.2,
}
# What a Gemini client (or the proxy) sends for the same conversation.
GEMINI = {
    "contents": [{"role": "user", "parts": [{"text": USER}]}],
    "systemInstruction": {"role": "user", "parts": [{"text": SYSTEM}]},
    "generationConfig": {"maxOutputTokens": 256, "temperature": 0.2},
}
ENVELOPE = {
    "project": PROJECT,
    "model": MODEL,
    "requestId": "agent/bench",
    "userAgent": "antigravity",
    "requestType": "agent",
    "request": GEMINI,
}
ANSWER_PROBE = b"word0 word1 word2"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Target:
    """One thing requests are sent to; ``pid`` is the server measured (CPU, RSS)."""

    name: str
    port: int
    path: str
    stream_path: str
    body: bytes
    stream_body: bytes
    headers: dict[str, str]
    pid: int | None = None
    tree: bool = False  # measure the process's whole session (LiteLLM workers)

    def raw(self, stream: bool = False) -> bytes:
        if stream:
            return build_request(HOST, self.port, self.stream_path, self.stream_body, self.headers)
        return build_request(HOST, self.port, self.path, self.body, self.headers)


def direct_target(port: int) -> Target:
    return Target(
        "direct",
        port,
        "/v1internal:generateContent",
        "/v1internal:streamGenerateContent?alt=sse",
        _json(ENVELOPE),
        _json(ENVELOPE),
        {"authorization": f"Bearer {ACCESS_TOKEN}"},
    )


def direct_public_target(port: int) -> Target:
    return Target(
        "direct (public API)",
        port,
        f"/v1beta/models/{MODEL}:generateContent",
        f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        _json(GEMINI),
        _json(GEMINI),
        {"x-goog-api-key": "x"},
    )


def chat_target(name: str, port: int, key: str, pid: int, tree: bool = False) -> Target:
    return Target(
        name,
        port,
        "/v1/chat/completions",
        "/v1/chat/completions",
        _json(CHAT),
        _json({**CHAT, "stream": True}),
        {"authorization": f"Bearer {key}"},
        pid=pid,
        tree=tree,
    )


# --------------------------------------------------------------------------- stats


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


# --------------------------------------------------------------------------- the run


class Aborted(Exception):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = QUICK if args.quick else FULL
        self.tmp = Path(tempfile.mkdtemp(prefix="agb-", dir="/tmp"))
        self.procs = Procs(self.tmp, pin=not args.no_pin)
        self.res = Results(
            started=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            command=" ".join(["python", "tests/bench/run.py", *sys.argv[1:]]),
            quick=bool(args.quick),
        )
        self.fake_port = 0
        self.daemon_pids: dict[str, int] = {}
        self.daemon_pid = 0  # the one measured for memory and profiled
        self.litellm_pid = 0
        self.targets: dict[str, Target] = {}
        self.stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
        self.out_dir = Path(args.out)
        self.wrk = shutil.which("wrk")
        self.pyspy = _find_pyspy()

    # ---------------------------------------------------------------- helpers

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def fake_control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        conn = Conn(HOST, self.fake_port)
        try:
            if body is None:
                raw = f"GET {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: 0\r\n\r\n".encode()
            else:
                raw = build_request(HOST, self.fake_port, path, _json(body))
            return json.loads(conn.request(raw).body or b"{}")
        finally:
            conn.close()

    def stream_shape(self, chunks: int, delay: float, stamp: bool) -> None:
        self.fake_control("/_bench/stream", {"chunks": chunks, "delay": delay, "stamp": stamp})

    # ---------------------------------------------------------------- setup

    def start_fake(self) -> None:
        self.fake_port = free_port()
        proc = self.procs.spawn(
            "fake",
            [sys.executable, str(HERE / "fakeserver.py"), "--port", str(self.fake_port)],
            cpu=HARNESS_CPU,
            stdout_pipe=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # bounded: the fake prints it or exits
        if not line.startswith("READY"):
            raise RuntimeError(f"the fake did not start: {line!r}\n{self.procs.log('fake')}")

    def start_daemon(
        self,
        name: str = "antigravity",
        *,
        src: Path | None = None,
        extra_env: dict[str, str] | None = None,
        **sections: dict[str, Any],
    ) -> int:
        """Start an antigravityd with the bench account; ``sections`` override
        config; ``src`` runs the daemon package of another checkout."""
        home = self.tmp / f"home-{len(self.daemon_pids)}"
        home.mkdir()
        port = free_port()
        fake = f"http://{HOST}:{self.fake_port}"
        cfg = base_config(None, port, **sections)
        cfg["proxy"]["api_key"] = DAEMON_KEY
        cfg["upstream"] = {"endpoints": [fake]}
        cfg["oauth"] = {
            "client_secret": "bench-secret",
            "auth_url": f"{fake}/o/oauth2/v2/auth",
            "token_url": f"{fake}/token",
            "userinfo_url": f"{fake}/oauth2/v2/userinfo",
        }
        (home / "config.toml").write_bytes(msgspec.toml.encode(cfg))
        exe = shutil.which("antigravityd", path=str(Path(sys.executable).parent))
        argv = [exe] if exe and src is None else [sys.executable, "-m", "daemon"]
        env = {**os.environ, "ANTIGRAVITY_HOME": str(home), **(extra_env or {})}
        if src is not None:
            env["PYTHONPATH"] = str(src)
        env.pop("AGCTL_SOCKET", None)
        # The daemon's default log level: what a user runs.
        log_name = "daemon" if name == "antigravity" else f"daemon-{len(self.daemon_pids)}"
        proc = self.procs.spawn(log_name, argv, cpu=DAEMON_CPU, env=env, cwd=src)
        self.daemon_pids[name] = proc.pid
        sock = home / "run" / "agctl.sock"
        admin = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"antigravityd exited {proc.returncode}:\n{self.procs.log(log_name)}")
            if sock.exists():
                admin = httpx.Client(
                    transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://d", timeout=30
                )
                try:
                    admin.get("/status").raise_for_status()
                    break
                except httpx.HTTPError:
                    admin.close()
                    admin = None
            time.sleep(0.05)
        if admin is None:
            raise RuntimeError(f"antigravityd did not answer on {sock}:\n{self.procs.log(log_name)}")
        try:
            r = admin.post("/accounts", json={"refresh_token": "1//bench-refresh-token"})
            if r.status_code >= 400:
                raise RuntimeError(f"adding the bench account failed: {r.status_code} {r.text}")
            if admin.get("/status").json()["proxy"]["state"] != "running":
                admin.post("/proxy/start").raise_for_status()
            base = admin.get("/status").json()["proxy"]["base_url"]
        finally:
            admin.close()
        self.targets[name] = chat_target(name, int(base.rsplit(":", 1)[1]), DAEMON_KEY, proc.pid)
        return proc.pid

    # LiteLLM keeps working after it answers (logging, spend tracking, its
    # schedulers); on the shared core that lands on whatever is measured
    # next. So it is stopped (SIGSTOP) except while it is measured itself:
    # the numbers of each come from the same run, unpolluted by the other.

    def peer_signal(self, sig: int) -> None:
        if self.litellm_pid and "litellm" in self.targets:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.litellm_pid, sig)

    @contextlib.contextmanager
    def peer_running(self, needed: bool = True) -> Any:
        if not needed:
            yield
            return
        self.peer_signal(signal.SIGCONT)
        time.sleep(0.2)  # its event loop catches up on timers first
        try:
            yield
        finally:
            self.peer_signal(signal.SIGSTOP)

    @staticmethod
    def groups(order: list[str]) -> list[list[str]]:
        """Targets measured interleaved: ours with direct; LiteLLM with
        direct to the public API (its own baseline)."""
        peer = {"direct (public API)", "litellm"}
        return [g for g in ([n for n in order if n not in peer], [n for n in order if n in peer]) if g]

    def start_floors(self) -> None:
        """The least a proxy on this stack costs (tests/bench/floor.py)."""
        for name, mode in ((FLOOR_ASGI, "asgi"), (FLOOR_LITESTAR, "litestar")):
            port = free_port()
            proc = self.procs.spawn(
                f"floor-{mode}",
                [sys.executable, str(HERE / "floor.py"), mode, str(port), f"http://{HOST}:{self.fake_port}"],
                cpu=DAEMON_CPU,
            )
            t = chat_target(name, port, DAEMON_KEY, proc.pid)
            deadline = time.monotonic() + 30
            problem = "did not start"
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    problem = ""
                    conn = Conn(HOST, port)
                    try:
                        r = conn.request(t.raw())
                    finally:
                        conn.close()
                    if r.status == 200:
                        break
                    problem = f"answered {r.status}"
                except OSError as exc:
                    problem = str(exc)
                time.sleep(0.1)
            if problem:
                self.res.errors.append(f"{name}: {problem}: {self.procs.log(f'floor-{mode}', 800)}")
                continue
            self.targets[name] = t

    def start_litellm(self) -> subprocess.Popen[bytes] | None:
        exe = LITELLM_VENV / "bin" / "litellm"
        if not exe.exists():
            self.res.errors.append(
                f"LiteLLM not found at {exe}: run `python tests/bench/run.py --setup` (or pass --no-litellm)"
            )
            return None
        port = free_port()
        cfg = self.tmp / "litellm.yaml"
        cfg.write_text(
            "model_list:\n"
            '  - model_name: "*"\n'
            "    litellm_params:\n"
            f"      model: gemini/{MODEL}\n"
            f"      api_base: http://{HOST}:{self.fake_port}/v1beta\n"
            "      api_key: x\n"
        )
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": LITELLM_KEY,
            # No fetch of the model cost map from the internet.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "NO_PROXY": "*",
        }
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            env.pop(var, None)
        proc = self.procs.spawn(
            "litellm",
            [str(exe), "--config", str(cfg), "--host", HOST, "--port", str(port)],
            cpu=DAEMON_CPU,
            env=env,
            cwd=self.tmp,
        )
        self.litellm_pid = proc.pid
        self.targets["litellm"] = chat_target("litellm", port, LITELLM_KEY, proc.pid, tree=True)
        return proc

    def wait_litellm(self, proc: subprocess.Popen[bytes]) -> bool:
        port = self.targets["litellm"].port
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.res.errors.append(f"LiteLLM exited {proc.returncode}: {self.procs.log('litellm', 1500)}")
                return False
            try:
                r = httpx.get(f"http://{HOST}:{port}/health/liveliness", timeout=2)
                if r.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.res.errors.append("LiteLLM did not answer /health/liveliness within 240 s")
        return False

    def sanity(self, t: Target) -> str:
        """One request and one stream; '' when both look right."""
        conn = Conn(HOST, t.port)
        try:
            r = conn.request(t.raw())
            if r.status != 200 or ANSWER_PROBE not in r.body:
                return f"non-stream answer {r.status}: {r.body[:300]!r}"
            self.stream_shape(20, 0.0, True)
            s = conn.stream(t.raw(stream=True))
            if s.error or len(s.chunks) < 20:
                return f"stream: {s.error or f'{len(s.chunks)} stamped chunks of 20'}"
            return ""
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def machine(self) -> None:
        cpu = "?"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        self.res.machine = {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
            "pinned": self.procs.pin,
        }
        from importlib.metadata import PackageNotFoundError, version

        for dist in (
            "litestar",
            "uvicorn",
            "httpx",
            "httpcore",
            "msgspec",
            "uvloop",
            "httptools",
            "anyio",
        ):
            with contextlib.suppress(PackageNotFoundError):
                self.res.versions[dist] = version(dist)
        if (LITELLM_VENV / "bin" / "python").exists() and not self.args.no_litellm:
            out = run_bounded(
                [
                    str(LITELLM_VENV / "bin" / "python"),
                    "-c",
                    "import importlib.metadata as m; print(m.version('litellm'))",
                ],
                timeout=60,
                pin=False,
            )
            self.res.versions["litellm"] = out.stdout.strip() or "?"
        if self.wrk:
            out = run_bounded([self.wrk, "-v"], timeout=10, pin=False)
            first = (out.stdout + out.stderr).split("\n")[0].split()
            self.res.versions["wrk"] = first[1] if len(first) > 1 else "?"
        git = shutil.which("git")
        if git:
            head = run_bounded([git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"], timeout=10, pin=False)
            dirty = run_bounded(
                [git, "-C", str(ROOT), "status", "--porcelain", "--", "daemon"],
                timeout=10,
                pin=False,
            )
            self.res.versions["antigravity"] = head.stdout.strip() + (
                " (daemon/ has uncommitted changes)" if dirty.stdout.strip() else ""
            )

    # ---------------------------------------------------------------- phase 1: latency

    def phase_latency(self) -> None:
        order = [
            n
            for n in ("direct", "antigravity", NO_MONITOR, "direct (public API)", "litellm")
            if n in self.targets
        ]
        plan = self.plan
        self.log(f"latency: {plan.latency_n} sequential requests each ({', '.join(order)}), interleaved")
        conns = {n: Conn(HOST, self.targets[n].port) for n in order}
        raws = {n: self.targets[n].raw() for n in order}
        times: dict[str, list[float]] = {n: [] for n in order}
        errors: dict[str, int] = dict.fromkeys(order, 0)
        meter = CpuMeter(self.daemon_pid, core=DAEMON_CPU if self.procs.pin else None)
        meter.start()
        gc.disable()
        try:
            for group in self.groups(order):
                with self.peer_running("litellm" in group):
                    rounds = plan.warmup_n + (
                        plan.litellm_latency_n if "litellm" in group else plan.latency_n
                    )
                    for i in range(rounds):
                        for n in group:
                            t0 = time.perf_counter_ns()
                            r = conns[n].request(raws[n])
                            t1 = time.perf_counter_ns()
                            if r.status != 200:
                                errors[n] += 1
                                if errors[n] > 20:
                                    raise RuntimeError(
                                        f"{n}: too many errors, last {r.status} {r.body[:200]!r}"
                                    )
                                continue
                            if i >= plan.warmup_n:
                                times[n].append((t1 - t0) / 1e6)
                        if i % 500 == 499:
                            gc.collect()
        finally:
            gc.enable()
            for c in conns.values():
                c.close()
        share = meter.stop()
        wall = time.monotonic() - meter.t0
        out: dict[str, Any] = {n: {**summary(times[n]), "errors": errors[n]} for n in order}
        n_ag = plan.warmup_n + plan.latency_n
        self.res.notes.append(
            f"Latency phase: the daemon used {share * wall / n_ag * 1e6:,.0f} CPU µs per request "
            f"(its CPU time / {n_ag} requests); other processes took {meter.others:.0%} of CPU 0 "
            "meanwhile."
        )
        if "antigravity" in out:
            out["added antigravity"] = _added(out["antigravity"], out["direct"])
        if NO_MONITOR in out:
            out[f"added {NO_MONITOR}"] = _added(out[NO_MONITOR], out["direct"])
        if "litellm" in out:
            base = out.get("direct (public API)", out["direct"])
            out["added litellm"] = _added(out["litellm"], base)
        self.res.latency = out

    # ---------------------------------------------------------------- phase 2: throughput

    def wrk_script(self, t: Target, stream: bool = False) -> Path:
        body = self.tmp / f"body-{t.port}-{int(stream)}.json"
        body.write_bytes(t.stream_body if stream else t.body)
        lua = self.tmp / f"wrk-{t.port}-{int(stream)}.lua"
        headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in t.headers.items())
        lua.write_text(
            f'local f = assert(io.open("{body}", "rb"))\n'
            "local body = f:read('*a')\nf:close()\n"
            'wrk.method = "POST"\n'
            f'wrk.path = "{t.stream_path if stream else t.path}"\n'
            "wrk.body = body\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"{headers}"
            "done = function(summary, latency, requests)\n"
            "  local e = summary.errors\n"
            '  io.write(string.format(\'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,'
            '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
            '"p50_us":%d,"p99_us":%d,"mean_us":%f}\\n\', '
            "summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, "
            "e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.mean))\n"
            "end\n"
        )
        return lua

    def run_wrk(self, t: Target, conc: int, seconds: int, stream: bool = False) -> dict[str, Any]:
        assert self.wrk is not None
        script = self.wrk_script(t, stream)
        meter = CpuMeter(t.pid, tree=t.tree, core=DAEMON_CPU if self.procs.pin else None) if t.pid else None
        if meter:
            meter.start()
        out = run_bounded(
            [
                self.wrk,
                "-t1",
                f"-c{conc}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://{HOST}:{t.port}",
            ],
            timeout=seconds + 60,
            cpu=HARNESS_CPU,
            pin=self.procs.pin,
        )
        cpu = meter.stop() if meter else None
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(
                f"wrk gave no summary (exit {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}"
            )
        data = json.loads(line[8:])
        rps = data["requests"] / (data["duration_us"] / 1e6)
        res = {
            "target": t.name,
            "concurrency": conc,
            "rps": rps,
            "p50_ms": data["p50_us"] / 1000,
            "p99_ms": data["p99_us"] / 1000,
            "errors": data["connect"] + data["read"] + data["write"] + data["timeout"],
            "non_2xx": data["status"],
            "requests": data["requests"],
        }
        if cpu is not None and meter is not None:
            res["cpu_share"] = cpu
            res["cpu_us_per_req"] = cpu * 1e6 / rps if rps else float("nan")
            res["others_on_core"] = meter.others
        return res

    def phase_throughput(self) -> None:
        if not self.wrk:
            self.res.errors.append("throughput skipped: `wrk` not found (apt-get install -y wrk)")
            return
        order = [
            n
            for n in ("direct", "antigravity", NO_MONITOR, FLOOR_ASGI, FLOOR_LITESTAR, "litellm")
            if n in self.targets
        ]
        for n in order:  # warm up connections and code paths
            with self.peer_running(n == "litellm"):
                self.run_wrk(self.targets[n], 16, 1)
        for conc in self.plan.concurrencies:
            for n in order:
                if n in (NO_MONITOR, FLOOR_ASGI, FLOOR_LITESTAR) and conc not in (1, 16):
                    continue
                self.log(f"throughput: {n} at concurrency {conc} for {self.plan.wrk_seconds}s")
                try:
                    with self.peer_running(n == "litellm"):
                        res = self.run_wrk(self.targets[n], conc, self.plan.wrk_seconds)
                    self.res.throughput.append(res)
                except Exception as exc:
                    self.res.errors.append(f"throughput {n} c={conc}: {exc}")

    # ---------------------------------------------------------------- phase 3: streaming

    def phase_streaming(self) -> None:
        plan = self.plan
        order = [n for n in ("direct", "antigravity", "direct (public API)", "litellm") if n in self.targets]
        self.log(
            f"streaming: {plan.stream_reps} x {plan.stream_chunks} chunks "
            f"{plan.stream_delay * 1000:.0f} ms apart, each of {', '.join(order)}"
        )
        self.stream_shape(plan.stream_chunks, plan.stream_delay, True)
        runs: dict[str, list[StreamTiming]] = {n: [] for n in order}
        conns = {n: Conn(HOST, self.targets[n].port) for n in order}
        gc.disable()
        try:
            for group in self.groups(order):
                with self.peer_running("litellm" in group):
                    for _ in range(plan.stream_reps):
                        for n in group:
                            runs[n].append(conns[n].stream(self.targets[n].raw(stream=True)))
                        gc.collect()
        finally:
            gc.enable()
            for c in conns.values():
                c.close()
        # Time to first byte wants many samples: short streams (2 events).
        self.stream_shape(2, 0.0, True)
        ttfb: dict[str, list[float]] = {n: [] for n in order}
        conns = {n: Conn(HOST, self.targets[n].port) for n in order}
        gc.disable()
        try:
            for group in self.groups(order):
                with self.peer_running("litellm" in group):
                    for i in range(plan.ttfb_n // 2 if "litellm" in group else plan.ttfb_n):
                        for n in group:
                            r = conns[n].stream(self.targets[n].raw(stream=True))
                            if not r.error and i >= 5:
                                ttfb[n].append((r.first_byte_ns - r.sent_ns) / 1e6)
        finally:
            gc.enable()
            for c in conns.values():
                c.close()
        out: dict[str, Any] = {}
        for n in order:
            out[n] = _stream_stats(runs[n], plan.stream_chunks)
            out[n]["ttfb_ms"] = summary(ttfb[n])
        if "antigravity" in out:
            out["added antigravity"] = _stream_added(out["antigravity"], out["direct"])
        if "litellm" in out:
            out["added litellm"] = _stream_added(
                out["litellm"], out.get("direct (public API)", out["direct"])
            )
        self.res.streaming = out

    # ---------------------------------------------------------------- phase 4: memory

    def phase_memory(self) -> None:
        n = self.plan.streams_held
        pid = self.daemon_pid
        t = self.targets["antigravity"]
        hold = 120  # the fake's streams outlive the measurement; the client closes them
        self.stream_shape(hold + 1, 1.0, False)
        time.sleep(1.0)
        gc.collect()
        idle = [rss_kb(pid) for _ in range(3)]
        mem: dict[str, Any] = {
            "idle_warm_kb": max(idle),
            "fds_idle": open_fds(pid),
            "streams_asked": n,
        }
        self.log(f"memory: holding {n} streams open through the daemon")

        async def run() -> None:
            st = HeldStreams()
            stop = asyncio.Event()
            task = asyncio.ensure_future(hold_streams(HOST, t.port, t.raw(stream=True), n, st, stop))
            best = (0, 0)  # (open streams, rss)
            last_open, last_change = -1, time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                now = time.monotonic()
                if st.open_now != last_open:
                    last_open, last_change = st.open_now, now
                if st.open_now >= n or (st.opened >= n and now - last_change > 5):
                    break
            await asyncio.sleep(1.0)  # let the allocator settle
            samples = []
            for _ in range(4):
                samples.append((st.open_now, rss_kb(pid)))
                await asyncio.sleep(0.25)
            best = max(samples)
            fake_stats = await asyncio.to_thread(self.fake_control, "/_bench/stats")
            mem.update(
                {
                    "open_streams": best[0],
                    "rss_open_kb": best[1],
                    "fds_open": open_fds(pid),
                    "upstream_streams_open": fake_stats.get("streams_open"),
                    "client_opened": st.opened,
                    "wait_s": round(now - (deadline - 60), 1),
                }
            )
            stop.set()
            try:
                await asyncio.wait_for(task, 30)
            except TimeoutError:
                task.cancel()
            mem["client_failed"] = st.failed
            mem["client_errors"] = dict(st.errors)

        asyncio.run(run())
        # After the clients left: do upstream streams and fds go back?
        time.sleep(3.0)
        mem["rss_after_close_kb"] = rss_kb(pid)
        mem["fds_after_close"] = open_fds(pid)
        mem["upstream_streams_after_close"] = self.fake_control("/_bench/stats").get("streams_open")
        opened = mem.get("open_streams") or 0
        if opened:
            mem["kb_per_stream"] = (mem["rss_open_kb"] - mem["idle_warm_kb"]) / opened
        # Requests the daemon held (flowing or waiting for an upstream connection).
        mem["in_flight"] = mem.get("client_opened", 0) - mem.get("client_failed", 0)
        if mem["in_flight"]:
            mem["kb_per_request"] = (mem["rss_open_kb"] - mem["idle_warm_kb"]) / mem["in_flight"]
        self.res.memory.update(mem)
        self.stream_shape(20, 0.0, False)

    # ---------------------------------------------------------------- phase 5: profile

    def profile(self, name: str, stream: bool, mode: str, conc: int = 16) -> None:
        """py-spy on the daemon under ``wrk -c16``. ``mode``: "nonblocking"
        (reads the stacks without stopping the daemon: no slow-down) or
        "native" (stops it for each sample and walks C frames too: shows
        msgspec, libc and the event loop, but slows the daemon and
        over-counts syscalls, where the stops land)."""
        assert self.pyspy and self.wrk
        secs = self.plan.profile_seconds
        t = self.targets["antigravity"]
        script = self.wrk_script(t, stream)
        argv = [
            self.wrk,
            "-t1",
            f"-c{conc}",
            f"-d{secs + 4}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://{HOST}:{t.port}",
        ]
        if self.procs.pin:
            argv = ["taskset", "-c", str(HARNESS_CPU), *argv]
        self.log(f"profile ({name}, {mode}): py-spy on the daemon for {secs}s under wrk -c{conc}")
        wrk = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        raw = self.out_dir / f"{self.stamp}-profile-{name.replace(' ', '').replace('=', '')}-{mode}.txt"
        try:
            time.sleep(1.5)
            cmd = [
                self.pyspy,
                "record",
                "-p",
                str(self.daemon_pid),
                "-d",
                str(secs),
                "-r",
                "250",
                "--threads",
                "-f",
                "raw",
                "-o",
                str(raw),
            ]
            cmd.append("--native" if mode == "native" else "--nonblocking")
            out = run_bounded(cmd, timeout=secs + 60, pin=False)
            if out.returncode != 0:
                self.res.errors.append(f"py-spy ({mode}) failed: {out.stderr[-500:]}")
                return
        finally:
            try:
                wout, _ = wrk.communicate(timeout=secs + 60)
            except subprocess.TimeoutExpired:
                os.killpg(wrk.pid, signal.SIGKILL)
                wout, _ = wrk.communicate()
        prof = profiling.parse(raw)
        rps = next((ln.split()[1] for ln in wout.splitlines() if ln.startswith("Requests/sec")), "?")
        rate = f"{rps} req/s"
        if stream:
            with contextlib.suppress(ValueError):
                chunks = float(rps) * self.plan.stream_chunks
                rate = f"{rps} streams/s (x {self.plan.stream_chunks} = {chunks:,.0f} chunks/s)"
        self.res.profiles[f"{name} ({mode})"] = {
            "file": str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw),
            "mode": mode,
            "rps_while_profiled": rps,
            "markdown": profiling.markdown(
                prof,
                title=f"{name}, py-spy {mode}: wrk -c{conc}, {secs}s at 250 Hz; {rate} while sampled",
            ),
            "layers": {k: prof.pct(v) for k, v in prof.layers.most_common()},
            "top_self": [(f, prof.pct(v)) for f, v in prof.self_funcs.most_common(15)],
        }

    def phase_profile(self) -> None:
        if not self.pyspy or not self.wrk:
            self.res.errors.append(
                "profile skipped: py-spy or wrk not found (python tests/bench/run.py --setup)"
            )
            return
        self.profile("non-stream", False, "nonblocking")
        self.profile("non-stream", False, "native")
        if not self.args.quick:
            self.profile("non-stream c=64", False, "nonblocking", conc=64)
        self.stream_shape(self.plan.stream_chunks, 0.0, False)
        self.profile("stream", True, "nonblocking")
        self.stream_shape(20, 0.0, False)

    # ---------------------------------------------------------------- run

    def run(self) -> int:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.machine()
        self.log(f"temp dir {self.tmp}; pinning {'on' if self.procs.pin else 'OFF'}")
        self.start_fake()
        self.targets["direct"] = direct_target(self.fake_port)
        lite = None
        if not self.args.no_litellm:
            lite = self.start_litellm()  # slow to start: overlaps the daemon's start
            self.targets["direct (public API)"] = direct_public_target(self.fake_port)
        self.daemon_pid = self.start_daemon()
        self.res.memory["idle_cold_kb"] = rss_kb(self.daemon_pid)
        if not self.args.no_ablation:
            # The same daemon with the monitor off: what the request log costs.
            self.start_daemon(NO_MONITOR, monitor={"enabled": False})
        if lite is not None:
            self.log("waiting for LiteLLM /health/liveliness")
            if not self.wait_litellm(lite):
                self.targets.pop("litellm", None)
            else:
                self.res.memory["litellm_idle_kb"] = rss_kb(self.litellm_pid, tree=True)
        for name in list(self.targets):
            problem = self.sanity(self.targets[name])
            if problem:
                self.res.errors.append(f"{name} failed its sanity check, left out: {problem}")
                if name == "antigravity" or name == "direct":
                    raise RuntimeError(self.res.errors[-1])
                self.targets.pop(name)
        if not self.args.no_floor:
            self.start_floors()
        self.peer_signal(signal.SIGSTOP)
        self.stream_shape(20, 0.0, False)
        phases = [
            ("latency", self.phase_latency),
            ("throughput", self.phase_throughput),
            ("streaming", self.phase_streaming),
            ("memory", self.phase_memory),
        ]
        if not self.args.no_profile:
            phases.append(("profile", self.phase_profile))
        for name, fn in phases:
            try:
                fn()
            except Aborted:
                raise
            except Exception as exc:
                self.res.errors.append(f"phase {name} failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
        if "litellm" in self.targets:
            self.res.memory["litellm_after_kb"] = rss_kb(self.litellm_pid, tree=True)
        self.note_monitor_rows()
        self.res.machine["loadavg_end"] = os.getloadavg()
        return 0

    def note_monitor_rows(self) -> None:
        """How many rows the request log held at the end: the monitor's cost per
        request can depend on the table's size."""
        db = self.tmp / "home-0" / "data" / "monitor.sqlite3"
        if not db.exists():
            return
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                lo, hi = con.execute(
                    "SELECT (SELECT min(id) FROM requests), (SELECT max(id) FROM requests)"
                ).fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            self.res.notes.append(f"monitor.sqlite3 could not be read: {exc}")
            return
        rows = (hi - lo + 1) if lo is not None else 0
        size = db.stat().st_size / 1e6
        self.res.notes.append(
            f"The daemon's request log (monitor.sqlite3) held {rows:,} rows ({size:.1f} MB) at "
            "the end of the run."
        )

    def cleanup(self) -> None:
        self.peer_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
        self.procs.stop_all()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.log(f"kept {self.tmp}")


# --------------------------------------------------------------------------- figures


def _added(proxied: dict[str, float], direct: dict[str, float]) -> dict[str, float]:
    return {k: proxied[k] - direct[k] for k in ("p50", "p90", "p99", "mean")}


def _stream_stats(runs: list[StreamTiming], expected: int) -> dict[str, Any]:
    ok = [r for r in runs if not r.error]
    delays_ms: list[float] = []
    gaps_ms: list[float] = []
    coalesced = 0
    counts = []
    for r in ok:
        counts.append(len(r.chunks))
        prev_recv = None
        for stamp, recv in r.chunks:
            delays_ms.append((recv - stamp) / 1e6)
            if prev_recv is not None:
                gaps_ms.append((recv - prev_recv) / 1e6)
                if recv == prev_recv:
                    coalesced += 1
            prev_recv = recv
    total = sum(counts)
    return {
        "streams": len(runs),
        "failed": [r.error for r in runs if r.error],
        "chunks_per_stream_min": min(counts) if counts else 0,
        "chunks_expected": expected,
        "ttfb_ms": summary([(r.first_byte_ns - r.sent_ns) / 1e6 for r in ok]),
        "first_chunk_ms": summary([(r.first_stamp_ns - r.sent_ns) / 1e6 for r in ok if r.first_stamp_ns]),
        "chunk_delay_ms": summary(delays_ms),
        "gap_ms": summary(gaps_ms),
        "coalesced_chunks": coalesced,
        "chunks_total": total,
        "late_chunks_over_5ms": sum(1 for d in delays_ms if d > 5.0),
        "recvs_per_stream": statistics.fmean([r.recvs for r in ok]) if ok else 0,
    }


def _stream_added(p: dict[str, Any], d: dict[str, Any]) -> dict[str, float]:
    return {
        "ttfb_p50_ms": p["ttfb_ms"]["p50"] - d["ttfb_ms"]["p50"],
        "first_chunk_p50_ms": p["first_chunk_ms"]["p50"] - d["first_chunk_ms"]["p50"],
        "chunk_p50_ms": p["chunk_delay_ms"]["p50"] - d["chunk_delay_ms"]["p50"],
        "chunk_p99_ms": p["chunk_delay_ms"]["p99"] - d["chunk_delay_ms"]["p99"],
    }


def _find_pyspy() -> str | None:
    for cand in (
        shutil.which("py-spy"),
        str(TOOLS_VENV / "bin" / "py-spy"),
        str(Path(sys.executable).parent / "py-spy"),
    ):
        if cand and Path(cand).exists():
            return cand
    return None


# --------------------------------------------------------------------------- setup


def setup() -> int:
    """Install what the benchmark needs outside the project's venv."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    steps: list[list[str]] = []
    if not shutil.which("wrk") and shutil.which("apt-get") and os.geteuid() == 0:
        steps += [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]]
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        steps += [
            [sys.executable, "-m", "venv", str(LITELLM_VENV)],
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC],
        ]
    if not _find_pyspy():
        steps += [
            [sys.executable, "-m", "venv", str(TOOLS_VENV)],
            [str(TOOLS_VENV / "bin" / "pip"), "install", "-q", "py-spy"],
        ]
    for argv in steps:
        print("+", " ".join(argv), flush=True)
        if subprocess.run(argv, timeout=1800).returncode != 0:
            print(f"setup step failed: {' '.join(argv)}", file=sys.stderr)
            return 1
    print(
        f"ready: wrk={shutil.which('wrk')}, litellm={LITELLM_VENV / 'bin' / 'litellm'}, "
        f"py-spy={_find_pyspy()}"
    )
    return 0


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Benchmark antigravityd against direct calls and the LiteLLM proxy."
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short phases (~3 min): fewer requests, 200 held streams",
    )
    p.add_argument("--no-litellm", action="store_true", help="leave out the LiteLLM reference peer")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--no-ablation", action="store_true", help="no second daemon with the monitor off")
    p.add_argument(
        "--no-floor", action="store_true", help="leave out the minimal proxies on the same stack (floor.py)"
    )
    p.add_argument(
        "--setup",
        action="store_true",
        help=f"install wrk (apt), LiteLLM and py-spy under {BENCH_DIR}, then exit",
    )
    p.add_argument(
        "--out",
        default=str(HERE / "results"),
        help="report directory (default tests/bench/results)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daemon home, logs)")
    args = p.parse_args(argv)
    if args.setup:
        return setup()

    # Many sockets for the held streams; the children inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if not args.no_pin and can_pin():
        os.sched_setaffinity(0, {HARNESS_CPU})

    bench = Bench(args)
    plan = bench.plan
    if soft < 4 * plan.streams_held and resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4 * plan.streams_held:
        bench.res.errors.append(
            f"open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} is low for "
            f"{plan.streams_held} streams"
        )

    def on_signal(signum: int, _frame: Any) -> None:
        raise Aborted(f"stopped by signal {signum}")

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise Aborted(f"time limit of {plan.time_limit}s reached")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(plan.time_limit)
    code = 0
    try:
        bench.run()
    except Aborted as exc:
        bench.res.errors.append(f"run aborted: {exc}")
        code = 2
    except Exception as exc:
        bench.res.errors.append(f"run failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        code = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
    text = report(bench.res)
    path = bench.out_dir / f"{bench.stamp}.md"
    bench.out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    (bench.out_dir / f"{bench.stamp}.json").write_text(json.dumps(asdict(bench.res), indent=1, default=str))
    print()
    print(text)
    print(short_table(bench.res))
    print(f"\nreport: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
