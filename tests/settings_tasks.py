"""Settings of a project that uses outbox.tasks: what drainer subprocesses use in its tests."""

from __future__ import annotations

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS
from tests.taskapp.config import TASK_APPS, TASKS  # noqa: F401

INSTALLED_APPS = [*INSTALLED_APPS, *TASK_APPS]
