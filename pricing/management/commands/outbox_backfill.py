"""``manage.py outbox_backfill``: enqueue outbox events for existing CrawlResult rows.

The migration path from the Redis design, whose queue is lost when Redis is
switched off: the source of truth is ``pricing_crawlresult`` itself, so the results
that were never processed (or that failed, or were skipped under an old config)
are chosen by a predicate over it and get the event the trigger would have
written, with exactly the trigger's payload. It is idempotent: a result that
already has a pending event gets no second one, so it can be re-run, or run while
drainers and writers work.

The work is ``pricing.services.backfill()`` (the CrawlResult admin's "enqueue
again" action calls it too); the command only parses and shows progress.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from outbox.management.commands._args import chunk_size, moment, non_empty
from outbox.management.commands._preflight import preflight
from outbox.management.commands.outbox_status import console_for
from pricing.services import DEFAULT_CHUNK, REPLAYABLE, UNPROCESSED, backfill


class Command(BaseCommand):
    help = (
        "Enqueue outbox events for existing CrawlResult rows, chosen by a predicate over the table: by "
        "default every result not yet processed (history_record_status is NULL). The events carry the "
        "trigger's payload and are written in crawl order, in chunks. Idempotent: a result that already "
        "has a pending event gets no second one. The way over from the Redis design, whose queue is "
        "lost when Redis is switched off; --status failed/skipped replays results after a config change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            action="append",
            dest="statuses",
            choices=REPLAYABLE,
            help="Which results: unprocessed (no outcome yet), failed, skipped; repeat for several "
            f"(default: {UNPROCESSED!r}).",
        )
        parser.add_argument(
            "--since",
            type=moment,
            default=None,
            metavar="WHEN",
            help="Only results crawled at or after WHEN: 2026-11-01, 2026-11-01T12:00:00+00:00, or a duration "
            "ago such as 12h or 7d (default: %(default)r, any time).",
        )
        parser.add_argument(
            "--source",
            action="append",
            dest="sources",
            type=non_empty,
            metavar="SOURCE",
            help="Only results of this extractor, e.g. html_ml; repeat for several (default: all sources).",
        )
        parser.add_argument(
            "--chunk-size",
            type=chunk_size,
            default=DEFAULT_CHUNK,
            metavar="N",
            help="Results per INSERT and transaction (default: %(default)r).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count the results chosen; enqueue nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        preflight(("outbox", "pricing"))
        statuses = options["statuses"] or [UNPROCESSED]
        kwargs: dict[str, Any] = {
            "statuses": statuses,
            "since": options["since"],
            "sources": options["sources"],
            "chunk": options["chunk_size"],
            "dry_run": options["dry_run"],
        }
        console = console_for(self.stdout)
        try:
            if console.is_terminal and not options["dry_run"]:
                with Progress(
                    TextColumn("backfill"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=console,
                ) as bar:
                    task = bar.add_task("backfill", total=None)
                    result = backfill(
                        **kwargs,
                        on_selected=lambda total: bar.update(task, total=total),
                        progress=lambda done: bar.update(task, completed=done),
                    )
            else:
                result = backfill(**kwargs)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        what = ", ".join(statuses)
        if options["dry_run"]:
            self.stdout.write(f"Would enqueue events for up to {result.selected:,} result(s) ({what}).")
            return
        self.stdout.write(
            f"Enqueued {result.enqueued:,} event(s) for {result.selected:,} result(s) ({what}); "
            f"{result.skipped:,} already had a pending event or were processed meanwhile."
        )
