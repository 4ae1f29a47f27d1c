"""Whether a database has the schema the code expects: every migration applied.

The operator commands and ``outbox_doctor`` ask before they touch a table, so a
database where ``migrate`` has not run gets "run migrate" instead of ``relation
"outbox_event" does not exist``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def unapplied_migrations(app_labels: Iterable[str] | None = None, *, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """``app.name`` of each migration not applied yet that ``app_labels`` (every app when
    None) need, their dependencies in other apps included, in the order migrate runs them.
    Raises the database's error when it cannot be reached."""
    executor = MigrationExecutor(connections[using])
    wanted = set(app_labels) if app_labels is not None else None
    targets = [node for node in executor.loader.graph.leaf_nodes() if wanted is None or node[0] in wanted]
    return [f"{migration.app_label}.{migration.name}" for migration, _ in executor.migration_plan(targets)]


def not_migrated_message(unapplied: list[str], *, using: str = DEFAULT_DB_ALIAS) -> str:
    """One line: which database, how many migrations are missing, and what to do."""
    name = connections[using].settings_dict.get("NAME")
    shown = ", ".join(unapplied[:3]) + (", ..." if len(unapplied) > 3 else "")
    return (
        f"the database {name!r} is not migrated ({len(unapplied)} migration(s) not applied: {shown}): "
        "run python manage.py migrate"
    )
