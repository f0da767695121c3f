"""The order in which the pool offers accounts (balance mode)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from daemon.accounts.pool import Pool
from daemon.accounts.store import Account, AccountStore
from daemon.config import Config
from daemon.models import Catalog, ModelInfo
from daemon.upstream.cloudcode import UpstreamHTTPError

MODEL = "gemini-3-flash"


def pool_of(*fractions: float) -> Pool:
    pool = Pool(None, Config, None)  # type: ignore[arg-type]  # no store or network needed
    for i, frac in enumerate(fractions):
        acct = Account(id=f"acct-{i}", email=f"u{i}@example.com", refresh_token="1//x")
        acct.catalog = Catalog(models={MODEL: ModelInfo(id=MODEL, remaining_fraction=frac)})
        pool.accounts[acct.id] = acct
    return pool


def test_equal_quota_accounts_take_turns_leading() -> None:
    for n in (2, 3, 5):
        pool = pool_of(*[0.8] * n)
        firsts = [pool.candidates(MODEL, None)[0].id for _ in range(3 * n)]
        # Every account leads exactly once in each run of n requests.
        for k in range(3):
            assert sorted(firsts[k * n : (k + 1) * n]) == sorted(pool.accounts), firsts
        # And the whole list is offered every time (failover has somewhere to go).
        assert len(pool.candidates(MODEL, None)) == n


def test_more_quota_leads_and_ties_rotate_behind_it() -> None:
    pool = pool_of(0.9, 0.5, 0.5)
    orders = [[a.id for a in pool.candidates(MODEL, None)] for _ in range(4)]
    assert all(o[0] == "acct-0" for o in orders)
    assert Counter(o[1] for o in orders) == Counter({"acct-1": 2, "acct-2": 2})


def test_a_throttle_rests_the_account_only_when_it_comes_back(tmp_path: Path) -> None:
    """§9.3 in the pool: calls in flight together that meet one bare 429 are
    one event; a call sent after the throttle was seen that meets it again is
    a throttle that persists, and the model rests on that account."""
    pool = pool_of(1.0)
    pool.store = AccountStore(tmp_path)
    (acct,) = pool.accounts.values()
    body = (
        b'{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", '
        b'"status": "RESOURCE_EXHAUSTED"}}'
    )

    def throttle(sent_at: float) -> str:
        return pool.note_http_error(acct, MODEL, UpstreamHTTPError.parse(429, body), sent_at=sent_at)

    before = time.time() - 1
    assert throttle(before) == "next"
    assert throttle(before) == "next"  # sent before the first was seen: the same event
    assert not acct.cooldowns
    assert throttle(time.time()) == "next"  # sent after it: it persists
    cd = acct.cooldown_for(MODEL, time.time())
    assert cd is not None and cd.reason == "THROTTLED" and cd.until - time.time() > 200
