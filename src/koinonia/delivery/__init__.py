"""Delivery: workers claim due recipients, send them through the church's provider within the
per-number rate limit, and write the results back set-based (DESIGN §5)."""
