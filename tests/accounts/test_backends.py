"""The one plan for Google vs z.ai (daemon.backends), without a server."""

from __future__ import annotations

import msgspec
import pytest

from daemon.backends import BackendPlan
from daemon.config import Config
from daemon.errors import BadRequest, ModelNotFound, NoAccountAvailable, RateLimited, UpstreamError


def plan(mode: str, active: int = 2, *, enabled: bool = True) -> BackendPlan:
    cfg = msgspec.convert(
        {"zai": {"enabled": enabled, "api_key": "zk-0123456789", "dispatch_mode": mode}}, type=Config
    )
    return BackendPlan(lambda: cfg, lambda: active)


def test_off_and_disabled_never_pick_zai() -> None:
    assert plan("pooled", enabled=False).mode == "off"
    assert {plan("off").first("claude-sonnet-4-6") for _ in range(5)} == {"google"}


def test_exclusive_always_zai_and_never_google_after() -> None:
    p = plan("exclusive")
    assert p.first("gemini-3-flash") == "zai"
    assert not p.google_after_zai(UpstreamError("z.ai down"))


def test_pooled_rotates_zai_as_one_more_slot_for_names_it_knows() -> None:
    p = plan("pooled", active=2)
    picks = [p.first("claude-sonnet-4-6") for _ in range(6)]
    assert picks.count("zai") == 2 and picks[0] == "zai"  # one slot in three
    assert {p.first("gemini-3-flash") for _ in range(6)} == {"google"}  # no glm-* for it
    assert p.google_after_zai(UpstreamError("z.ai down"))
    assert not plan("pooled", active=0).google_after_zai(UpstreamError("z.ai down"))


@pytest.mark.parametrize(
    ("err", "falls_back"),
    [
        (NoAccountAvailable("none"), True),
        (RateLimited("quota"), True),
        (UpstreamError("502"), True),
        (ModelNotFound("not served"), True),
        (BadRequest("bad"), False),
    ],
)
def test_fallback_only_for_google_failures(err: Exception, falls_back: bool) -> None:
    p = plan("fallback")
    assert p.first("claude-sonnet-4-6") == "google"
    assert p.zai_after_google("claude-sonnet-4-6", zai_tried=False)
    assert not p.zai_after_google("claude-sonnet-4-6", zai_tried=True)
    assert not p.zai_after_google("gemini-3-flash", zai_tried=False)
    assert p.falls_back_on(err) is falls_back  # type: ignore[arg-type]
