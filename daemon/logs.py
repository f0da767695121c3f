"""Logging: stderr always; journald too when started by systemd."""

from __future__ import annotations

import logging
import os
import sys

from daemon.errors import redact


class RedactingFilter(logging.Filter):
    """Last line of defence: no token or key reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg = clean
            record.args = None
        return True


def _stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected;
    only when stderr is still that stream do logs belong in the journal (a
    value inherited into a terminal must not hide them there)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup(level: str = "INFO") -> str:
    """Configure the root logger; returns where logs go (for status)."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    flt = RedactingFilter()
    targets = ["stderr"]
    handler: logging.Handler
    if _stderr_is_journal():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="antigravityd")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            handler.addFilter(flt)
            root.addHandler(handler)
            targets = ["journald"]
        except ImportError:
            pass
    if targets == ["stderr"]:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(flt)
        root.addHandler(handler)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return ",".join(targets)
