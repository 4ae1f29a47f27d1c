"""The project app: says once per process which database the settings picked."""

from __future__ import annotations

import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger("project.database")


class ProjectConfig(AppConfig):
    name = "project"
    verbose_name = "Project"

    def ready(self) -> None:
        note = getattr(settings, "DATABASE_NOTE", "")
        if note:
            logger.info("%s", note)
