"""``--database ALIAS`` for every outbox command: each database has its own outbox."""

from __future__ import annotations

from django.core.management.base import CommandParser
from django.db import DEFAULT_DB_ALIAS, connections


def add_database_argument(parser: CommandParser, what: str) -> None:
    """Django's convention (``migrate --database``): one of DATABASES, ``default`` by default."""
    parser.add_argument(
        "--database",
        default=DEFAULT_DB_ALIAS,
        choices=tuple(connections),
        help=f"The database alias whose {what} (default: %(default)r).",
    )
