"""Settings for drainer subprocesses of the fault tests: the project plus tests.poison.

``DJANGO_SETTINGS_MODULE=tests.settings_poison`` gives a ``drain_outbox`` process
the ``poison`` topic (see tests/poison/apps.py) next to the real pricing handler.
The database is the test's (``DATABASE_URL``, set by tests.support.drainer_env).
Retry backoffs are short so a poison event walks through its max_attempts in well
under a second. ``POISON_RESCUE_INTERVAL``, when set, is the RESCUE_INTERVAL (a
test that times the rescue sets it short; 0 turns the rescue off). Every other
OUTBOX setting keeps its default.
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.poison.apps.PoisonConfig"]

OUTBOX = {
    "BACKOFF_BASE": 0.05,
    "BACKOFF_CAP": 0.2,
}
if os.environ.get("POISON_RESCUE_INTERVAL"):
    OUTBOX["RESCUE_INTERVAL"] = float(os.environ["POISON_RESCUE_INTERVAL"])
