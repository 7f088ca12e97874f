"""Test set-up: a private database per test process, each test inside a rolled-back transaction.

The test settings are fixed here, before anything reads them: N+1 detection raises, logs stay
quiet, the store is in-process unless REDIS_URL is set (CI runs the suite both ways).
"""

import os

os.environ.setdefault("KOINONIA_ENV", "test")
os.environ.setdefault("KOINONIA_N_PLUS_ONE_RAISE", "true")
# Statement-count tests compare requests one to one: no cached sessions unless a test asks.
os.environ.setdefault("KOINONIA_AUTH_CACHE_TTL_S", "0")
os.environ.setdefault("KOINONIA_STORE_PREFIX", f"koinonia-test-{os.getpid()}:")
os.environ.setdefault("KOINONIA_JWT_SECRET", "test-secret-0123456789abcdef0123456789")

pytest_plugins = [
    "fixtures.database",
    "fixtures.app",
    "fixtures.factories",
    "fixtures.committed",
    "fixtures.redis_servers",
]
