"""Reading or onboarding an account's Cloud Code project (UPSTREAM.md §3.3-§3.4)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.accounts import onboarding
from daemon.errors import UpstreamError

LIVE_LOAD: dict[str, Any] = {
    "currentTier": {"id": "free-tier", "name": "Antigravity"},
    "allowedTiers": [
        {"id": "free-tier", "name": "Antigravity", "isDefault": True},
        {"id": "standard-tier", "name": "Antigravity", "userDefinedCloudaicompanionProject": True},
    ],
    "cloudaicompanionProject": "proj-live",
    "gcpManaged": False,
    "paidTier": {"id": "g1-pro-tier", "name": "Google AI Pro"},
}


def test_plan_is_paid_tier() -> None:
    assert onboarding.plan_of(LIVE_LOAD) == "g1-pro-tier"
    assert onboarding.tier_label(LIVE_LOAD) == "PRO"
    assert onboarding.tier_label({"currentTier": {"id": "free-tier"}}) == "FREE"
    assert onboarding.tier_label({"paidTier": {"id": "g1-ultra-tier"}}) == "ULTRA"


@pytest.mark.parametrize(
    ("value", "project"),
    [
        ("proj-a", "proj-a"),
        ({"id": "proj-b"}, "proj-b"),
        ({"projectId": "proj-c"}, "proj-c"),
        (None, ""),
        (7, ""),
    ],
)
def test_project_of(value: Any, project: str) -> None:
    assert onboarding.project_of({"cloudaicompanionProject": value}) == project


def test_onboard_tier_order() -> None:
    assert onboarding.onboard_tier(LIVE_LOAD) == "free-tier"
    assert onboarding.onboard_tier({"allowedTiers": [{"id": "x"}], "currentTier": {"id": "legacy-tier"}}) == (
        "legacy-tier"
    )
    assert onboarding.onboard_tier({}) == "free-tier"


async def test_existing_project_needs_no_call() -> None:
    async def call(method: str, body: Any) -> Any:
        raise AssertionError("no call expected")

    assert await onboarding.ensure_project(LIVE_LOAD, call, call) == "proj-live"


async def test_fresh_account_is_onboarded_polling_the_operation() -> None:
    calls: list[tuple[str, Any]] = []

    async def call(method: str, body: Any) -> Any:
        calls.append((method, body))
        return {"name": "operations/op-1", "done": False}

    async def get(name: str) -> Any:
        calls.append(("GET", name))
        return {"name": name, "done": True, "response": {"cloudaicompanionProject": {"id": "proj-new"}}}

    load = {k: v for k, v in LIVE_LOAD.items() if k != "cloudaicompanionProject"}
    assert await onboarding.ensure_project(load, call, get, poll_interval=0) == "proj-new"
    assert calls[0] == (
        "onboardUser",
        {"tierId": "free-tier", "metadata": onboarding.CLIENT_METADATA},
    )
    assert calls[1] == ("GET", "operations/op-1")


async def test_onboarding_that_never_finishes_says_what_to_do() -> None:
    async def call(method: str, body: Any) -> Any:
        return {"done": False} if method == "onboardUser" else {}

    with pytest.raises(UpstreamError, match="accounts refresh"):
        await onboarding.ensure_project({}, call, call, poll_interval=0, attempts=3)


async def test_validation_required_in_load_code_assist() -> None:
    load = {
        "ineligibleTiers": [
            {
                "reasonCode": "VALIDATION_REQUIRED",
                "reasonMessage": "Verify your account to continue.",
                "validationUrl": "https://accounts.google.com/signin/continue?x=1",
            }
        ]
    }

    async def call(method: str, body: Any) -> Any:
        raise AssertionError("no onboarding for an account that must be verified first")

    with pytest.raises(onboarding.ValidationRequired) as info:
        await onboarding.ensure_project(load, call, call)
    assert info.value.url.startswith("https://accounts.google.com/")
