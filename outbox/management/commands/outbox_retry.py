"""``manage.py outbox_retry``: put failed events back to pending (``outbox.services.retry``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox import services
from outbox.management.commands._args import chunk_size, non_empty, positive_int
from outbox.management.commands._database import add_database_argument
from outbox.management.commands._preflight import preflight


class Command(BaseCommand):
    help = (
        "Put failed outbox events back to pending: available now, attempts reset to 0, lease cleared; "
        "last_error is kept until the next attempt replaces it. Oldest first. Prints how many."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=None,
            metavar="N",
            help="Retry at most N events, oldest first (default: %(default)r, all).",
        )
        parser.add_argument(
            "--topic",
            action="append",
            dest="topics",
            type=non_empty,
            metavar="TOPIC",
            help="Only events of this topic; repeat for several (default: all topics).",
        )
        parser.add_argument(
            "--id",
            action="append",
            dest="ids",
            type=positive_int,
            metavar="ID",
            help="Only this event; repeat for several (default: every failed event).",
        )
        parser.add_argument(
            "--chunk-size",
            type=chunk_size,
            default=services.DEFAULT_CHUNK,
            metavar="N",
            help="Events per statement and transaction (default: %(default)r).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be retried; change nothing.")
        add_database_argument(parser, "outbox to retry in")

    def handle(self, *args: Any, **options: Any) -> None:
        preflight(using=options["database"])
        ids = options["ids"]
        try:
            count = services.retry(
                limit=options["limit"],
                topics=options["topics"],
                ids=ids,
                dry_run=options["dry_run"],
                chunk=options["chunk_size"],
                using=options["database"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        verb = "Would retry" if options["dry_run"] else "Retried"
        self.stdout.write(f"{verb} {count:,} failed event(s).")
        if ids:
            left = len(set(ids)) - count
            if left > 0 and options["limit"] is None:
                self.stdout.write(f"{left:,} of the given id(s) are not failed (or are locked right now): left alone.")
