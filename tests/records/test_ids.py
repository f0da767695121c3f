"""Request ids: unique, one shape, and in the order they were made."""

from __future__ import annotations

import re
import time

from daemon.proxy.auth import new_request_id


def test_request_ids_are_unique_and_keep_their_shape() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)


def test_request_ids_sort_by_time() -> None:
    made = []
    for _ in range(5):
        made.append(new_request_id())
        time.sleep(0.002)  # a new millisecond each time
    assert made == sorted(made)
    # The time part is the creation time in milliseconds.
    ms = int(made[-1][4:16], 16)
    assert abs(ms / 1000 - time.time()) < 5
