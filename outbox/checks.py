"""System checks: a bad OUTBOX setting stops ``manage.py`` with a stable id."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from outbox.conf import validate


@checks.register()
def check_outbox_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    raw = getattr(settings, "OUTBOX", {}) or {}
    return [checks.Error(message, id=check_id) for check_id, message in validate(raw)]
