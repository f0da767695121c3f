"""The order in which the pool offers accounts (balance mode)."""

from __future__ import annotations

from collections import Counter

from daemon.accounts.pool import Pool
from daemon.accounts.store import Account
from daemon.config import Config
from daemon.models import Catalog, ModelInfo

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
