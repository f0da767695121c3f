"""Earlier Responses-API turns, for ``previous_response_id``: bounded, expiring, in memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

MAX_RESPONSES = 2000
TTL_SECONDS = 6 * 3600.0


class ResponseStore:
    def __init__(self, *, max_items: int = MAX_RESPONSES, ttl: float = TTL_SECONDS) -> None:
        self._items: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._max = max_items
        self._ttl = ttl

    def put(self, response_id: str, items: list[dict[str, Any]]) -> None:
        """``items``: the whole conversation so far (inputs and outputs)."""
        self._items[response_id] = (time.monotonic() + self._ttl, items)
        self._items.move_to_end(response_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> list[dict[str, Any]] | None:
        item = self._items.get(response_id)
        if item is None or item[0] < time.monotonic():
            self._items.pop(response_id, None)
            return None
        return item[1]
