"""The admin API on the Unix socket (``agctl``'s side): ``app`` builds it;
``account_routes`` and ``monitor_routes`` are its route groups; ``common``
holds what they share."""
