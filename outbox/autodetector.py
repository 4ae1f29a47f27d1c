"""``makemigrations`` makes a migration that installs an outbox trigger depend on ``outbox``.

An outbox trigger's function inserts into ``outbox_event``, a table of another
app, and PL/pgSQL does not check that table when the trigger is created: without
a dependency, ``migrate yourapp`` on a fresh database installs the trigger, and the
first insert into your table fails. Django adds a cross-app dependency only for
what it can see (a foreign key, say), so this mixin, patched into the autodetector
the way django-pgtrigger patches in its own (``pgtrigger/apps.py``), gives each
operation that adds an outbox trigger a dependency on the model ``OutboxEvent``;
Django turns that into a dependency on outbox's latest migration. Migrations
written before (or by hand) are checked by ``outbox.checks`` (``outbox.E020``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import makemigrations, migrate
from django.db.migrations.autodetector import OperationDependency

from outbox.triggers import OutboxTriggerSql

#: What an outbox trigger needs to exist first: the outbox_event table.
OUTBOX_EVENT_CREATED = OperationDependency("outbox", "outboxevent", None, OperationDependency.Type.CREATE)


def adds_outbox_trigger(operation: Any) -> bool:
    """Is this migration operation a pgtrigger AddTrigger of an outbox trigger?"""
    if type(operation).__name__ != "AddTrigger":
        return False
    sql = getattr(getattr(operation, "trigger", None), "sql", None)
    # OutboxTriggerSql today; migrations written before it compiled outbox triggers with
    # pgtrigger's own template, recognisable by what their function does.
    return isinstance(sql, OutboxTriggerSql) or "INSERT INTO outbox_event" in str(
        getattr(sql, "kwargs", {}).get("func")
    )


class OutboxAutodetectorMixin:
    """Adds the dependency on ``OutboxEvent`` to every operation that adds an outbox trigger."""

    def add_operation(self, app_label: str, operation: Any, dependencies: Any = None, beginning: bool = False) -> None:
        if app_label != "outbox" and adds_outbox_trigger(operation):
            dependencies = [*(dependencies or []), OUTBOX_EVENT_CREATED]
        super().add_operation(app_label, operation, dependencies, beginning)  # type: ignore[misc]


def patch_autodetector() -> None:
    """Put the mixin in front of the autodetector makemigrations and migrate use (once)."""
    for command in (makemigrations, migrate):
        current = command.MigrationAutodetector
        if not issubclass(current, OutboxAutodetectorMixin):
            command.MigrationAutodetector = type("MigrationAutodetector", (OutboxAutodetectorMixin, current), {})
    # Django 5.2+ reads the class from the command (pgtrigger sets it the same way).
    if hasattr(makemigrations.Command, "autodetector"):
        makemigrations.Command.autodetector = makemigrations.MigrationAutodetector
        migrate.Command.autodetector = makemigrations.MigrationAutodetector
