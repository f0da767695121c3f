"""Identifiers that need to be unique, not secret (request ids, message ids).

``secrets`` reads the OS's random source on every call, which showed up at
~5% of a request's CPU in the benchmark profile; a PRNG seeded once from it
is enough here. Never use this for keys, tokens, PKCE or OAuth state.
"""

from __future__ import annotations

import os
import random
import time

_rng = random.Random(os.urandom(32))


def hex_id(n_bytes: int) -> str:
    return f"{_rng.getrandbits(n_bytes * 8):0{n_bytes * 2}x}"


def sortable_id(n_bytes: int) -> str:
    """The time in milliseconds (12 hex digits), then ``n_bytes`` random
    bytes: ids sort by when they were made, so an index on them grows at
    one end. The request log's index on request ids costs half as much per
    row that way (11 vs 22 µs a row at its 100k-row cap, random ids)."""
    return f"{time.time_ns() // 1_000_000:012x}{hex_id(n_bytes)}"
