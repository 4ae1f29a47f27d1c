"""Settings of the drainer subprocesses of tests/fault/test_foreign_locks.py.

``OUTBOX_TEST_LOCK_TIMEOUT`` (seconds) sets the drainers' ``lock_timeout``: short,
so that a drainer that waited on a foreign lock would hit it within the test; long,
so that one that waited would visibly stall.
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403

OUTBOX = {"LOCK_TIMEOUT": float(os.environ.get("OUTBOX_TEST_LOCK_TIMEOUT", "10"))}
