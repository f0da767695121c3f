"""sd_notify: tell systemd about readiness, status, watchdog and stopping.

systemd-python's ``systemd.daemon.notify`` is used when installed (the Linux
``systemd`` extra); otherwise the same single datagram is sent on
``$NOTIFY_SOCKET`` by hand (it is the whole protocol: ``KEY=VALUE`` lines in
one AF_UNIX datagram; a leading ``@`` means the abstract namespace).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_systemd() -> Callable[[str], bool] | None:
    if os.environ.get("ANTIGRAVITY_NO_SYSTEMD_PYTHON"):
        return None
    try:
        from systemd import daemon as sd_daemon
    except ImportError:
        return None

    def notify(state: str) -> bool:
        return bool(sd_daemon.notify(state))

    return notify


def _socket_notify(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False


class Notifier:
    """Sends sd_notify messages; a no-op when not started by systemd."""

    def __init__(self) -> None:
        self.backend = "systemd-python" if _load_systemd() else "socket"
        self._notify = _load_systemd() or _socket_notify
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))

    def send(self, state: str) -> None:
        if self.enabled:
            self._notify(state)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half the watchdog period systemd asked for, in seconds."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(int(usec) / 1e6 / 2, 0.05)
        except ValueError:
            return None
