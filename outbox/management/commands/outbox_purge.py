"""``manage.py outbox_purge``: delete finished events past a cut-off, in small chunks.

The drainers already purge expired ``done`` events every ``OUTBOX['PURGE_INTERVAL']``
with the same statement; this command is for cron (``PURGE_INTERVAL = 0``), for a
one-off clean-up, and for failed events, which nothing purges on its own.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from outbox import services
from outbox.management.commands._args import chunk_size, duration_with_unit, format_duration, settings_or_defaults
from outbox.management.commands._database import add_database_argument
from outbox.management.commands._preflight import preflight
from outbox.management.commands.outbox_status import console_for


class Command(BaseCommand):
    help = (
        "Delete done outbox events processed more than --older-than ago, in chunks of --chunk-size rows, "
        "each in a short transaction of its own, so it never holds long locks. --status failed deletes "
        "failed events instead (with --yes). Pending events are never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        s = settings_or_defaults()
        parser.add_argument(
            "--older-than",
            type=duration_with_unit,
            default=format_duration(s.retention),
            metavar="AGE",
            help="Only events finished longer ago than this: 90s, 15m, 12h, 7d, 2w; the default is "
            "OUTBOX['RETENTION'] (default: %(default)r).",
        )
        parser.add_argument(
            "--status",
            choices=services.PURGEABLE,
            default="done",
            help="Which finished events: done, or failed (needs --yes) (default: %(default)r).",
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Confirm deleting failed events: they and their errors are gone for good.",
        )
        parser.add_argument(
            "--chunk-size",
            type=chunk_size,
            default=s.purge_chunk,
            metavar="N",
            help="Rows deleted per statement and transaction; the default is OUTBOX['PURGE_CHUNK'] "
            "(default: %(default)r).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        add_database_argument(parser, "outbox to purge")

    def handle(self, *args: Any, **options: Any) -> None:
        preflight(using=options["database"])
        status = options["status"]
        older_than = options["older_than"]
        if status == "failed" and not options["yes"] and not options["dry_run"]:
            raise CommandError(
                "--status failed deletes failed events and their errors for good: add --yes to confirm "
                "(or --dry-run to count them first; outbox_retry puts them back to pending instead)"
            )
        age = format_duration(older_than)
        if options["dry_run"]:
            count = services.purge(older_than=older_than, status=status, dry_run=True, using=options["database"])
            self.stdout.write(f"Would purge {count:,} {status} event(s) finished more than {age} ago.")
            return
        console = console_for(self.stdout)
        if console.is_terminal:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
            ) as progress:
                task = progress.add_task(f"purging {status} events older than {age}", total=None)

                def report(deleted: int) -> None:
                    progress.update(task, description=f"purged {deleted:,} {status} events older than {age}")

                count = services.purge(
                    older_than=older_than,
                    status=status,
                    chunk=options["chunk_size"],
                    progress=report,
                    using=options["database"],
                )
        else:
            count = services.purge(
                older_than=older_than, status=status, chunk=options["chunk_size"], using=options["database"]
            )
        self.stdout.write(f"Purged {count:,} {status} event(s) finished more than {age} ago.")
