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

from daemon.accounts import oauth
from daemon.accounts.store import Account, AccountStore, Cooldown, ModelQuota, new_account_id
from daemon.config import Config
from daemon.errors import BadRequest, GatewayError, NoAccountAvailable, NotFound
from daemon.upstream.cloudcode import CloudCode, UpstreamHTTPError, parse_timestamp
from daemon.upstream.http import HttpClient

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


def tier_of(load: dict[str, Any]) -> str:
    """FREE / PRO / ULTRA from loadCodeAssist's paidTier / currentTier."""
    for key in ("paidTier", "currentTier"):
        tier = load.get(key)
        if isinstance(tier, dict):
            ident = f"{tier.get('id', '')} {tier.get('name', '')}".lower()
            if "ultra" in ident:
                return "ULTRA"
            if "pro" in ident or key == "paidTier":
                return "PRO"
    return "FREE"


def project_of(load: dict[str, Any]) -> str:
    proj = load.get("cloudaicompanionProject")
    if isinstance(proj, dict):
        return str(proj.get("id") or "")
    return str(proj or "")


def models_of(data: dict[str, Any]) -> dict[str, ModelQuota]:
    out: dict[str, ModelQuota] = {}
    models = data.get("models") or {}
    if not isinstance(models, dict):
        return out
    for mid, info in models.items():
        if not isinstance(info, dict) or info.get("isInternal"):
            continue  # internal models are not offered to clients
        quota = info.get("quotaInfo") if isinstance(info.get("quotaInfo"), dict) else None
        frac = reset = None
        if quota is not None:
            raw = quota.get("remainingFraction")
            # A quotaInfo without remainingFraction means none is left.
            frac = float(raw) if isinstance(raw, int | float) else 0.0
            if quota.get("resetTime"):
                reset = parse_timestamp(str(quota["resetTime"]))
        out[str(mid)] = ModelQuota(
            display_name=str(info.get("displayName") or mid),
            remaining_fraction=frac,
            reset_time=reset,
            max_tokens=info.get("maxTokens") if isinstance(info.get("maxTokens"), int) else None,
            max_output_tokens=info.get("maxOutputTokens")
            if isinstance(info.get("maxOutputTokens"), int)
            else None,
            supports_thinking=bool(info.get("supportsThinking")),
            supports_images=bool(info.get("supportsImages")),
        )
    return out


class Pool:
    def __init__(self, store: AccountStore, config: Callable[[], Config], http: HttpClient) -> None:
        self.store = store
        self._config = config
        self.http = http
        self.cloudcode = CloudCode(lambda: self.http, config)
        self.accounts: dict[str, Account] = {}
        self.logins = oauth.LoginManager()
        self._refresh_locks: dict[str, asyncio.Lock] = {}
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
        token = acct.access_token
        load = await self.cloudcode.call("loadCodeAssist", token, {"metadata": {"ideType": "ANTIGRAVITY"}})
        if not isinstance(load, dict):
            load = {}
        acct.project = project_of(load) or acct.project
        acct.tier = tier_of(load)
        await self._fetch_quota_with(acct, token)

    async def _fetch_quota_with(self, acct: Account, token: str) -> None:
        data = await self.cloudcode.call("fetchAvailableModels", token, {"project": acct.project})
        if isinstance(data, dict):
            acct.models = models_of(data)
            acct.quota_updated_at = time.time()
            now = time.time()
            # A quota fetch that shows quota again ends a quota cooldown early.
            for model, cd in list(acct.cooldowns.items()):
                q = acct.models.get(model)
                has_quota = q is not None and (q.remaining_fraction or 0) > 0
                if cd.until <= now or (cd.reason == "QUOTA_EXHAUSTED" and has_quota):
                    acct.cooldowns.pop(model, None)

    async def refresh_account(self, acct: Account) -> Account:
        """Tokens + project + quota now (``agctl accounts refresh``)."""
        self._refresh_failed.pop(acct.id, None)  # asked for now: try now
        token = await self.access_token(acct, force=True)
        try:
            if not acct.project:
                await self._fetch_project_and_quota(acct)
            else:
                await self._fetch_quota_with(acct, token)
        except UpstreamHTTPError as exc:
            self.note_http_error(acct, None, exc)
            raise GatewayError(f"{acct.email}: {exc.message}") from None
        self.save(acct)
        return acct

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

    def note_http_error(self, acct: Account, model: str | None, exc: UpstreamHTTPError) -> str:
        """Record what an upstream error says about an account; returns a
        short classification for the dispatcher: rate_limit, quota,
        capacity, auth, forbidden, server, client."""
        cfg = self._config().scheduling
        if exc.status == 429:
            if exc.reason == "MODEL_CAPACITY_EXHAUSTED":
                return "capacity"  # the server's, not the account's
            wait = exc.wait_seconds()
            if model:
                if exc.reason == "QUOTA_EXHAUSTED":
                    # The cooldown (until the upstream's reset) is the one record
                    # of this; the quota numbers come from fetchAvailableModels.
                    if wait is None:
                        # No reset time in the error: the last quota fetch may
                        # know it; else wait a while and re-check (never
                        # longer than the upstream would).
                        q = acct.models.get(model)
                        now = time.time()
                        if q is not None and q.reset_time and q.reset_time > now:
                            wait = q.reset_time - now
                        else:
                            wait = QUOTA_RECHECK_AFTER
                    self.set_cooldown(acct, model, wait, "QUOTA_EXHAUSTED")
                    return "quota"
                self.set_cooldown(
                    acct,
                    model,
                    wait if wait is not None else float(cfg.rate_limit_cooldown),
                    exc.reason or "RATE_LIMITED",
                )
            return "rate_limit"
        if exc.status == 401:
            return "auth"
        if exc.status == 403:
            if "VALIDATION_REQUIRED" in exc.message or exc.validation_url:
                self.disable(
                    acct,
                    "validation required: open the validation URL, then `agctl accounts enable`",
                    exc.validation_url,
                )
            else:
                self.disable(acct, f"forbidden (403): {exc.message[:200]}")
            return "forbidden"
        if exc.status >= 500 or exc.status == 408:
            return "server"
        return "client"

    # ---------------------------------------------------------------- selection

    def usable(self, acct: Account, model: str, now: float) -> bool:
        if not acct.enabled:
            return False
        if acct.cooldown_for(model, now):
            return False
        q = acct.models.get(model)
        if q is not None and q.remaining_fraction is not None and q.remaining_fraction <= 0:
            # Out of quota: usable again once the reset time has passed.
            if q.reset_time is None or q.reset_time > now:
                return False
        return True

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

        def score(a: Account) -> float:
            q = a.models.get(model)
            frac = q.remaining_fraction if q and q.remaining_fraction is not None else 0.5
            return frac

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
                f"{a.email}: {a.disabled_reason}" + (f" ({a.validation_url})" if a.validation_url else "")
                for a in disabled[:3]
            )
            return NoAccountAvailable(f"all accounts are disabled ({reasons}); see `agctl accounts list`")
        waits: list[float] = []
        for a in accts:
            if not a.enabled:
                continue
            cd = a.cooldown_for(model, now)
            if cd:
                waits.append(cd.until)
                continue
            q = a.models.get(model)
            if q and q.reset_time:
                waits.append(q.reset_time)
        if waits:
            soonest = min(waits)
            when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(soonest))
            return NoAccountAvailable(
                f"all accounts are cooling down or out of quota for model {model} until {when}",
                retry_after=max(1.0, soonest - now),
            )
        return NoAccountAvailable(f"no account has quota left for model {model}")

    def note_success(self, acct: Account, model: str) -> None:
        acct.last_used = time.time()
        if model in acct.cooldowns:
            acct.cooldowns.pop(model, None)
            self.save(acct)

    def available_models(self) -> dict[str, ModelQuota]:
        """Models any enabled account lists (the first listing wins)."""
        out: dict[str, ModelQuota] = {}
        for a in self.accounts.values():
            if not a.enabled:
                continue
            for mid, q in a.models.items():
                out.setdefault(mid, q)
        return out

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
        cd = acct.cooldowns.get(model)
        expired_quota_cd = cd is not None and cd.until <= now and cd.reason == "QUOTA_EXHAUSTED"
        q = acct.models.get(model)
        empty = q is not None and q.remaining_fraction is not None and q.remaining_fraction <= 0
        if not expired_quota_cd and not empty:
            return True
        if not expired_quota_cd and now - acct.quota_updated_at < RECHECK_MIN_INTERVAL:
            return True
        if expired_quota_cd:
            acct.cooldowns.pop(model, None)
        try:
            token = await self.access_token(acct)
            await self._fetch_quota_with(acct, token)
        except (GatewayError, UpstreamHTTPError) as exc:
            log.info("quota re-check of %s failed: %s", acct.email, exc)
            self.save(acct)
            return True
        q = acct.models.get(model)
        if q is not None and q.remaining_fraction is not None and q.remaining_fraction <= 0:
            if q.reset_time and q.reset_time > time.time():
                self.set_cooldown(acct, model, q.reset_time - time.time(), "QUOTA_EXHAUSTED")
                return False
        self.save(acct)
        return True
