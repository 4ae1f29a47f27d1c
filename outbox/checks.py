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
                hint="pip install 'django-pg-outbox[metrics]' (or prometheus-client)",
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


@checks.register()
def check_pooled_databases(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """outbox.W001 / E018: a database with a LISTEN URL is behind a pooler: no prepared
    statements nor server-side cursors there (they do not outlive a pooled transaction)."""
    from outbox.conf import OutboxConfigError, get_settings

    try:
        s = get_settings()
    except OutboxConfigError:
        return []  # reported by check_outbox_settings
    return pooled_database_problems(s.listen_url, settings.DATABASES, prepared_statements=s.prepared_statements)


def pooled_database_problems(
    listen: Any, databases: dict[str, Any], *, prepared_statements: bool = False
) -> list[checks.CheckMessage]:
    """The problems of check_pooled_databases for a LISTEN_URL setting and DATABASES."""
    aliases = list(listen) if isinstance(listen, dict) else (["default"] if listen else [])
    messages: list[checks.CheckMessage] = []
    for alias in aliases:
        if alias not in databases:
            text = f"OUTBOX['LISTEN_URL'] names database {alias!r}, which is not in DATABASES"
            messages.append(checks.Error(text, id="outbox.E018"))
            continue
        db = databases[alias]
        missing = []
        if prepared_statements:
            missing.append("OUTBOX['PREPARED_STATEMENTS'] = False")
        if db.get("OPTIONS", {}).get("prepare_threshold", 5) is not None:
            missing.append(f"DATABASES[{alias!r}]['OPTIONS']['prepare_threshold'] = None")
        if not db.get("DISABLE_SERVER_SIDE_CURSORS"):
            missing.append(f"DATABASES[{alias!r}]['DISABLE_SERVER_SIDE_CURSORS'] = True")
        if missing:
            messages.append(
                checks.Warning(
                    f"OUTBOX['LISTEN_URL'] is set for database {alias!r}, so its connections go through a "
                    "transaction-mode pooler, where prepared statements and server-side cursors break",
                    hint="set " + ", ".join(missing),
                    id="outbox.W001",
                )
            )
    return messages


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
