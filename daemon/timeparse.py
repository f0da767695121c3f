"""Google's duration and timestamp strings, read leniently (pure, a leaf module).

Both the error classifier (``daemon.upstream.classify``) and the quota
records (``daemon.quota``) read them, so they live below both.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: object) -> float | None:
    """Seconds in a duration as Google writes them, or None if it is not one.

    Two spellings arrive (UPSTREAM.md §9.10): protobuf ``Duration`` JSON
    (``RetryInfo.retryDelay``: ``"9442.776060443s"``) and Go durations
    (``quotaResetDelay``: ``"479.417207ms"``, ``"71h15m27.791609974s"``).
    A bare number counts as seconds.
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        value = float(text)
        return value if math.isfinite(value) and value >= 0 else None
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    total = 0.0
    pos = 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not math.isfinite(total):
        return None
    return total


def parse_timestamp(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 time (``"2026-07-18T14:57:17Z"``, fractions
    of any length); a time without a zone is UTC; a number is already epoch."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        value = float(text)
        return value if math.isfinite(value) else None
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value: delta-seconds or an HTTP date."""
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        dt = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return max(0.0, dt.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None
