"""The proxy listener: AI routes, client auth, error shapes."""
