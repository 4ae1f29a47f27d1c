"""Settings of bench/tasks_bench.py and of the workers it starts: both task backends side by side."""

from __future__ import annotations

import importlib.util

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

_BACKPORT = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]
INSTALLED_APPS = [*INSTALLED_APPS, *_BACKPORT, "django_tasks_db"]

TASKS = {
    "default": {"BACKEND": "outbox.tasks.OutboxBackend", "QUEUES": ["default"]},
    "db": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]},
}

# Persistent connections for both: db_worker calls close_old_connections() around every
# task, which with the project's CONN_MAX_AGE = 0 would reconnect for each one (a drainer
# keeps its connection whatever the setting). The comparison is of the workers, not of that.
DATABASES = {"default": {**DATABASES["default"], "CONN_MAX_AGE": None}}  # noqa: F405
