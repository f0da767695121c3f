"""The processes a benchmark run starts, and the promise that it stops them all.

Every child runs in its own session (so its own children go with it), is
pinned with ``taskset`` when asked, and gets ``PR_SET_PDEATHSIG``: if this
runner dies without its cleanup (kill -9), the kernel sends the child
SIGTERM. ``Procs.stop_all`` signals each child's process group, by the id
we started, then SIGKILLs what is left after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
STOP_GRACE = 10.0

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _child_setup() -> None:
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


class Procs:
    def __init__(self, log_dir: Path, *, pin: bool = True) -> None:
        self.log_dir = log_dir
        self.pin = pin and can_pin()
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        if cpu is not None and self.pin:
            argv = ["taskset", "-c", str(cpu), *argv]
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_child_setup,  # noqa: PLW1509 - the runner is single-threaded here
            )
        finally:
            log.close()
        self.started.append((name, proc))
        return proc

    def log(self, name: str, tail: int = 4000) -> str:
        try:
            return (self.log_dir / f"{name}.log").read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever the child left in its session (workers) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self) -> None:
        for _name, proc in reversed(self.started):
            self.stop(proc)
        self.started.clear()


def run_bounded(
    argv: list[str], *, timeout: float, cpu: int | None = None, pin: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a short tool (wrk, py-spy) to completion, killed at ``timeout``."""
    if cpu is not None and pin and can_pin():
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_child_setup,  # noqa: PLW1509
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(killed after {timeout:.0f}s)"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# --------------------------------------------------------------------------- /proc readings


def _session_pids(sid: int) -> list[int]:
    """Processes of the session ``sid`` (a child we started and its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid:  # field 6: session
            pids.append(int(entry))
    return pids or [sid]


def rss_kb(pid: int, *, tree: bool = False) -> int:
    """VmRSS in KiB of ``pid`` (with ``tree``: summed over its session)."""
    total = 0
    for p in _session_pids(pid) if tree else [pid]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU seconds used so far (with ``tree``: the session's)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _session_pids(pid) if tree else [pid]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def core_busy_seconds(cpu: int) -> float:
    """Seconds CPU ``cpu`` has been busy (anything but idle and iowait) since boot."""
    tick = os.sysconf("SC_CLK_TCK")
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal
            return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / tick
    return 0.0


class CpuMeter:
    """CPU share of a process between ``start`` and ``stop`` (1.0 = one core),
    and how much of its core (``core``) every other process took meanwhile:
    on a shared machine that is what the measured process did not get."""

    def __init__(self, pid: int, *, tree: bool = False, core: int | None = None) -> None:
        self.pid, self.tree, self.core = pid, tree, core
        self.t0 = self.c0 = self.b0 = 0.0
        self.others = float("nan")

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pid, tree=self.tree)
        if self.core is not None:
            self.b0 = core_busy_seconds(self.core)

    def stop(self) -> float:
        wall = time.monotonic() - self.t0
        if wall <= 0:
            return 0.0
        mine = cpu_seconds(self.pid, tree=self.tree) - self.c0
        if self.core is not None:
            self.others = max(0.0, (core_busy_seconds(self.core) - self.b0 - mine) / wall)
        return mine / wall
