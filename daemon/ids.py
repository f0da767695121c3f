"""Identifiers that need to be unique, not secret (request ids, message ids).

``secrets`` reads the OS's random source on every call, which showed up at
~5% of a request's CPU in the benchmark profile; a PRNG seeded once from it
is enough here. Never use this for keys, tokens, PKCE or OAuth state.
"""

from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))


def hex_id(n_bytes: int) -> str:
    return f"{_rng.getrandbits(n_bytes * 8):0{n_bytes * 2}x}"
