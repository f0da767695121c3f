"""The proxy listener's state machine (supervisor-style); every transition logged."""

from __future__ import annotations

import enum
import logging
import time

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


_ALLOWED: dict[State, set[State]] = {
    State.STOPPED: {State.STARTING},
    State.FAILED: {State.STARTING, State.STOPPED},
    State.STARTING: {State.RUNNING, State.FAILED, State.STOPPING},
    State.RUNNING: {State.STOPPING, State.FAILED},
    State.STOPPING: {State.STOPPED, State.FAILED},
}


class ProxyState:
    def __init__(self) -> None:
        self.state = State.STOPPED
        self.reason = ""
        self.since = time.time()

    def to(self, new: State, reason: str = "") -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"proxy state {self.state} -> {new} is not allowed")
        log.info("proxy %s -> %s%s", self.state, new, f" ({reason})" if reason else "")
        self.state = new
        self.reason = reason
        self.since = time.time()
