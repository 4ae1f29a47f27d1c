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


@checks.register(checks.Tags.database)
def check_trigger_migrations_depend_on_outbox(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """outbox.E020: a migration that installs an outbox trigger must come after outbox's own.

    Run by ``migrate`` (and ``check --database default``), before anything is installed.
    """
    from django.db.migrations.loader import MigrationLoader

    from outbox.autodetector import adds_outbox_trigger

    loader = MigrationLoader(None, ignore_no_migrations=True)
    errors = []
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        if app_label == "outbox" or not any(adds_outbox_trigger(op) for op in migration.operations):
            continue
        if not any(app == "outbox" for app, _ in loader.graph.forwards_plan((app_label, name))):
            errors.append(
                checks.Error(
                    f"migration {app_label}.{name} installs an outbox trigger but does not depend on outbox: "
                    "migrated first, the trigger would write into a table that does not exist yet",
                    hint=f'add ("outbox", "0001_initial") to the dependencies of {app_label}/migrations/{name}.py '
                    "(makemigrations adds it to migrations it writes)",
                    id="outbox.E020",
                )
            )
    return errors
