"""A Postgres-only transactional outbox for Django.

The operations that code written against the old Redis design called
(``get_auto_record_queue_status()``, ``retry_failed_recordings(limit)``,
``clear_auto_record_queue()``) are ``outbox.status()``, ``outbox.retry()`` and
``outbox.purge()``: re-exported lazily from ``outbox.services`` so importing the
package never touches the app registry.
"""

from __future__ import annotations

from typing import Any

#: The version of the django-pg-outbox distribution (pyproject.toml reads it from here).
__version__ = "0.1.0"

__all__ = ["purge", "retry", "status"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from outbox import services

        return getattr(services, name)
    raise AttributeError(f"module 'outbox' has no attribute {name!r}")
