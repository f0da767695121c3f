"""A Google account's Cloud Code project: read it, or onboard a fresh account.

UPSTREAM.md §3.3-§3.4:

- ``loadCodeAssist`` names the managed project in ``cloudaicompanionProject``
  (a string, or an object with ``id``); a fresh account has none and must be
  onboarded, else every inference call fails.
- The plan is ``paidTier.id`` (``currentTier`` stays ``free-tier`` for paying
  accounts).
- ``onboardUser`` takes a tier id (the ``allowedTiers`` entry marked
  ``isDefault``, else ``currentTier.id``, else ``free-tier``) and the client
  metadata, and may answer a long-running operation (``done: false`` with a
  ``name``). Peers poll it two ways (DISAGREE): CPA re-POSTs ``onboardUser``,
  AGYA GETs ``/v1internal/<name>``. We GET the operation when it has a name
  (the general long-running-operation convention) and re-POST otherwise.
- ``ineligibleTiers[].reasonCode == "VALIDATION_REQUIRED"`` with a
  ``validationUrl`` means the user must verify the account first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.errors import PermissionDenied, UpstreamError

log = logging.getLogger(__name__)

# The metadata of the live onboardUser capture (§3.4); loadCodeAssist takes the same.
CLIENT_METADATA: dict[str, str] = {
    "ideType": "ANTIGRAVITY",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
}
# AGYA polls 10 times, 5 s apart; CPA 5 times, 2 s apart (§3.4).
POLL_ATTEMPTS = 10
POLL_INTERVAL = 2.0

Call = Callable[[str, Any], Awaitable[Any]]  # (method, JSON body) -> decoded answer
Get = Callable[[str], Awaitable[Any]]  # (operation name) -> decoded answer


class ValidationRequired(PermissionDenied):
    """The account must be verified in a browser before it can be used."""

    kind = "validation_required"

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


def project_of(data: Any) -> str:
    """The managed project in a loadCodeAssist / onboardUser answer."""
    if not isinstance(data, dict):
        return ""
    proj = data.get("cloudaicompanionProject")
    if isinstance(proj, dict):
        proj = proj.get("id") or proj.get("projectId") or proj.get("project")
    return proj.strip() if isinstance(proj, str) else ""


def plan_of(load: dict[str, Any]) -> str:
    """The tier id that says what the user pays for: ``paidTier.id`` first (§3.3)."""
    for key in ("paidTier", "currentTier"):
        tier = load.get(key)
        if isinstance(tier, dict) and isinstance(tier.get("id"), str) and tier["id"]:
            return str(tier["id"])
    return ""


def tier_label(load: dict[str, Any]) -> str:
    """FREE / PRO / ULTRA for lists and scheduling."""
    plan = plan_of(load).lower()
    if "ultra" in plan:
        return "ULTRA"
    if "pro" in plan or "standard" in plan:
        return "PRO"
    return "FREE"


def onboard_tier(load: dict[str, Any]) -> str:
    """The tier to onboard with (§3.4, CPA's order)."""
    tiers = load.get("allowedTiers")
    if isinstance(tiers, list):
        for tier in tiers:
            if isinstance(tier, dict) and tier.get("isDefault") and isinstance(tier.get("id"), str):
                return str(tier["id"])
    current = load.get("currentTier")
    if isinstance(current, dict) and isinstance(current.get("id"), str) and current["id"]:
        return str(current["id"])
    return "free-tier"


def check_eligible(load: dict[str, Any]) -> None:
    """Raise ValidationRequired when loadCodeAssist says the account must be verified."""
    for tier in load.get("ineligibleTiers") or []:
        if not isinstance(tier, dict):
            continue
        if tier.get("reasonCode") == "VALIDATION_REQUIRED":
            url = str(tier.get("validationUrl") or "")
            text = str(tier.get("reasonMessage") or "Verify your account to continue.")
            raise ValidationRequired(
                f"Google asks to verify this account: {text} Open {url or 'the link Google shows'} "
                "signed in as that account, then run `agctl accounts refresh`.",
                url,
            )


async def ensure_project(
    load: dict[str, Any],
    call: Call,
    get: Get,
    *,
    poll_interval: float = POLL_INTERVAL,
    attempts: int = POLL_ATTEMPTS,
) -> str:
    """The account's project: from ``load``, else by onboarding it."""
    project = project_of(load)
    if project:
        return project
    check_eligible(load)
    tier = onboard_tier(load)
    body = {"tierId": tier, "metadata": dict(CLIENT_METADATA)}
    log.info("the account has no Cloud Code project yet: onboarding it (tier %s)", tier)
    op = await call("onboardUser", body)
    for _ in range(attempts):
        if isinstance(op, dict) and op.get("done"):
            if isinstance(op.get("error"), dict):
                msg = op["error"].get("message") or op["error"]
                raise UpstreamError(f"onboarding the account failed: {msg}")
            project = project_of(op.get("response"))
            if project:
                return project
            break
        await asyncio.sleep(poll_interval)
        name = op.get("name") if isinstance(op, dict) else None
        if isinstance(name, str) and name.startswith("operations/"):
            op = await get(name)
        else:
            op = await call("onboardUser", body)
    # A last loadCodeAssist: the operation may be done without saying so.
    again = await call("loadCodeAssist", {"metadata": dict(CLIENT_METADATA)})
    project = project_of(again)
    if project:
        return project
    raise UpstreamError(
        "Google did not give this account a Cloud Code project (onboarding did not finish); "
        "try `agctl accounts refresh` in a minute, or sign in once with the Antigravity app"
    )
