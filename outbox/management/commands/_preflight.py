"""What every outbox command checks before it works: OUTBOX is valid, the database
answers and is migrated. Each failure is one CommandError line that says what to do."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from outbox.conf import get_settings
from outbox.exceptions import OutboxConfigError
from outbox.schema import not_migrated_message, unapplied_migrations


def preflight(
    app_labels: Iterable[str] | None = ("outbox",), *, using: str = DEFAULT_DB_ALIAS, unreachable_ok: bool = False
) -> None:
    """CommandError unless the command can run: the settings valid (the system checks
    say so too, unless --skip-checks), the database reachable (``unreachable_ok``: the
    caller retries on its own) and every migration ``app_labels`` need applied. Leaves
    no connection open: a drainer sets its session up when it connects."""
    try:
        get_settings()
    except OutboxConfigError as exc:
        raise CommandError(str(exc)) from exc
    try:
        unapplied = unapplied_migrations(app_labels, using=using)
    except DatabaseError as exc:
        connections[using].close()
        if unreachable_ok:
            return
        settings = connections[using].settings_dict
        where = f"{settings.get('HOST') or 'localhost'}:{settings.get('PORT') or 5432}/{settings.get('NAME')}"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"cannot reach the database {where}: {reason}") from exc
    connections[using].close()
    if unapplied:
        raise CommandError(not_migrated_message(unapplied, using=using))
