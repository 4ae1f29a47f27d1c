"""Settings of the drainers the bench starts: the project's, plus the bench's trivial topic."""

from __future__ import annotations

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.trivial"]
