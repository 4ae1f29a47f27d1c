"""``manage.py outbox_status``: counts per topic and status, and the lag.

Reads the ``outbox_stats`` view once (``outbox.services.status``). ``--json`` keeps
the old design's keys for scripts; ``--fail-if-lag-over`` turns it into a cron or
monitoring probe that exits 2 when the lag is too long. The lag is how long the
oldest event claimable now has waited for a drainer: an event retried or backed off
counts from when it became claimable again; its age since creation is shown apart.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.table import Table

from outbox import services
from outbox.management.commands._args import duration, format_duration, non_empty
from outbox.management.commands._database import add_database_argument
from outbox.management.commands._preflight import preflight

#: Exit status of --fail-if-lag-over when the lag is over the limit.
LAG_EXIT_CODE = 2


def console_for(stream: Any) -> Console:
    """A rich console on a command's stdout: colours on a terminal, plain text otherwise."""
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return Console(file=stream, force_terminal=terminal, no_color=not terminal, width=None if terminal else 120)


def _count(value: int | None, estimated: bool) -> str:
    if value is None:
        return "unknown (run ANALYZE outbox_event)"
    return f"~{value:,}" if estimated else f"{value:,}"


class Command(BaseCommand):
    help = (
        "Show the outbox's events per topic and status and its lag (how long the oldest event claimable now "
        "has waited), read from the outbox_stats view. Done counts are estimates on a large table (marked ~)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON object: per-status counts, queue_size, processing_size, failed_size, "
            "lag_seconds, oldest_pending_age_seconds, drainers (alive), unhandled (pending events of "
            "topics no drainer alive handles) and the per-topic rows.",
        )
        parser.add_argument(
            "--topic",
            action="append",
            dest="topics",
            type=non_empty,
            metavar="TOPIC",
            help="Only this topic; repeat for several (default: all topics).",
        )
        parser.add_argument(
            "--fail-if-lag-over",
            type=duration,
            default=None,
            metavar="SECONDS",
            help=f"Exit {LAG_EXIT_CODE} when the oldest event claimable now has waited longer than this many "
            "seconds (or 90s, 15m, 1h); unset: never (default: %(default)r).",
        )
        add_database_argument(parser, "outbox to read")

    def handle(self, *args: Any, **options: Any) -> None:
        preflight(using=options["database"])
        result = services.status(topics=options["topics"], using=options["database"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2, sort_keys=False))
        else:
            self._print(result)
        limit = options["fail_if_lag_over"]
        lag = result.lag_seconds
        if limit is not None and lag is not None and lag > limit:
            raise CommandError(
                f"lag {services.format_age(lag)} ({lag:.0f}s): the oldest claimable event has waited longer than "
                f"--fail-if-lag-over {format_duration(limit)}",
                returncode=LAG_EXIT_CODE,
            )

    def _print(self, result: services.OutboxStatus) -> None:
        console = console_for(self.stdout)
        counts = result.counts
        estimated = result.estimated
        console.print(
            f"[bold]Outbox[/bold]: {_count(counts['pending'], 'pending' in estimated)} pending "
            f"({result.processing:,} processing, {result.queue_size:,} queued), "
            f"{_count(counts['failed'], 'failed' in estimated)} failed, "
            f"{_count(counts['done'], 'done' in estimated)} done"
        )
        lag, age = result.lag_seconds, result.oldest_pending_age_seconds
        if age is None:
            console.print("Lag: nothing pending")
        elif lag is None:
            console.print(
                "Lag: none (nothing claimable now); "
                f"the oldest pending event was created {services.format_age(age)} ago"
            )
        else:
            console.print(
                f"Lag: {services.format_age(lag)} (the oldest event claimable now has waited that long); "
                f"the oldest pending event was created {services.format_age(age)} ago"
            )
        table = Table(show_lines=False, header_style="bold")
        table.add_column("topic")
        table.add_column("status")
        table.add_column("events", justify="right")
        table.add_column("processing", justify="right")
        table.add_column("lag", justify="right")
        table.add_column("oldest (created)", justify="right")
        table.add_column("max attempts", justify="right")
        for row in result.rows:
            table.add_row(
                row.topic if row.topic is not None else "(other topics)",
                row.status,
                _count(row.events, row.estimated),
                f"{row.leased:,}" if row.status == "pending" else "",
                services.format_age(row.lag_seconds) if row.status == "pending" else "",
                services.format_age(row.oldest_age_seconds),
                "-" if row.max_attempts_seen is None else str(row.max_attempts_seen),
            )
        if result.rows:
            console.print(table)
        else:
            console.print("No events.")
        drainers = result.drainers.get(None, 0)
        console.print(f"Drainers alive: {drainers}")
        for topic, count in result.unhandled.items():
            console.print(
                f"[bold]{count:,} pending event(s) of {topic} wait for a drainer that handles it[/bold]: "
                "no drainer alive has its handler (a new topic in a rolling deploy?); start one, "
                f"or drain_outbox --topic {topic}"
            )
        if estimated:
            console.print(
                "~ estimated from PostgreSQL's statistics (pg_class.reltuples, pg_stats): outbox_event is too "
                "large to count its done rows on every call."
            )
