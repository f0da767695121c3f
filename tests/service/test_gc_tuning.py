"""The daemon's collector settings (daemon.gc_tuning), in a process of their own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from daemon.gc_tuning import OLDER, YOUNG, tune_after_start

    startup = [[i] for i in range(1000)]  # alive at start-up: frozen, never scanned
    tune_after_start()
    assert gc.get_threshold() == (YOUNG, OLDER, OLDER), gc.get_threshold()
    assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()

    class Node:
        pass

    freed = []
    def make_cycle(i):
        a, b = Node(), Node()
        a.other, b.other = b, a
        weakref.finalize(a, freed.append, i)

    # Reference cycles are still collected without an explicit gc.collect():
    # enough of them cross the young threshold.
    for i in range(YOUNG * 2):
        make_cycle(i)
    assert len(freed) > YOUNG // 2, len(freed)
    print("ok", len(freed))
    """
)


def test_cycles_still_collected_after_tuning() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")
