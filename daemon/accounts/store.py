"""Account records and their files: ``data/accounts/<id>.json``, 0600, atomic.

A corrupt file is reported (``AccountStore.broken``) and skipped; it is never
overwritten or deleted behind the user's back.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import msgspec

from daemon.fsutil import atomic_write, ensure_private_dir
from daemon.models import Catalog
from daemon.quota import QuotaSummary, describe, group_of

log = logging.getLogger(__name__)


class Cooldown(msgspec.Struct, kw_only=True):
    until: float  # epoch seconds
    reason: str = ""


class Credits(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An account's Google One AI credits (UPSTREAM.md §4.4) and what this
    gateway spent of them today."""

    balance: float | None = None  # paidTier.availableCredits GOOGLE_ONE_AI creditAmount; None: none seen
    minimum: float = 0.0  # minimumCreditAmountForUsage
    seen_at: float = 0.0  # when the balance was read
    # An INSUFFICIENT_G1_CREDITS_BALANCE answer stops credit use until a
    # balance at or above the minimum is seen again.
    exhausted: bool = False
    day: str = ""  # the local date the counts below are for (YYYY-MM-DD)
    spent_today: float = 0.0  # credits, from the balance before and after
    requests_today: int = 0  # requests paid with credits

    def usable(self) -> bool:
        return not self.exhausted and self.balance is not None and self.balance >= max(self.minimum, 1e-9)


class Account(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    email: str
    refresh_token: str
    access_token: str = ""
    expires_at: float = 0.0
    project: str = ""
    tier: str = ""
    enabled: bool = True
    disabled_reason: str = ""
    validation_url: str = ""
    plan: str = ""  # the tier id that says what the user pays for (paidTier.id, UPSTREAM.md §3.3)
    # The account's own catalog (fetchAvailableModels) and its 5-hour and
    # weekly windows (retrieveUserQuotaSummary). Files of earlier releases
    # held a "models" map instead: unknown keys are ignored, and the next
    # quota fetch fills these.
    catalog: Catalog = msgspec.field(default_factory=Catalog)
    quota: QuotaSummary | None = None
    credits: Credits = msgspec.field(default_factory=Credits)
    cooldowns: dict[str, Cooldown] = msgspec.field(default_factory=dict)
    added_at: float = msgspec.field(default_factory=time.time)
    last_used: float = 0.0
    quota_updated_at: float = 0.0
    name: str = ""

    def cooldown_for(self, model: str, now: float | None = None) -> Cooldown | None:
        """The cooldown that keeps this account from ``model``: the model's
        own, its quota group's (``group:<name>``, a QUOTA_EXHAUSTED covers
        the whole group, §9.1), or the account's (``*``)."""
        now = time.time() if now is None else now
        best: Cooldown | None = None
        for key in (model, group_key(group_of(model)), "*"):
            cd = self.cooldowns.get(key)
            if cd is not None and cd.until > now and (best is None or cd.until > best.until):
                best = cd
        return best

    def public(self, now: float | None = None) -> dict[str, Any]:
        """What the admin API shows: never a token."""
        now = time.time() if now is None else now
        cooling = {
            m: {"until": c.until, "reason": c.reason} for m, c in self.cooldowns.items() if c.until > now
        }
        if not self.enabled:
            state = "disabled"
        elif cooling:
            state = "cooling_down"
        else:
            state = "active"
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "tier": self.tier,
            "project": self.project,
            "state": state,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "validation_url": self.validation_url,
            "cooldowns": cooling,
            "plan": self.plan,
            "credits": {
                "balance": self.credits.balance,
                "minimum": self.credits.minimum,
                "exhausted": self.credits.exhausted,
                "spent_today": self.credits.spent_today if self.credits.day == _today() else 0.0,
                "requests_today": self.credits.requests_today if self.credits.day == _today() else 0,
            },
            "quota": msgspec.to_builtins(self.quota) if self.quota is not None else None,
            "quota_line": describe(self.quota, now) if self.quota is not None else "",
            "models": {
                m: {
                    "display_name": q.display_name,
                    "remaining_fraction": q.remaining_fraction,
                    "reset_time": q.reset_time,
                    "group": q.quota_group,
                }
                for m, q in sorted(self.catalog.models.items())
                if q.listed
            },
            "last_used": self.last_used or None,
            "added_at": self.added_at,
            "quota_updated_at": self.quota_updated_at or None,
            "token_expires_at": self.expires_at or None,
        }


def _today() -> str:
    return time.strftime("%Y-%m-%d")


def group_key(group: str) -> str:
    """The cooldowns key of a quota group."""
    return f"group:{group}"


_decoder = msgspec.json.Decoder(Account)
_encoder = msgspec.json.Encoder()


def new_account_id() -> str:
    return secrets.token_hex(6)


class AccountStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.broken: dict[str, str] = {}  # file name -> problem

    def path(self, account_id: str) -> Path:
        return self.dir / f"{account_id}.json"

    def load_all(self) -> list[Account]:
        self.broken.clear()
        if not self.dir.exists():
            return []
        out: list[Account] = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                acct = _decoder.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.broken[path.name] = problem
                log.error("account file %s is unreadable and was skipped (%s)", path, problem)
                continue
            if acct.id != path.stem:
                self.broken[path.name] = f"id {acct.id!r} does not match the file name"
                log.error("account file %s: id does not match the file name; skipped", path)
                continue
            out.append(acct)
        return out

    def save(self, acct: Account) -> None:
        ensure_private_dir(self.dir)
        atomic_write(self.path(acct.id), _encoder.encode(acct))

    def delete(self, account_id: str) -> None:
        try:
            os.unlink(self.path(account_id))
        except FileNotFoundError:
            pass
