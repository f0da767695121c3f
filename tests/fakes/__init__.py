"""Fakes of the upstream services the gateway talks to (see tests/fakes/google.py)."""

from tests.fakes.google import Account, Call, FakeGoogle, Reply, count_tokens

__all__ = ["Account", "Call", "FakeGoogle", "Reply", "count_tokens"]
