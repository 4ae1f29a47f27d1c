"""Several databases: each has its own outbox, and a handler writes where its events live.

The trigger writes into the ``outbox_event`` of the database the row was inserted
into, so with several databases (shards, tenants) each has an outbox of its own and
each drainer drains one alias (``drain_outbox --database ALIAS``). A handler must
then write to that same database, in the drainer's transaction: through
``current_database()`` (``Model.objects.using(current_database())``,
``connections[current_database()]``), or, for code that writes through the ORM
without ``using``, by adding ``DrainedDatabaseRouter`` to ``DATABASE_ROUTERS``.
docs/scaling.md ("Several databases") has the whole picture.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import DEFAULT_DB_ALIAS

_draining: ContextVar[str | None] = ContextVar("outbox_draining_database", default=None)


def current_database() -> str:
    """The alias being drained in this context (``default`` outside a drainer)."""
    return _draining.get() or DEFAULT_DB_ALIAS


@contextmanager
def draining(alias: str) -> Iterator[None]:
    """Within this block, handlers' writes belong to ``alias`` (drain_outbox sets it)."""
    token = _draining.set(alias)
    try:
        yield
    finally:
        _draining.reset(token)


class DrainedDatabaseRouter:
    """Sends reads and writes to the database being drained, while a drainer runs.

    Outside a drainer it has no opinion (the next router, or ``default``, decides), so
    it can sit first in ``DATABASE_ROUTERS`` of a project whose other code routes
    as it always did.
    """

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return _draining.get()

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return _draining.get()
