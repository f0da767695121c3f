"""The 5-hour and weekly quota windows (daemon.quota), from the live
``retrieveUserQuotaSummary`` answer of UPSTREAM.md §4.2, its variants and garbage."""

# The upstream bodies below are copied verbatim from UPSTREAM.md, long lines included.
# ruff: noqa: E501

from __future__ import annotations

import copy
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from daemon.quota import (
    Bucket,
    QuotaGroup,
    QuotaSummary,
    describe,
    describe_group,
    group_of,
    parse_quota_summary,
    usable,
)

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "antigravity-hypothesis")  # not in the checkout


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# UPSTREAM.md §4.2, live 2026-07-18 [verbatim]
LIVE = """{
  "groups": [
    {
      "buckets": [
        {"bucketId": "gemini-weekly", "displayName": "Weekly Limit", "window": "weekly",
         "resetTime": "2026-07-25T07:40:12Z",
         "description": "You have used some of your weekly limit, it will fully refresh in 6 days, 21 hours.",
         "remainingFraction": 0.98366886},
        {"bucketId": "gemini-5h", "displayName": "Five Hour Limit", "window": "5h",
         "resetTime": "2026-07-18T14:57:17Z",
         "description": "You have used some of your 5-hour limit, it will fully refresh in 4 hours, 23 minutes.",
         "remainingFraction": 0.9520131}
      ],
      "displayName": "Gemini Models",
      "description": "Models within this group: Gemini Flash, Gemini Pro"
    },
    {
      "buckets": [
        {"bucketId": "3p-weekly", "displayName": "Weekly Limit", "window": "weekly",
         "resetTime": "2026-07-25T10:29:22Z",
         "description": "You have used some of your weekly limit, it will fully refresh in 6 days, 23 hours.",
         "remainingFraction": 0.999992},
        {"bucketId": "3p-5h", "displayName": "Five Hour Limit", "window": "5h",
         "resetTime": "2026-07-18T15:29:22Z",
         "description": "You have used some of your 5-hour limit, it will fully refresh in 4 hours, 55 minutes.",
         "remainingFraction": 0.999976}
      ],
      "displayName": "Claude and GPT models",
      "description": "Models within this group: Claude Opus, Claude Sonnet, GPT-OSS"
    }
  ],
  "description": "Within each group, models share a weekly limit and a 5-hour limit. Quota is consumed proportionally to the cost of the tokens. Thus, limits will last longer with shorter tasks or using more cost-effective models. The 5-hour limit smooths out aggregate demand to fairly distribute global capacity across all users, while your weekly limit is tied directly to your individual tier."
}"""

NOW = ts("2026-07-18T10:34:00Z")  # the capture's moment (4 h 23 min before the Gemini 5-hour reset)


def live() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LIVE)
    return data


def test_live_body() -> None:
    s = parse_quota_summary(live(), fetched_at=NOW)
    assert s.fetched_at == NOW
    assert list(s.groups) == ["gemini", "3p"]
    g = s.groups["gemini"]
    assert g.display_name == "Gemini Models"
    assert g.five_hour == Bucket(
        bucket_id="gemini-5h",
        window="5h",
        remaining_fraction=0.9520131,
        reset_time=ts("2026-07-18T14:57:17Z"),
        description="You have used some of your 5-hour limit, it will fully refresh in 4 hours, 23 minutes.",
    )
    assert g.weekly is not None and g.weekly.remaining_fraction == 0.98366886
    assert g.weekly.reset_time == ts("2026-07-25T07:40:12Z")
    p = s.groups["3p"]
    assert p.display_name == "Claude and GPT models"
    assert p.five_hour is not None and p.five_hour.bucket_id == "3p-5h"
    assert p.weekly is not None and p.weekly.reset_time == ts("2026-07-25T10:29:22Z")
    assert usable(s, "gemini", NOW) == (True, None, "quota left in both windows")
    assert usable(s, "3p", NOW)[0] is True


def test_describe_live() -> None:
    s = parse_quota_summary(live(), fetched_at=NOW)
    assert describe_group(s.groups["gemini"], NOW, UTC) == "gemini 5h 95% (resets 14:57) · week 98%"
    assert describe(s, NOW, UTC) == (
        "gemini 5h 95% (resets 14:57) · week 98% | 3p 5h 99% (resets 15:29) · week 99%"
    )
    assert describe(s, NOW).startswith("gemini 5h 95% (resets ")  # local time


def test_untouched_bucket() -> None:
    # §4.2: an untouched bucket has remainingFraction 1, a resetTime and no description.
    data = live()
    for b in data["groups"][0]["buckets"]:
        b["remainingFraction"] = 1
        del b["description"]
    s = parse_quota_summary(data)
    g = s.groups["gemini"]
    assert g.five_hour is not None and g.five_hour.remaining_fraction == 1.0
    assert g.five_hour.description == ""
    assert g.five_hour.reset_time == ts("2026-07-18T14:57:17Z")
    assert describe_group(g, NOW, UTC) == "gemini 5h 100% · week 100%"
    assert usable(s, "gemini", NOW)[0] is True


def weekly_empty() -> QuotaSummary:
    # Weekly at 0 (protobuf omits the zero), the 5-hour window refilled to 100 %.
    data = live()
    weekly, five = data["groups"][0]["buckets"]
    del weekly["remainingFraction"]
    five["remainingFraction"] = 1
    return parse_quota_summary(data)


def test_weekly_empty_takes_precedence() -> None:
    s = weekly_empty()
    ok, until, why = usable(s, "gemini", NOW)
    assert ok is False
    assert until == ts("2026-07-25T07:40:12Z")
    assert "weekly" in why and "Gemini Models" in why
    # The other group is independent.
    assert usable(s, "3p", NOW)[0] is True
    assert describe_group(s.groups["gemini"], NOW, UTC) == "gemini 5h 100% · week 0% (resets Sat 07:40)"


def test_window_usable_again_after_its_reset() -> None:
    s = weekly_empty()
    assert usable(s, "gemini", ts("2026-07-25T07:40:12Z"))[0] is True  # reset time reached
    assert usable(s, "gemini", ts("2026-07-25T07:40:11Z"))[0] is False


def test_five_hour_empty() -> None:
    data = live()
    data["groups"][1]["buckets"][1]["remainingFraction"] = 0
    s = parse_quota_summary(data)
    ok, until, why = usable(s, "3p", NOW)
    assert (ok, until) == (False, ts("2026-07-18T15:29:22Z"))
    assert "5-hour" in why


def test_both_empty_waits_for_the_later_reset_and_names_weekly() -> None:
    data = live()
    for b in data["groups"][1]["buckets"]:
        b["remainingFraction"] = 0
    ok, until, why = usable(parse_quota_summary(data), "3p", NOW)
    assert (ok, until) == (False, ts("2026-07-25T10:29:22Z"))
    assert why.startswith("Claude and GPT models: weekly limit used up")


def test_empty_without_reset_time_blocks_with_unknown_until() -> None:
    data = live()
    b = data["groups"][0]["buckets"][1]
    b["remainingFraction"] = 0
    del b["resetTime"]
    assert usable(parse_quota_summary(data), "gemini", NOW)[:2] == (False, None)


def test_unknown_group_or_summary_is_usable() -> None:
    assert usable(None, "gemini", NOW)[0] is True
    assert usable(QuotaSummary(), "3p", NOW)[0] is True
    only_gemini = QuotaSummary(groups={"gemini": QuotaGroup(key="gemini", display_name="G")})
    assert usable(only_gemini, "gemini", NOW)[0] is True  # no windows known
    assert describe(None, NOW) == "-" and describe(QuotaSummary(), NOW) == "-"
    assert describe_group(only_gemini.groups["gemini"], NOW, UTC) == "gemini 5h ? · week ?"


@pytest.mark.parametrize(
    ("five", "week"),
    [
        ("FIVE_HOUR", "WEEKLY"),  # AGYA's expectation
        ("five_hour", "week"),  # MC
        ("five-hour", "weekly"),
        ("WINDOW_FIVE_HOUR", "WINDOW_WEEKLY"),
    ],
)
def test_window_spellings(five: str, week: str) -> None:
    data = live()
    weekly, five_h = data["groups"][0]["buckets"]
    weekly["window"], five_h["window"] = week, five
    g = parse_quota_summary(data).groups["gemini"]
    assert g.five_hour is not None and g.five_hour.remaining_fraction == 0.9520131
    assert g.weekly is not None and g.weekly.remaining_fraction == 0.98366886


def test_window_from_bucket_id_or_display_name() -> None:
    data = live()
    for b in data["groups"][0]["buckets"]:
        del b["window"]
    for b in data["groups"][1]["buckets"]:
        del b["window"]
        del b["bucketId"]
    s = parse_quota_summary(data)
    assert s.groups["gemini"].five_hour is not None and s.groups["gemini"].weekly is not None
    # 3p: the group by its display name, the windows by theirs.
    assert s.groups["3p"].five_hour is not None and s.groups["3p"].five_hour.bucket_id == ""
    assert s.groups["3p"].weekly is not None


def test_top_level_buckets() -> None:
    data = {"buckets": [b for g in live()["groups"] for b in g["buckets"]]}
    s = parse_quota_summary(data)
    assert set(s.groups) == {"gemini", "3p"}
    assert s.groups["gemini"].display_name == "Gemini Models"  # the default name
    assert s.groups["3p"].five_hour is not None and s.groups["3p"].five_hour.remaining_fraction == 0.999976


def test_group_by_display_name_only() -> None:
    data = {
        "groups": [
            {"displayName": "Claude and GPT models", "buckets": [{"window": "5h", "remainingFraction": 0.5}]}
        ]
    }
    s = parse_quota_summary(data)
    assert s.groups["3p"].five_hour is not None
    assert s.groups["3p"].five_hour.remaining_fraction == 0.5


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ({"remainingFraction": 1.7}, 1.0),  # clamp (some readers see > 1)
        ({"remainingFraction": -0.2}, 0.0),
        ({"remainingFraction": "0.25"}, 0.25),
        ({"remainingFraction": "lots"}, 0.0),
        ({"remainingFraction": True}, 0.0),
        ({"remainingFraction": None}, 0.0),
        ({"remainingFraction": float("nan")}, 0.0),
        ({"remainingFraction": float("inf")}, 0.0),
        ({}, 0.0),  # missing = 0 (protobuf omits zero)
        ({"remaining": {"case": "remainingFraction", "value": 0.4}}, 0.4),
        ({"remainingFraction": 0.9, "disabled": True}, 0.0),
    ],
)
def test_remaining_fraction(raw: dict[str, object], want: float) -> None:
    data = {"groups": [{"buckets": [{"bucketId": "gemini-5h", "window": "5h", **raw}]}]}
    b = parse_quota_summary(data).groups["gemini"].five_hour
    assert b is not None and b.remaining_fraction == want


def test_repeated_window_keeps_the_stricter_bucket() -> None:
    data = live()
    data["groups"].append(copy.deepcopy(data["groups"][0]))
    data["groups"][2]["buckets"][1]["remainingFraction"] = 0.1
    b = parse_quota_summary(data).groups["gemini"].five_hour
    assert b is not None and b.remaining_fraction == 0.1


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "groups",
        42,
        {},
        {"groups": 5},
        {"groups": [5, None, "x", {"buckets": "x"}, {"buckets": [1, None]}]},
        {"groups": [{"displayName": 7, "buckets": [{"bucketId": 9, "window": 3, "resetTime": "never"}]}]},
        {"groups": [{"displayName": "Mystery", "buckets": [{"bucketId": "zz-5h", "window": "5h"}]}]},
        {"buckets": [{"bucketId": "gemini-5h", "window": "monthly"}, {"window": "5h"}]},
    ],
)
def test_garbage(data: object) -> None:
    s = parse_quota_summary(data, fetched_at=1.0)
    assert isinstance(s, QuotaSummary) and s.fetched_at == 1.0
    for g in s.groups.values():
        for b in (g.five_hour, g.weekly):
            assert b is None or 0.0 <= b.remaining_fraction <= 1.0
    describe(s, NOW, UTC)
    usable(s, "gemini", NOW)


def test_garbage_reset_time_is_none() -> None:
    data = {"groups": [{"buckets": [{"bucketId": "gemini-5h", "window": "5h", "resetTime": "tomorrow"}]}]}
    b = parse_quota_summary(data).groups["gemini"].five_hour
    assert b is not None and b.reset_time is None and b.remaining_fraction == 0.0


@pytest.mark.parametrize(
    ("model", "group"),
    [
        ("gemini-3-flash", "gemini"),
        ("gemini-3.1-pro-low", "gemini"),
        ("gemini-3.1-flash-image", "gemini"),
        ("models/gemini-2.5-pro", "gemini"),
        ("chat_20706", "gemini"),
        ("claude-opus-4-6-thinking", "3p"),
        ("claude-sonnet-4-6", "3p"),
        ("Claude-Sonnet-4-5", "3p"),
        ("gpt-oss-120b-medium", "3p"),
        ("", "gemini"),
    ],
)
def test_group_of(model: str, group: str) -> None:
    assert group_of(model) == group


def test_percent_display() -> None:
    g = QuotaGroup(
        key="3p",
        display_name="x",
        five_hour=Bucket(bucket_id="3p-5h", window="5h", remaining_fraction=0.004, reset_time=None),
        weekly=Bucket(bucket_id="3p-weekly", window="weekly", remaining_fraction=0.5, reset_time=NOW + 86400),
    )
    # The weekly reset shows only when the week is used up.
    assert describe_group(g, NOW, UTC) == "3p 5h <1% · week 50%"


def test_summary_is_serialisable() -> None:
    import msgspec

    s = parse_quota_summary(live(), fetched_at=NOW)
    assert msgspec.json.decode(msgspec.json.encode(s), type=QuotaSummary) == s


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
bucket_like = st.dictionaries(
    st.sampled_from(["bucketId", "window", "remainingFraction", "resetTime", "description", "displayName"]),
    st.sampled_from(["gemini-5h", "3p-weekly", "5h", "weekly", "2026-07-18T14:57:17Z"]) | json_values,
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    data=json_values
    | st.fixed_dictionaries(
        {
            "groups": st.lists(
                st.fixed_dictionaries({"buckets": st.lists(bucket_like | json_values)}) | json_values
            )
        }
    ),
    now=st.floats(min_value=-1e12, max_value=1e12),
)
def test_fuzz_never_raises(data: object, now: float) -> None:
    s = parse_quota_summary(data)
    describe(s, now, UTC)
    for key in ("gemini", "3p"):
        ok, until, why = usable(s, key, now)
        assert isinstance(ok, bool) and isinstance(why, str)
