"""What the test tasks write: one row per run that committed."""

from __future__ import annotations

from django.db import models


class TaskEffect(models.Model):
    label = models.TextField()

    def __str__(self) -> str:
        return self.label
