"""System checks: a bad OUTBOX setting stops ``manage.py`` with a stable id."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core import checks

from outbox.conf import validate


@checks.register()
def check_outbox_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    raw = getattr(settings, "OUTBOX", {}) or {}
    return [checks.Error(message, id=check_id) for check_id, message in validate(raw)]


@checks.register()
def check_outbox_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """OUTBOX['METRICS'] on: prometheus_client must be there, and a scraper must be let in."""
    raw = getattr(settings, "OUTBOX", {}) or {}
    if not isinstance(raw, dict) or raw.get("METRICS") is not True or validate(raw):
        return []
    found: list[checks.CheckMessage] = []
    if importlib.util.find_spec("prometheus_client") is None:
        found.append(
            checks.Error(
                "OUTBOX['METRICS'] is on but prometheus_client is not installed",
                hint="pip install prometheus-client",
                id="outbox.E033",
            )
        )
    if not raw.get("METRICS_ALLOWED_IPS") and not raw.get("METRICS_BASIC_AUTH"):
        found.append(
            checks.Warning(
                "OUTBOX['METRICS'] is on, but neither METRICS_ALLOWED_IPS nor METRICS_BASIC_AUTH is set: "
                "only logged-in staff can read /outbox/metrics, Prometheus cannot scrape it",
                hint="set OUTBOX['METRICS_ALLOWED_IPS'] = ['10.0.0.0/8'] (your Prometheus) or METRICS_BASIC_AUTH",
                id="outbox.W030",
            )
        )
    return found
