"""``manage.py outbox_backfill``: enqueue outbox events for existing CrawlResult rows.

The migration path from the Redis design, whose queue is lost when Redis is
switched off: the source of truth is ``pricing_crawlresult`` itself, so the results
that were never processed (or that failed, or were skipped under an old config)
are chosen by a predicate over it and get the event the trigger would have
written, with exactly the trigger's payload. It is idempotent: a result that
already has a pending event gets no second one, so it can be re-run, or run while
drainers and writers work.

``backfill()`` is the function (the CrawlResult admin's "enqueue again" action
calls it too); the command only parses and shows progress.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from outbox.management.commands._args import moment, non_empty, positive_int
from outbox.management.commands.outbox_status import console_for
from outbox.triggers import NOTIFY_CHANNEL
from pricing.auto_record import queries
from pricing.models import CRAWL_RESULT_CREATED, HistoryRecordStatus

#: What --status accepts: results not processed yet, or processed with this outcome.
#: Recorded and duplicate results are left out on purpose: their history exists,
#: and a replay would only turn "recorded" into "duplicate".
UNPROCESSED = "unprocessed"
REPLAYABLE = (UNPROCESSED, HistoryRecordStatus.FAILED.value, HistoryRecordStatus.SKIPPED.value)
DEFAULT_CHUNK = 1000


@dataclass(frozen=True)
class BackfillResult:
    #: Results the predicate chose.
    selected: int
    #: Events written.
    enqueued: int
    #: Chosen results that got no event: one was already pending, or a drainer
    #: processed the result in the meantime.
    skipped: int


def backfill(
    *,
    statuses: Sequence[str] = (UNPROCESSED,),
    since: dt.datetime | None = None,
    sources: Sequence[str] | None = None,
    ids: Iterable[uuid.UUID | str] | None = None,
    chunk: int = DEFAULT_CHUNK,
    dry_run: bool = False,
    on_selected: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> BackfillResult:
    """Enqueue an event for each chosen CrawlResult that has no pending one.

    ``statuses``: any of ``unprocessed`` (history_record_status NULL), ``failed``,
    ``skipped``. ``since``: crawled at or after. ``sources`` / ``ids``: only these.
    ``on_selected(total)`` is called once the choice is made and
    ``progress(done)`` after each chunk (each chunk is one transaction).
    """
    wrong = [s for s in statuses if s not in REPLAYABLE]
    if wrong or not statuses:
        raise ValueError(f"statuses must be some of {', '.join(REPLAYABLE)}, got {list(statuses)!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    params: dict[str, Any] = {
        "unprocessed": UNPROCESSED in statuses,
        "statuses": [s for s in statuses if s != UNPROCESSED] or None,
        "since": since,
        "sources": list(sources) if sources else None,
        "ids": [uuid.UUID(str(i)) for i in ids] if ids is not None else None,
        "topic": CRAWL_RESULT_CREATED,
    }
    if params["ids"] is not None and not params["ids"]:
        return BackfillResult(0, 0, 0)
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute(queries.crawl_result_backfill_drop, {})
        try:
            # The selection lives in a temporary table of this session: one sort
            # in crawl order, then cheap chunks.
            cursor.execute(queries.crawl_result_backfill_select, params)
            selected = cursor.rowcount
            if on_selected is not None:
                on_selected(selected)
            if dry_run:
                return BackfillResult(selected, 0, 0)
            cursor.execute(queries.crawl_result_backfill_index, {})
            enqueued = 0
            after = 0
            while after < selected:
                with transaction.atomic(using=using):
                    cursor.execute(queries.crawl_result_backfill_lock, {})
                    cursor.execute(queries.crawl_result_backfill_chunk, {**params, "after": after, "chunk": chunk})
                    _, written = cursor.fetchone()
                    if written:
                        cursor.execute(
                            queries.crawl_result_backfill_notify, {"channel": NOTIFY_CHANNEL, "topic": params["topic"]}
                        )
                enqueued += int(written)
                after += chunk
                if progress is not None:
                    progress(min(after, selected))
            return BackfillResult(selected, enqueued, selected - enqueued)
        finally:
            cursor.execute(queries.crawl_result_backfill_drop, {})


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
            type=positive_int,
            default=DEFAULT_CHUNK,
            metavar="N",
            help="Results per INSERT and transaction (default: %(default)r).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count the results chosen; enqueue nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
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
