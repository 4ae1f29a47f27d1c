"""System check: the auto-record config file is valid (pricing.E001)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from pricing.auto_record import AutoRecordConfigError, load_config


@checks.register()
def check_auto_record_config(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        load_config()
    except AutoRecordConfigError as exc:
        return [checks.Error(str(exc), id="pricing.E001")]
    return []
