"""Google accounts: store, OAuth, pool, quota."""
