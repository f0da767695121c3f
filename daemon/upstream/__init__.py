"""Upstream clients: Google Cloud Code (v1internal) and z.ai."""
