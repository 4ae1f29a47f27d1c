"""Settings of a project that has added the stock app: what drainer subprocesses use in its tests."""

from __future__ import annotations

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.stockapp"]
