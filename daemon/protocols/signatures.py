"""A bounded, expiring store of thought signatures the upstream handed out.

Why: Gemini needs each signature back on the same part in the next turn, and
Claude needs the identical thinking text with its signature, but OpenAI-shaped
clients drop unknown fields and Claude Code may ask for thinking with its
text omitted. The proxy keeps what it gave out (UPSTREAM.md: keyed by
tool-call id, and by session + text hash; an hour or two of TTL), and the
translators look things up here. In memory only: a restart loses it, and the
translators then fall back to what the upstream accepts without one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL = 2 * 3600.0
DEFAULT_MAX_ENTRIES = 50_000


class SignatureStore:
    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self._data: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def put(self, kind: str, key: str, value: str) -> None:
        k = (kind, key)
        self._data[k] = (self._clock() + self._ttl, value)
        self._data.move_to_end(k)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def get(self, kind: str, key: str) -> str | None:
        item = self._data.get((kind, key))
        if item is None:
            return None
        expires, value = item
        if expires < self._clock():
            del self._data[(kind, key)]
            return None
        return value

    # Named helpers so the key spaces stay consistent across protocols.
    def put_tool_call(self, call_id: str, signature: str) -> None:
        self.put("tool", call_id, signature)

    def tool_call(self, call_id: str) -> str | None:
        return self.get("tool", call_id)

    def put_text(self, session: str, text_digest: str, signature: str) -> None:
        self.put("text", f"{session}:{text_digest}", signature)

    def text(self, session: str, text_digest: str) -> str | None:
        return self.get("text", f"{session}:{text_digest}")

    def put_thinking(self, signature: str, thinking_text: str) -> None:
        """Remember the text a thinking signature was issued for."""
        self.put("thinking", signature, thinking_text)

    def thinking(self, signature: str) -> str | None:
        return self.get("thinking", signature)

    def put_family(self, signature: str, family: str) -> None:
        """Which model family (claude / gemini) issued a signature."""
        self.put("family", signature[:64], family)

    def family(self, signature: str) -> str | None:
        return self.get("family", signature[:64])
