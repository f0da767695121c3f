"""The account pool: accounts in memory, fresh tokens, quota, health, and the
policy that picks an account for a request (``[scheduling]``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from daemon import models as models_mod
from daemon import quota as quota_mod
from daemon.accounts import oauth, onboarding
from daemon.accounts.store import Account, AccountStore, Cooldown, group_key, new_account_id
from daemon.config import Config
from daemon.errors import BadRequest, GatewayError, NoAccountAvailable, NotFound
from daemon.upstream import classify as classify_mod
from daemon.upstream.classify import Effect, Retry
from daemon.upstream.cloudcode import CloudCode, UpstreamHTTPError
from daemon.upstream.http import HttpClient
from daemon.upstream.identity import Identity

log = logging.getLogger(__name__)

# Refresh access tokens this long before they expire.
REFRESH_MARGIN = 300.0
# A failed token refresh answers the requests that waited for it and those
# that arrive this soon after (seconds), so a down token endpoint is not
# called once per request.
REFRESH_FAILURE_HOLD = 1.0
# Before using an account whose cooldown ended, re-check its quota at most this often.
RECHECK_MIN_INTERVAL = 60.0
# A QUOTA_EXHAUSTED 429 that names no reset time: re-check the quota after this long.
QUOTA_RECHECK_AFTER = 1800.0


def credit_group(model: str) -> str:
    """The ``credits.groups`` name of a model."""
    if model.startswith("claude"):
        return "claude"
    if model.startswith("gpt-oss"):
        return "gpt-oss"
    return "gemini"


# A SUBSCRIPTION_REQUIRED / permission 403 again within this long after the
# project was re-read is the account's state, not a stale project (§9.6c, e).
PROJECT_RECHECK_WINDOW = 600.0
# §9.3: a 429 without details that reached the pool had every host tried; a
# second one for the same account within this many seconds is a throttle
# that persists, and the account rests (the verdict's on_repeat).
THROTTLE_REPEAT_WINDOW = 120.0
# A project read that failed is not tried again per request before this.
PROJECT_RETRY_AFTER = 60.0


class Pool:
    def __init__(
        self,
        store: AccountStore,
        config: Callable[[], Config],
        http: HttpClient,
        identity: Identity | None = None,
    ) -> None:
        self.store = store
        self._config = config
        self.http = http
        self.identity = identity if identity is not None else Identity()
        self.cloudcode = CloudCode(lambda: self.http, config, self.identity)
        # Onboarding polls this often (tests make it short).
        self.onboard_poll_interval = onboarding.POLL_INTERVAL
        self._project_checked: dict[str, float] = {}
        self._throttled: dict[tuple[str, str], float] = {}  # (account id, model) -> first §9.3 throttle
        self._catalog_key: tuple[int, int] | None = None
        self._generation = 0  # bumped whenever an account is saved
        self._catalog_cache = models_mod.Catalog()
        self.accounts: dict[str, Account] = {}
        self.logins = oauth.LoginManager()
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self._project_locks: dict[str, asyncio.Lock] = {}
        self._project_failed: dict[str, tuple[float, GatewayError]] = {}
        self._refresh_failed: dict[str, tuple[float, GatewayError]] = {}
        self._sticky: dict[str, tuple[str, float]] = {}  # session -> (account id, last seen)
        self._rr = 0
        self._bg: asyncio.Task[None] | None = None
        self.token_refreshes = 0
        self.token_refresh_failures = 0

    # ---------------------------------------------------------------- load/save

    def load(self) -> None:
        self.accounts = {a.id: a for a in self.store.load_all()}
        log.info("loaded %d account(s)", len(self.accounts))

    def save(self, acct: Account) -> None:
        self._generation += 1  # an account changed: the merged catalog is made again
        self.store.save(acct)

    def active_count(self) -> int:
        return sum(1 for a in self.accounts.values() if a.enabled)

    def find(self, ref: str) -> Account:
        if ref in self.accounts:
            return self.accounts[ref]
        for a in self.accounts.values():
            if a.email.lower() == ref.lower():
                return a
        matches = [a for a in self.accounts.values() if a.id.startswith(ref)] if len(ref) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"no account {ref!r}: see `agctl accounts list`")

    def list_public(self) -> list[dict[str, Any]]:
        now = time.time()
        return [a.public(now) for a in sorted(self.accounts.values(), key=lambda a: a.added_at)]

    # ---------------------------------------------------------------- tokens

    async def access_token(self, acct: Account, *, force: bool = False, rejected: str | None = None) -> str:
        """A fresh access token; one refresh per account at a time (concurrent
        callers wait for and share the same refresh). ``rejected``: the token
        the upstream just refused (a 401); only that token forces a refresh, so
        a late 401 for a token already replaced does not refresh again."""
        if rejected is not None and acct.access_token != rejected and acct.expires_at > time.time():
            return acct.access_token
        if not force and acct.access_token and acct.expires_at - REFRESH_MARGIN > time.time():
            return acct.access_token
        lock = self._refresh_locks.setdefault(acct.id, asyncio.Lock())
        stale = rejected if rejected is not None else acct.access_token
        entered = time.monotonic()
        async with lock:
            failed = self._refresh_failed.get(acct.id)
            if failed is not None and failed[0] >= entered - REFRESH_FAILURE_HOLD:
                # The refresh we waited for failed: share its error instead of
                # calling the token endpoint once more per waiting request.
                raise failed[1].with_traceback(None)  # no frame chain per waiter
            fresh = acct.access_token != stale and acct.expires_at > time.time()
            if acct.access_token and fresh:
                # Someone else refreshed while we waited: share it, even when Google
                # gave a token that lives less than the margin (else the waiters
                # would each refresh again, one after the other).
                return acct.access_token
            if not force and acct.access_token and acct.expires_at - REFRESH_MARGIN > time.time():
                return acct.access_token
            try:
                tokens = await oauth.refresh(self.http, self._config(), acct.refresh_token)
            except oauth.InvalidGrant as exc:
                self.token_refresh_failures += 1
                self.disable(acct, exc.message)
                raise
            except GatewayError as exc:
                self.token_refresh_failures += 1
                self._refresh_failed[acct.id] = (time.monotonic(), exc)
                raise
            self._refresh_failed.pop(acct.id, None)
            self.token_refreshes += 1
            acct.access_token = tokens.access_token
            acct.expires_at = tokens.expires_at
            if tokens.refresh_token:
                acct.refresh_token = tokens.refresh_token
            self.save(acct)
            return acct.access_token

    # ---------------------------------------------------------------- add / refresh

    async def add_refresh_token(self, refresh_token: str, *, tokens: oauth.TokenSet | None = None) -> Account:
        cfg = self._config()
        refresh_token = refresh_token.strip()
        if not refresh_token:
            raise BadRequest("empty refresh token")
        if tokens is None:
            tokens = await oauth.refresh(self.http, cfg, refresh_token)
        info = await oauth.userinfo(self.http, cfg, tokens.access_token)
        email = str(info["email"])
        existing = next((a for a in self.accounts.values() if a.email.lower() == email.lower()), None)
        acct = Account(
            id=existing.id if existing else new_account_id(),
            email=email,
            name=str(info.get("name") or ""),
            refresh_token=tokens.refresh_token or refresh_token,
            access_token=tokens.access_token,
            expires_at=tokens.expires_at,
            added_at=existing.added_at if existing else time.time(),
        )
        await self._fetch_project_and_quota(acct)
        if existing:
            acct.cooldowns = existing.cooldowns
            acct.last_used = existing.last_used
        # Written once, complete: a failure above leaves nothing half-written.
        self.save(acct)
        self.accounts[acct.id] = acct
        log.info("account %s %s (%s)", "updated" if existing else "added", acct.email, acct.tier)
        return acct

    async def _fetch_project_and_quota(self, acct: Account) -> None:
        """Project (onboarding a fresh account, UPSTREAM.md §3.4), plan, catalog
        and quota windows."""
        await self._fetch_project(acct)
        await self._fetch_quota_with(acct, acct.access_token)

    async def _fetch_project(self, acct: Account) -> None:
        """Project (onboarding a fresh account, UPSTREAM.md §3.4) and plan."""
        token = acct.access_token
        meta = {"metadata": dict(onboarding.CLIENT_METADATA)}
        load = await self.cloudcode.call("loadCodeAssist", token, meta)
        if not isinstance(load, dict):
            load = {}

        async def call(method: str, body: Any) -> Any:
            return await self.cloudcode.call(method, token, body)

        async def get(name: str) -> Any:
            return await self.cloudcode.get(name, token)

        acct.project = await onboarding.ensure_project(
            load, call, get, poll_interval=self.onboard_poll_interval
        )
        acct.tier = onboarding.tier_label(load)
        acct.plan = onboarding.plan_of(load)
        self._read_credits(acct, load)

    async def _fetch_quota_with(self, acct: Account, token: str) -> None:
        data = await self.cloudcode.call("fetchAvailableModels", token, {"project": acct.project})
        if isinstance(data, dict):
            acct.catalog = models_mod.parse_catalog(data)
            acct.quota_updated_at = time.time()
        try:
            summary = await self.cloudcode.call("retrieveUserQuotaSummary", token, {"project": acct.project})
        except (UpstreamHTTPError, GatewayError) as exc:
            # The windows are a refinement: without them the catalog's
            # per-model quotaInfo still guides the pool.
            log.info("quota windows of %s unavailable: %s", acct.email, exc)
        else:
            acct.quota = quota_mod.parse_quota_summary(summary, fetched_at=time.time())
        now = time.time()
        # A quota fetch that shows quota again ends a quota cooldown early.
        for key, cd in list(acct.cooldowns.items()):
            if cd.until <= now:
                acct.cooldowns.pop(key, None)
            elif cd.reason == "QUOTA_EXHAUSTED" and self._has_quota(acct, key, now):
                acct.cooldowns.pop(key, None)

    def _has_quota(self, acct: Account, key: str, now: float) -> bool:
        """Whether fresh quota data shows ``key`` (a model or ``group:<g>``) has quota."""
        group = key.removeprefix("group:") if key.startswith("group:") else quota_mod.group_of(key)
        ok, _, _ = quota_mod.usable(acct.quota, group, now)
        if not ok:
            return False
        fractions = [
            m.remaining_fraction
            for mid, m in acct.catalog.models.items()
            if (mid == key or (key.startswith("group:") and m.quota_group == group))
            and m.remaining_fraction is not None
        ]
        return bool(fractions) and max(fractions) > 0

    async def ensure_project(self, acct: Account) -> None:
        """Read the account's project again before its next call when a 403
        emptied it (UPSTREAM.md §9.6c/e: re-resolve via loadCodeAssist):
        a call with an empty ``project`` is a 400 that would end the request
        as the caller's error. One read at a time per account; needs a
        current access token (``access_token`` first)."""
        if acct.project:
            return
        lock = self._project_locks.setdefault(acct.id, asyncio.Lock())
        async with lock:
            if acct.project:
                return
            failed = self._project_failed.get(acct.id)
            if failed is not None and time.time() - failed[0] < PROJECT_RETRY_AFTER:
                raise failed[1]  # read and failed a moment ago: not again per request
            # A 403 of the same kind within PROJECT_RECHECK_WINDOW of this
            # read (the read's own included) is not the project's fault:
            # note_http_error then applies the verdict's on_repeat.
            self._project_checked[acct.id] = time.time()
            try:
                await self._fetch_project(acct)
            except onboarding.ValidationRequired as exc:
                self.disable(acct, exc.message, exc.url)
                raise
            except GatewayError as exc:  # onboarding did not finish, no project, ...
                self._project_failed[acct.id] = (time.time(), exc)
                raise
            self._project_failed.pop(acct.id, None)
            log.info("account %s: project read again (%s)", acct.email, acct.project)
            self.save(acct)

    async def refresh_account(self, acct: Account) -> Account:
        """Tokens + project + quota now (``agctl accounts refresh``)."""
        self._refresh_failed.pop(acct.id, None)  # asked for now: try now
        token = await self.access_token(acct, force=True)
        if self._config().credits.enabled:
            await self.refresh_credits(acct)
        try:
            if not acct.project:
                await self._fetch_project_and_quota(acct)
            else:
                await self._fetch_quota_with(acct, token)
        except UpstreamHTTPError as exc:
            self.note_http_error(acct, None, exc)
            # The classifier's message says what to do (e.g. the validation link),
            # Google's bare text ("Verify your account to continue.") does not.
            raise GatewayError(
                f"{acct.email}: "
                + (exc.classified.message or exc.message).replace(classify_mod.ACCOUNT, acct.email)
            ) from None
        self.save(acct)
        return acct

    # ---------------------------------------------------------------- credits

    def _read_credits(self, acct: Account, load: dict[str, Any]) -> None:
        """The GOOGLE_ONE_AI balance in ``paidTier.availableCredits`` (§4.4:
        amounts are decimal strings; usable when at least the minimum)."""
        tier = load.get("paidTier")
        entries = tier.get("availableCredits") if isinstance(tier, dict) else None
        balance: float | None = None
        minimum = 0.0
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("creditType") != "GOOGLE_ONE_AI":
                continue
            try:
                balance = float(entry.get("creditAmount") or 0)
                minimum = float(entry.get("minimumCreditAmountForUsage") or 0)
            except (TypeError, ValueError):
                continue
        c = acct.credits
        self._roll_day(acct)
        if c.balance is not None and balance is not None and balance < c.balance and c.requests_today:
            # What went since the last reading, while this gateway spent
            # credits today, counts against the daily cap.
            c.spent_today += c.balance - balance
        c.balance, c.minimum, c.seen_at = balance, minimum, time.time()
        if balance is not None and balance >= minimum and c.exhausted:
            c.exhausted = False  # the balance is seen again (§4.4)
            log.info("account %s has credits again (%s)", acct.email, balance)

    @staticmethod
    def _roll_day(acct: Account) -> None:
        today = time.strftime("%Y-%m-%d")
        if acct.credits.day != today:
            acct.credits.day, acct.credits.spent_today, acct.credits.requests_today = today, 0.0, 0

    def credit_candidates(self, model: str) -> list[Account]:
        """Accounts that may pay for ``model`` with credits now ([credits]):
        enabled, listed, a usable balance, under today's cap; most credits
        first."""
        cfg = self._config().credits
        if not cfg.enabled or credit_group(model) not in cfg.groups:
            return []
        allowed = {e.lower() for e in cfg.accounts}
        out = []
        for a in self.accounts.values():
            if not a.enabled or ("*" not in allowed and a.email.lower() not in allowed):
                continue
            self._roll_day(a)
            c = a.credits
            if c.usable() and c.spent_today < cfg.daily_limit:
                out.append(a)
        return sorted(out, key=lambda a: -(a.credits.balance or 0))

    def quota_blocked(self, acct: Account, model: str) -> bool:
        """True when ``acct`` cannot serve ``model`` for want of quota (not
        disabled, not a short rate limit)."""
        if not acct.enabled:
            return False
        now = time.time()
        cd = acct.cooldown_for(model, now)
        if cd is not None:
            return cd.reason == "QUOTA_EXHAUSTED"
        return self.blocked(acct, model, now)[0]

    def note_credit_use(self, acct: Account) -> None:
        self._roll_day(acct)
        acct.credits.requests_today += 1
        self.save(acct)

    def stop_credits(self, acct: Account, why: str) -> None:
        acct.credits.exhausted = True
        self.save(acct)
        log.warning("account %s: no more credit use until its balance is seen again (%s)", acct.email, why)

    async def refresh_credits(self, acct: Account) -> None:
        """Read the balance again (after credits were spent)."""
        try:
            token = await self.access_token(acct)
            load = await self.cloudcode.call(
                "loadCodeAssist", token, {"metadata": dict(onboarding.CLIENT_METADATA)}
            )
        except (GatewayError, UpstreamHTTPError) as exc:
            log.info("credit balance of %s not read: %s", acct.email, exc)
            return
        if isinstance(load, dict):
            self._read_credits(acct, load)
            self.save(acct)

    # ---------------------------------------------------------------- health

    def disable(self, acct: Account, reason: str, validation_url: str = "") -> None:
        acct.enabled = False
        acct.disabled_reason = reason
        acct.validation_url = validation_url
        self.save(acct)
        log.warning("account %s disabled: %s", acct.email, reason)

    def enable(self, acct: Account) -> None:
        acct.enabled = True
        acct.disabled_reason = ""
        acct.validation_url = ""
        self.save(acct)

    def remove(self, acct: Account) -> None:
        self.store.delete(acct.id)
        self.accounts.pop(acct.id, None)
        for key, (aid, _) in list(self._sticky.items()):
            if aid == acct.id:
                self._sticky.pop(key, None)

    def reset_cooldowns(self, acct: Account) -> None:
        acct.cooldowns.clear()
        self.save(acct)

    def set_cooldown(self, acct: Account, model: str, seconds: float, reason: str) -> float:
        cfg = self._config().scheduling
        seconds = max(1.0, min(seconds, float(cfg.max_cooldown)))
        until = time.time() + seconds
        acct.cooldowns[model] = Cooldown(until=until, reason=reason)
        self.save(acct)
        log.info(
            "account %s cooling down for %s until %s (%s)",
            acct.email,
            model,
            time.strftime("%H:%M:%S", time.localtime(until)),
            reason,
        )
        return until

    def note_http_error(
        self,
        acct: Account,
        model: str | None,
        exc: UpstreamHTTPError,
        *,
        sent_project: str | None = None,
        sent_at: float | None = None,
    ) -> str:
        """Apply what the classifier says an upstream error means for the
        account (UPSTREAM.md §9.11, ``daemon.upstream.classify.POLICIES``).

        Returns what the dispatcher does next: ``retry_same`` (after
        ``exc.classified.cooldown`` seconds), ``auth`` (refresh the token
        once and retry), ``next`` (another account), ``client`` (the
        caller's own error: answer now), ``stop`` (no account would do
        better: answer now). ``sent_project``: the project the failed call
        carried (a request sent before the project was read again says
        nothing of the new one); ``sent_at``: when it was sent (a throttle
        met by calls already in flight together is one event)."""
        c = exc.classified
        cfg = self._config().scheduling
        effect = c.effect
        if effect is Effect.RECHECK_PROJECT and sent_project is not None and sent_project != acct.project:
            effect = Effect.NONE  # the project is being (or was) read again already
        elif effect is Effect.RECHECK_PROJECT:
            checked = self._project_checked.get(acct.id, 0.0)
            if time.time() - checked < PROJECT_RECHECK_WINDOW:
                effect = c.policy.on_repeat or Effect.DISABLE
            else:
                # The project may be stale: read it again before the next use.
                acct.project = ""
                self.save(acct)
                log.warning("account %s: %s; its project is read again", acct.email, c.message)
        elif effect is Effect.NONE and c.policy.on_repeat is not None and model:
            now = time.time()
            key = (acct.id, model)
            first = self._throttled.get(key)
            if first is None or now - first >= THROTTLE_REPEAT_WINDOW:
                self._throttled[key] = now
            elif sent_at is None or sent_at >= first:  # sent after the first throttle was seen
                self._throttled.pop(key, None)
                effect = c.policy.on_repeat
                log.warning("account %s: %s; throttled again, it rests", acct.email, c.message)
        if effect is Effect.COOL_GROUP_UNTIL_RESET and model:
            wait = c.cooldown
            if wait is None:
                wait = QUOTA_RECHECK_AFTER
            group = c.group or quota_mod.group_of(model)
            self.set_cooldown(acct, group_key(group), wait, "QUOTA_EXHAUSTED")
        elif effect is Effect.COOL_MODEL and model and c.retry is not Retry.SAME_ACCOUNT_AFTER_WAIT:
            wait = c.cooldown if c.cooldown is not None else float(cfg.rate_limit_cooldown)
            self.set_cooldown(acct, model, wait, c.verdict.value.upper())
        elif effect is Effect.STOP_CREDITS:
            self.stop_credits(acct, c.message)
        elif effect in (Effect.DISABLE, Effect.NEEDS_RELOGIN):
            url = exc.error.validation_url or exc.error.appeal_url
            note = (c.account_note or c.message).replace(classify_mod.ACCOUNT, acct.email)
            self.disable(acct, note, url)
        if c.client_fault:
            return "client"
        if c.retry is Retry.SAME_ACCOUNT_AFTER_WAIT:
            return "retry_same"
        if effect is Effect.REFRESH_TOKEN or c.retry is Retry.SAME_ACCOUNT:
            return "auth"
        if c.retry is Retry.NONE:
            return "stop"
        return "next"

    # ---------------------------------------------------------------- selection

    def usable(self, acct: Account, model: str, now: float) -> bool:
        return self.blocked(acct, model, now)[0] is False

    def blocked(self, acct: Account, model: str, now: float) -> tuple[bool, float | None]:
        """(whether the account cannot serve ``model`` now, when it may again:
        epoch seconds, None when unknown)."""
        if not acct.enabled:
            return True, None
        cd = acct.cooldown_for(model, now)
        if cd is not None:
            return True, cd.until
        # Both windows of the model's quota group must have quota left (§4.2).
        ok, until, _ = quota_mod.usable(acct.quota, quota_mod.group_of(model), now)
        if not ok:
            return True, until
        q = acct.catalog.get(model)
        if q is not None and q.remaining_fraction is not None and q.remaining_fraction <= 0:
            # Out of quota: usable again once the reset time has passed.
            if q.reset_time is None or q.reset_time > now:
                return True, q.reset_time
        return False, None

    def _score(self, acct: Account, model: str) -> float:
        """Quota left for ``model``: the lower of its 5-hour and weekly
        windows when known, else the catalog's fraction."""
        fractions: list[float] = []
        group = acct.quota.groups.get(quota_mod.group_of(model)) if acct.quota is not None else None
        if group is not None:
            fractions += [b.remaining_fraction for b in (group.five_hour, group.weekly) if b is not None]
        q = acct.catalog.get(model)
        if not fractions and q is not None and q.remaining_fraction is not None:
            fractions.append(q.remaining_fraction)
        return min(fractions) if fractions else 0.5

    def candidates(self, model: str, session_key: str | None) -> list[Account]:
        """Usable accounts for ``model``, best first, per the scheduling mode.
        Raises NoAccountAvailable saying why when there are none."""
        cfg = self._config().scheduling
        now = time.time()
        usable = [a for a in self.accounts.values() if self.usable(a, model, now)]
        if not usable:
            raise self.why_none(model, now)
        if cfg.mode == "fixed" and cfg.fixed_account:
            try:
                fixed = self.find(cfg.fixed_account)
            except NotFound:
                raise NoAccountAvailable(
                    f"scheduling.fixed_account {cfg.fixed_account!r} is not an account"
                ) from None
            if fixed not in usable:
                raise self.why_none(model, now, only=[fixed])
            return [fixed]
        # An account whose catalog does not list the model (a free account
        # has no Claude; a staged rollout reaches accounts one by one) gets a
        # 404 for it, which is the caller's error (UPSTREAM.md §9.7) and ends
        # the request. So while any usable account lists it, only those are
        # candidates; when none does (a name only the [models] map knows, or
        # catalogs not read yet), every usable account is.
        # Judged on every enabled account: when the ones that list it are all
        # cooling or out of quota, the answer is theirs (when they serve
        # again), not a 404 from an account that never had the model.
        listing = [a for a in self.accounts.values() if a.enabled and a.catalog.get(model) is not None]
        if listing:
            listed = {a.id for a in listing}
            usable = [a for a in usable if a.id in listed]
            if not usable:
                raise self.why_none(model, now, only=listing)

        def score(a: Account) -> float:
            return self._score(a, model)

        # balance: most remaining quota first; ties broken round-robin to spread
        # load: within each group of equal quota (in a fixed order, by id) the
        # accounts lead in turn, each once in as many requests as the group has.
        self._rr += 1
        rr = self._rr
        groups: dict[float, list[str]] = {}
        for a in usable:
            groups.setdefault(round(score(a), 2), []).append(a.id)
        turn: dict[str, int] = {}
        for ids in groups.values():
            ids.sort()
            for i, aid in enumerate(ids):
                turn[aid] = (i - rr) % len(ids)
        ordered = sorted(usable, key=lambda a: (-round(score(a), 2), turn[a.id], a.last_used))
        if cfg.mode == "sticky" and session_key:
            bound = self._sticky.get(session_key)
            if bound:
                acct = self.accounts.get(bound[0])
                if acct is not None and acct in usable:
                    ordered.remove(acct)
                    ordered.insert(0, acct)
        return ordered

    def bind_session(self, session_key: str | None, acct: Account) -> None:
        """Remember which account served a conversation (sticky mode).

        A failover serves from another account without rebinding, so the
        conversation returns to its account once that one can serve again.
        """
        if not session_key or self._config().scheduling.mode != "sticky":
            return
        now = time.time()
        bound = self._sticky.get(session_key)
        if bound is None or bound[0] == acct.id or bound[0] not in self.accounts:
            self._sticky[session_key] = (acct.id, now)
        else:
            self._sticky[session_key] = (bound[0], now)
        if len(self._sticky) > 10_000:
            ttl = self._config().scheduling.sticky_ttl
            for k, (_, seen) in list(self._sticky.items()):
                if now - seen > ttl:
                    del self._sticky[k]

    def why_none(self, model: str, now: float, only: list[Account] | None = None) -> NoAccountAvailable:
        accts = only if only is not None else list(self.accounts.values())
        if not accts:
            return NoAccountAvailable("No account available: add one with `agctl accounts add` first")
        disabled = [a for a in accts if not a.enabled]
        if len(disabled) == len(accts):
            reasons = "; ".join(
                f"{a.email}: {a.disabled_reason}"
                + (f" ({a.validation_url})" if a.validation_url not in a.disabled_reason else "")
                for a in disabled[:3]
            )
            return NoAccountAvailable(f"all accounts are disabled ({reasons}); see `agctl accounts list`")
        waits: list[float] = []
        why: list[str] = []
        for a in accts:
            if not a.enabled:
                continue
            _, until = self.blocked(a, model, now)
            if until is not None:
                waits.append(until)
            ok, _, text = quota_mod.usable(a.quota, quota_mod.group_of(model), now)
            if not ok:
                why.append(f"{a.email}: {text}")
        detail = f" ({'; '.join(why[:3])})" if why else ""
        if waits:
            soonest = min(waits)
            when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(soonest))
            return NoAccountAvailable(
                f"all accounts are cooling down or out of quota for model {model} until {when}{detail}",
                retry_after=max(1.0, soonest - now),
            )
        return NoAccountAvailable(f"no account has quota left for model {model}{detail}")

    def note_success(self, acct: Account, model: str) -> None:
        acct.last_used = time.time()
        if model in acct.cooldowns:
            acct.cooldowns.pop(model, None)
            self.save(acct)

    def catalog(self) -> models_mod.Catalog:
        """What the pool can serve: the union of the enabled accounts' catalogs
        (kept until an account's catalog, state or the account set changes:
        every request asks)."""
        key = (self._generation, len(self.accounts))
        if key != self._catalog_key:
            enabled = [a.catalog for a in self.accounts.values() if a.enabled and a.catalog.models]
            self._catalog_cache = models_mod.merge(enabled)
            self._catalog_key = key
        return self._catalog_cache

    # ---------------------------------------------------------------- background

    def start_background(self) -> None:
        if self._bg is None:
            self._bg = asyncio.create_task(self._background(), name="quota-refresh")

    async def stop_background(self) -> None:
        if self._bg is not None:
            self._bg.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._bg
            self._bg = None
        for lid in list(self.logins.logins):
            await self.logins.close(lid)

    async def _background(self) -> None:
        while True:
            interval = self._config().scheduling.quota_refresh_interval
            await asyncio.sleep(
                max(5.0, float(interval) if interval > 0 else 60.0) * random.uniform(0.9, 1.1)
            )
            if interval <= 0:
                continue
            for acct in list(self.accounts.values()):
                if not acct.enabled:
                    continue
                try:
                    await self.refresh_account(acct)
                except GatewayError as exc:
                    log.info("background quota refresh of %s failed: %s", acct.email, exc.message)
                except Exception:  # never let the loop die
                    log.exception("background quota refresh of %s crashed", acct.email)

    async def recheck_after_reset(self, acct: Account, model: str) -> bool:
        """When a quota cooldown has run out (or the quota said 0 and its reset
        time passed), fetch quota once before trusting the account again; if
        the quota is still empty, cool down until the reset it now names.
        Returns whether the account may be tried for ``model``."""
        now = time.time()
        keys = (model, group_key(quota_mod.group_of(model)))
        expired = [
            k
            for k in keys
            if (cd := acct.cooldowns.get(k)) and cd.until <= now and cd.reason == "QUOTA_EXHAUSTED"
        ]
        q = acct.catalog.get(model)
        empty = q is not None and q.remaining_fraction is not None and q.remaining_fraction <= 0
        ok, _, _ = quota_mod.usable(acct.quota, quota_mod.group_of(model), now - RECHECK_MIN_INTERVAL)
        empty = empty or not ok
        if not expired and not empty:
            return True
        if not expired and now - acct.quota_updated_at < RECHECK_MIN_INTERVAL:
            return True
        for k in expired:
            acct.cooldowns.pop(k, None)
        try:
            token = await self.access_token(acct)
            await self._fetch_quota_with(acct, token)
        except (GatewayError, UpstreamHTTPError) as exc:
            log.info("quota re-check of %s failed: %s", acct.email, exc)
            self.save(acct)
            return True
        now = time.time()
        still, until = self.blocked(acct, model, now)
        if still and until is not None and until > now:
            self.set_cooldown(acct, group_key(quota_mod.group_of(model)), until - now, "QUOTA_EXHAUSTED")
            return False
        self.save(acct)
        return True
