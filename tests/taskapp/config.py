"""The settings a project adds for outbox.tasks: the test settings and the drainers' use them."""

from __future__ import annotations

import importlib.util

#: On Django 5.2 the tasks framework is the django-tasks backport, an app of its own.
TASK_APPS = ["tests.taskapp"] if importlib.util.find_spec("django.tasks") else ["django_tasks", "tests.taskapp"]

TASKS = {
    "default": {"BACKEND": "outbox.tasks.OutboxBackend", "QUEUES": ["default", "other"]},
}
