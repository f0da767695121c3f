"""The 5-hour and weekly quota windows of an account (records; pure, no I/O).

Google meters Antigravity use per *group* of models, each with two
independent windows (UPSTREAM.md §4.2): a 5-hour bucket that smooths demand
and a weekly bucket tied to the account's tier. ``retrieveUserQuotaSummary``
reports both; :func:`parse_quota_summary` reads its answer into records,
:func:`usable` says whether a group can serve now and until when not, and
:func:`describe` renders the one-line form ``agctl accounts list`` shows.

This module sits with the records at the bottom of the layers so that
``accounts/`` (scheduling), the admin API and the metrics code can all import
it without importing the upstream client.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Literal

import msgspec

from daemon.timeparse import parse_timestamp

GroupKey = Literal["gemini", "3p"]
Window = Literal["5h", "weekly"]

GROUP_KEYS: tuple[GroupKey, ...] = ("gemini", "3p")
# What Google calls the groups [LIVE, UPSTREAM.md §4.2]; used when an answer has no displayName.
DEFAULT_DISPLAY_NAMES: dict[GroupKey, str] = {"gemini": "Gemini Models", "3p": "Claude and GPT models"}


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """One window of one group."""

    bucket_id: str
    window: Window
    remaining_fraction: float  # 0..1; protobuf omits a zero, so missing reads as 0 (§4.1)
    reset_time: float | None = None  # epoch seconds
    description: str = ""  # absent on an untouched bucket (§4.2)

    def empty(self, now: float) -> bool:
        """Used up and not yet past its reset time."""
        return self.remaining_fraction <= 0 and (self.reset_time is None or self.reset_time > now)


class QuotaGroup(msgspec.Struct, frozen=True, kw_only=True):
    key: GroupKey
    display_name: str
    five_hour: Bucket | None = None
    weekly: Bucket | None = None


class QuotaSummary(msgspec.Struct, frozen=True, kw_only=True):
    groups: dict[str, QuotaGroup] = msgspec.field(default_factory=dict)  # keyed by GroupKey
    fetched_at: float = 0.0


# --------------------------------------------------------------------------- models -> groups


def group_of(model_id: str) -> GroupKey:
    """The quota group a model id draws from: Claude and GPT-OSS share the
    "3p" group, every other id (all Gemini ids, internal ids) the "gemini"
    one (UPSTREAM.md §4.2: "Claude and GPT models" vs "Gemini Models")."""
    name = model_id.strip().lower()
    for prefix in ("models/", "google/", "antigravity/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if "claude" in name or name.startswith("gpt") or "gpt-oss" in name:
        return "3p"
    return "gemini"


# --------------------------------------------------------------------------- parsing

# Live strings are "5h" and "weekly"; peers also read FIVE_HOUR/WEEKLY,
# five-hour/five_hour and week (DISAGREE in UPSTREAM.md §4.2). Compared after
# lower-casing and dropping "-", "_", " ".
_WINDOWS: dict[str, Window] = {
    "5h": "5h",
    "fivehour": "5h",
    "5hour": "5h",
    "5hours": "5h",
    "fivehours": "5h",
    "weekly": "weekly",
    "week": "weekly",
    "7d": "weekly",
}


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in "-_ ")


def _window_of(raw: Mapping[str, object]) -> Window | None:
    w = raw.get("window")
    if isinstance(w, str):
        key = _norm(w)
        if key.startswith("window"):
            key = key[len("window") :]
        if key in _WINDOWS:
            return _WINDOWS[key]
    # No usable window field: the bucket id or display name says it
    # ("gemini-5h", "Five Hour Limit").
    for field in ("bucketId", "displayName"):
        text = raw.get(field)
        if not isinstance(text, str):
            continue
        norm = _norm(text)
        if norm.endswith("5h") or "fivehour" in norm or "5hour" in norm:
            return "5h"
        if "week" in norm:
            return "weekly"
    return None


def _fraction(raw: Mapping[str, object]) -> float:
    value: object = raw.get("remainingFraction")
    if value is None:
        # UNVERIFIED oneof spelling: {"remaining": {"case": "remainingFraction", "value": x}}.
        rem = raw.get("remaining")
        if isinstance(rem, Mapping) and rem.get("case") == "remainingFraction":
            value = rem.get("value")
    if isinstance(value, bool):
        value = None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0  # missing = 0: protobuf omits zero (§4.1)
    if raw.get("disabled") is True:
        return 0.0  # UNVERIFIED: "disabled" marks an exhausted bucket
    return min(1.0, max(0.0, float(value)))  # some readers see values > 1


def _bucket(raw: Mapping[str, object]) -> Bucket | None:
    window = _window_of(raw)
    if window is None:
        return None
    bid = raw.get("bucketId")
    desc = raw.get("description")
    return Bucket(
        bucket_id=bid if isinstance(bid, str) else "",
        window=window,
        remaining_fraction=_fraction(raw),
        reset_time=parse_timestamp(raw.get("resetTime")),
        description=desc if isinstance(desc, str) else "",
    )


def _group_key_of(bucket_ids: Iterable[str], display_name: str) -> GroupKey | None:
    for bid in bucket_ids:
        low = bid.lower()
        if low.startswith("gemini"):
            return "gemini"
        if low.startswith("3p"):
            return "3p"
    name = display_name.lower()
    if "gemini" in name:
        return "gemini"
    if "claude" in name or "gpt" in name or "3p" in name or "third" in name:
        return "3p"
    return None


def _pick(old: Bucket | None, new: Bucket) -> Bucket:
    """Two buckets for one window (a repeated group): keep the stricter."""
    if old is None or new.remaining_fraction < old.remaining_fraction:
        return new
    return old


class _Acc:
    def __init__(self, key: GroupKey) -> None:
        self.key = key
        self.display_name = ""
        self.five_hour: Bucket | None = None
        self.weekly: Bucket | None = None

    def add(self, b: Bucket) -> None:
        if b.window == "5h":
            self.five_hour = _pick(self.five_hour, b)
        else:
            self.weekly = _pick(self.weekly, b)

    def build(self) -> QuotaGroup:
        return QuotaGroup(
            key=self.key,
            display_name=self.display_name or DEFAULT_DISPLAY_NAMES[self.key],
            five_hour=self.five_hour,
            weekly=self.weekly,
        )


def parse_quota_summary(data: object, *, fetched_at: float = 0.0) -> QuotaSummary:
    """Records from a raw ``retrieveUserQuotaSummary`` answer (decoded JSON).

    Reads ``groups[].buckets[]`` and, as some readers expect, a top-level
    ``buckets[]``; a group is known by its bucket id prefix (``gemini-``,
    ``3p-``) or its display name. Anything unreadable is skipped, never raised.
    """
    accs: dict[GroupKey, _Acc] = {}

    def acc(key: GroupKey) -> _Acc:
        if key not in accs:
            accs[key] = _Acc(key)
        return accs[key]

    if not isinstance(data, Mapping):
        return QuotaSummary(fetched_at=fetched_at)
    groups = data.get("groups")
    for g in groups if isinstance(groups, list) else ():
        if not isinstance(g, Mapping):
            continue
        raw_buckets = g.get("buckets")
        bucket_dicts = [
            b for b in (raw_buckets if isinstance(raw_buckets, list) else ()) if isinstance(b, Mapping)
        ]
        dn = g.get("displayName")
        display_name = dn if isinstance(dn, str) else ""
        ids = [b["bucketId"] for b in bucket_dicts if isinstance(b.get("bucketId"), str)]
        key = _group_key_of(ids, display_name)
        if key is None:
            continue
        a = acc(key)
        a.display_name = a.display_name or display_name
        for raw in bucket_dicts:
            b = _bucket(raw)
            if b is not None:
                a.add(b)
    top = data.get("buckets")
    for raw in top if isinstance(top, list) else ():
        if not isinstance(raw, Mapping):
            continue
        bid = raw.get("bucketId")
        key = _group_key_of([bid] if isinstance(bid, str) else [], "")
        b = _bucket(raw)
        if key is not None and b is not None:
            acc(key).add(b)
    return QuotaSummary(
        groups={k: accs[k].build() for k in GROUP_KEYS if k in accs},
        fetched_at=fetched_at,
    )


# --------------------------------------------------------------------------- decisions


def usable(summary: QuotaSummary | None, group: str, now: float) -> tuple[bool, float | None, str]:
    """Can ``group`` serve now? ``(ok, until, why)``.

    Usable only if both windows have quota left (or passed their reset
    time). The windows are independent and an empty weekly window takes
    precedence: the 5-hour one may refill to 100 % while the models stay
    blocked (UPSTREAM.md §4.2). ``until`` is when the blocking window(s)
    reset, None if Google did not say. A group without data is usable: only
    a known-empty window blocks.
    """
    g = summary.groups.get(group) if summary is not None else None
    if g is None:
        return True, None, f"no quota data for {group}"
    empty = [b for b in (g.weekly, g.five_hour) if b is not None and b.empty(now)]
    if not empty:
        return True, None, "quota left in both windows"
    resets = [b.reset_time for b in empty]
    until = None if any(r is None for r in resets) else max(r for r in resets if r is not None)
    first = empty[0]  # weekly first when both are empty
    label = "weekly" if first.window == "weekly" else "5-hour"
    why = f"{g.display_name}: {label} limit used up"
    if len(empty) == 2:
        why += " (5-hour too)"
    return False, until, why


# --------------------------------------------------------------------------- display


def _pct(fraction: float) -> str:
    if 0 < fraction < 0.01:
        return "<1%"
    return f"{math.floor(fraction * 100 + 1e-9)}%"  # floor: 99.99 % is not "100 %"


def _clock(ts: float, now: float, tz: tzinfo | None) -> str:
    try:
        at = datetime.fromtimestamp(ts, tz)
        if tz is None:
            at = at.astimezone()
        today = datetime.fromtimestamp(now, at.tzinfo)
    except (OverflowError, OSError, ValueError):
        return "?"
    if at.date() == today.date():
        return at.strftime("%H:%M")
    return at.strftime("%a %H:%M")


def _window_text(label: str, b: Bucket | None, now: float, tz: tzinfo | None, always_reset: bool) -> str:
    if b is None:
        return f"{label} ?"
    text = f"{label} {_pct(b.remaining_fraction)}"
    full = b.remaining_fraction >= 1
    if b.reset_time is not None and not full and (always_reset or b.remaining_fraction <= 0):
        text += f" (resets {_clock(b.reset_time, now, tz)})"
    return text


def describe_group(group: QuotaGroup, now: float, tz: tzinfo | None = None) -> str:
    """``"gemini 5h 95% (resets 14:57) · week 98%"``: the 5-hour reset time when
    it is not full, the weekly one only when the week is used up. ``tz`` None
    = local time."""
    five = _window_text("5h", group.five_hour, now, tz, always_reset=True)
    week = _window_text("week", group.weekly, now, tz, always_reset=False)
    return f"{group.key} {five} · {week}"


def describe(summary: QuotaSummary | None, now: float, tz: tzinfo | None = None) -> str:
    """Every group on one line, ``" | "`` between them; ``"-"`` without data."""
    if summary is None or not summary.groups:
        return "-"
    return " | ".join(describe_group(summary.groups[k], now, tz) for k in GROUP_KEYS if k in summary.groups)
