"""A/B: two or more daemons side by side under the same load, interleaved.

    python tests/bench/ab.py new=. old=/path/to/other/checkout
    python tests/bench/ab.py gc=. nogc=.:AG_SOME_FLAG=1 --rounds 8 --seconds 4

Each argument is ``name=SOURCE[:VAR=VALUE,...]``: the daemon package of the
checkout at SOURCE, with extra environment. Every round runs ``wrk`` at the
given concurrency against each daemon in turn (non-stream OpenAI chat, the
same workload as run.py), then the medians of req/s and of the daemon's CPU
µs per request are printed. Interleaving makes the comparison hold on a
noisy machine where separate runs do not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench.clients import Conn  # noqa: E402
from tests.bench.procs import can_pin  # noqa: E402
from tests.bench.run import HARNESS_CPU, HOST, Bench, direct_target, pct  # noqa: E402


def parse_variant(text: str) -> tuple[str, Path, dict[str, str]]:
    name, _, rest = text.partition("=")
    src, _, env_text = rest.partition(":")
    env = dict(item.split("=", 1) for item in env_text.split(",") if item)
    return name, Path(src or ".").resolve(), env


def latency(bench: Bench, names: list[str], n: int) -> None:
    """Sequential, interleaved request by request; added = variant - direct."""
    targets = {"direct": direct_target(bench.fake_port), **{m: bench.targets[m] for m in names}}
    conns = {m: Conn(HOST, t.port) for m, t in targets.items()}
    raws = {m: t.raw() for m, t in targets.items()}
    times: dict[str, list[float]] = {m: [] for m in targets}
    try:
        for i in range(n + 100):
            for m in targets:
                t0 = time.perf_counter_ns()
                r = conns[m].request(raws[m])
                t1 = time.perf_counter_ns()
                if r.status != 200:
                    raise RuntimeError(f"{m}: {r.status} {r.body[:200]!r}")
                if i >= 100:
                    times[m].append((t1 - t0) / 1e6)
    finally:
        for c in conns.values():
            c.close()
    base = {q: pct(times["direct"], q) for q in (50, 90, 99)}
    print(f"\n{n} sequential requests each; added over direct (ms):")
    for m in names:
        added = "  ".join(f"p{q} {pct(times[m], q) - base[q]:.3f}" for q in (50, 90, 99))
        print(f"  {m:16} {added}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="+", help="name=SOURCE[:VAR=VALUE,...]")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("--stream", action="store_true", help="streamed answers instead of whole ones")
    p.add_argument(
        "--latency",
        type=int,
        default=0,
        metavar="N",
        help="instead of throughput: N sequential requests to each (and direct), interleaved",
    )
    args = p.parse_args(argv)
    if can_pin():
        os.sched_setaffinity(0, {HARNESS_CPU})
    bench = Bench(
        argparse.Namespace(quick=True, no_pin=False, out=str(HERE / "results"), no_litellm=True, keep=False)
    )
    try:
        bench.start_fake()
        names = []
        for text in args.variants:
            name, src, env = parse_variant(text)
            bench.start_daemon(name, src=src, extra_env=env)
            names.append(name)
        if args.latency:
            latency(bench, names, args.latency)
            return 0
        for name in names:  # warm-up
            bench.run_wrk(bench.targets[name], args.concurrency, 1, stream=args.stream)
        rows: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                res = bench.run_wrk(bench.targets[name], args.concurrency, args.seconds, stream=args.stream)
                rows[name].append((res["rps"], res.get("cpu_us_per_req", float("nan"))))
            line = "  ".join(f"{n} {rows[n][-1][0]:,.0f} req/s" for n in names)
            print(f"round {r + 1}: {line}", flush=True)
        print(f"\nc={args.concurrency}, {args.rounds} rounds of {args.seconds}s, medians:")
        for name in names:
            rps = statistics.median(x for x, _ in rows[name])
            cpu = statistics.median(y for _, y in rows[name])
            print(f"  {name:16} {rps:8,.0f} req/s   {cpu:8,.0f} CPU µs/req")
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
