"""Prometheus metrics (placeholder until the monitor issue lands)."""

from __future__ import annotations

from typing import Any


class Metrics:
    def __init__(self, service: Any) -> None:
        self.service = service

    def observe(self, ctx: Any) -> None:
        return None

    def render(self) -> bytes:
        return b""
