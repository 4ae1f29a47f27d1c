"""How ``outbox_demo`` shows itself: a live progress bar, then a summary.

On a terminal the progress is a rich progress bar (events finished, events per
second); when stdout is a pipe or a file it is a plain line every few seconds, so
logs and CI output stay readable. The summary is rich tables either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from pricing.demo import (
    DRAINER_ARGS,
    PLAIN_PROGRESS_EVERY,
    DemoReport,
    Progress,
)

#: What each (status, reason) of a result means, for the summary.
MEANINGS: dict[tuple[str, str], str] = {
    ("recorded", "eligible"): "a PriceHistory row was written",
    ("duplicate", "unchanged_price"): "same price as the product's latest history: not written again",
    ("duplicate", "already_recorded"): "the result already had its history row",
    ("skipped", "source_not_allowed"): "extractor not in allowed_sources",
    ("skipped", "invalid_confidence"): "confidence not a number from 0 to 1 (NaN, infinite, out of range)",
    ("skipped", "low_confidence"): "confidence below min_confidence",
    ("skipped", "invalid_price"): "no price, zero or negative",
    ("skipped", "stale"): "a later crawl of the product was recorded first (another drainer's batch)",
    ("skipped", "disabled"): "auto-recording is disabled in the config",
}


def make_console(stream: IO[str]) -> Console:
    """A console on ``stream``; wide plain text when it is not a terminal."""
    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=110, no_color=True)
    return console


class ProgressDisplay:
    """Live progress while the drainers work: a rich bar, or plain periodic lines."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.live = console.is_terminal
        self._bar: RichProgress | None = None
        self._written: TaskID | None = None
        self._events: TaskID | None = None
        self._last_line = 0.0
        self._last: tuple[Progress, float, float] | None = None
        self._last_printed = False

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._bar = RichProgress(
                TextColumn("{task.description:<15}"),
                BarColumn(bar_width=40),
                TextColumn("{task.completed:>9,.0f}/{task.total:,.0f}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
                refresh_per_second=8,
            )
            self._bar.start()
            self._written = self._bar.add_task("crawl written", total=self.total, detail="")
            self._events = self._bar.add_task("events finished", total=self.total, detail="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._last is not None and exc_type is None and not self._last_printed:
            self._line(*self._last)

    def stage(self, text: str) -> None:
        if not self.live and self._last is not None and not self._last_printed:
            self._line(*self._last)  # the latest state before the news
        self.console.print(f"[dim]{text}[/dim]" if self.live else text, soft_wrap=not self.live)

    def update(self, progress: Progress, rate: float, elapsed: float) -> None:
        if progress.finished >= self.total and elapsed > 0:
            rate = progress.finished / elapsed  # at the end, the average says more than the last seconds
        self._last = (progress, rate, elapsed)
        self._last_printed = False
        if self._bar is not None and self._written is not None and self._events is not None:
            self._bar.update(self._written, completed=progress.written, detail="")
            self._bar.update(
                self._events,
                completed=progress.finished,
                detail=f"{rate:>8,.0f} events/s  failed {progress.failed}  retrying {progress.retrying}",
            )
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_PROGRESS_EVERY:
            self._last_line = now
            self._line(progress, rate, elapsed)

    def _line(self, progress: Progress, rate: float, elapsed: float) -> None:
        self._last_printed = True
        self.console.print(
            f"[{elapsed:5.1f}s] written {progress.written:,}/{self.total:,} | finished {progress.finished:,}"
            f"/{self.total:,} (failed {progress.failed:,}, retrying {progress.retrying:,}) | {rate:,.0f} events/s",
            soft_wrap=True,
        )


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Sequence[str] = ()) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def render_summary(
    report: DemoReport, console: Console, *, commands: set[str], admin_registered: bool, base_dir: Path
) -> None:
    """Print what the run did, read back from the database."""
    o, plan, config, p = report.options, report.plan, report.config, report.progress

    def say(text: str = "") -> None:
        # Off a terminal, long lines stay whole (a log or a pipe wraps them itself).
        console.print(text, soft_wrap=not console.is_terminal)

    def heading(text: str) -> None:
        say()
        say(f"[bold]{text}[/bold]")

    console.rule("outbox_demo summary")
    keep = " (--keep: the previous demo data was kept)" if o.keep else ""
    say(f"{o.results:,} results over {o.products:,} products, {o.drainers} drainer(s), seed {o.seed}{keep}")
    say(f"database: {report.database}")

    heading("The crawl")
    write_rate = plan.written / report.write_seconds if report.write_seconds else 0.0
    say(
        f"{plan.written:,} results written in {report.write_seconds:.1f} s ({write_rate:,.0f}/s) by set-based "
        f"INSERTs while the drainers ran; the trigger wrote one outbox event per result in the same transaction."
    )
    say("  sources: " + ", ".join(f"{name} {n:,}" for name, n in plan.sources.most_common()))
    allowed = ", ".join(sorted(config.allowed_sources))
    say(
        f"  the criteria alone (allowed_sources: {allowed}; min_confidence: {config.min_confidence}): "
        + ", ".join(f"{reason} {n:,}" for reason, n in plan.criteria.most_common())
    )
    say(f"  eligible results whose price repeats the product's previous eligible price: {plan.repeats:,}")
    say(f"  deleted in the transaction that wrote them: {plan.deleted} (their events exist and must fail)")

    heading("Outcomes by status and reason")
    rows: list[tuple[str, str, int, str]] = [
        (status, reason, n, MEANINGS.get((status, reason), "")) for status, reason, n in report.outcomes
    ]
    if p.failed:
        rows.append(("failed", "result does not exist", p.failed, "its event failed after 3 attempts (below)"))
    console.print(_table(["status", "reason", "results", "meaning"], rows, right=["results"]))
    pending = max(0, p.written - p.finished)
    say(f"Events of this run: done {p.done:,}, failed {p.failed:,}, pending {pending:,}")

    if report.failed_events:
        heading(f"Why {p.failed} event(s) failed")
        say(
            "The demo deleted their CrawlResult in the transaction that wrote it. The trigger had already "
            "written the event (a DELETE does not take it back), so the handler raised LookupError. The drainer "
            "bisected the batch so only that event was retried, with backoff (about 1 s, then 2 s), and marked "
            f"it failed after {DRAINER_ARGS[-1]} attempts, while the events behind it went on. First few:"
        )
        console.print(
            _table(
                ["id", "attempts", "last_error"],
                [(i, a, err) for i, _key, a, err in report.failed_events],
                right=["id", "attempts"],
            )
        )

    heading("Throughput and latency")
    if report.throughput is not None and report.first_created and report.last_processed:
        seconds = (report.last_processed - report.first_created).total_seconds()
        say(
            f"{report.done:,} events done in {seconds:.1f} s, from the first event written to the last one "
            f"done: {report.throughput:,.0f} events/s with {o.drainers} drainer(s)"
        )
    if report.by_drainer:
        say("  done by drainer: " + ", ".join(f"{name} {n:,}" for name, n in report.by_drainer))
    if report.latency is not None:
        p50, p95, p99, worst = report.latency
        say(f"commit-to-record latency: p50 {_ms(p50)}, p95 {_ms(p95)}, p99 {_ms(p99)}, max {_ms(worst)}")
        say(
            "  measured per done event as outbox_event.processed_at - created_at: now() of the drainer's "
            "transaction that wrote the history row and acked the event, minus now() of the crawl's INSERT "
            "transaction. The crawl was written as fast as possible, so this includes time spent waiting in "
            "the backlog; docs/BENCHMARKS.md measures latency at a steady arrival rate."
        )

    if report.stats_from_view:
        heading("SELECT * FROM outbox_stats (the whole outbox, not only this run)")
    else:
        heading("The whole outbox by topic and status (this database has no outbox_stats view yet)")
    console.print(_table(report.stats_columns, report.stats_rows, right=["events"]))

    codes = ", ".join("killed after the timeout" if c is None else str(c) for c in report.exit_codes)
    say(f"Drainers stopped with SIGTERM; exit codes {codes}; their logs are in {report.log_dir}")
    found = report.log_findings
    say(
        f"Their logs hold {found.warnings} WARNING and {found.errors} ERROR line(s); "
        + (
            "all of them are the deleted results' retries and failures."
            if not found.unexpected
            else f"{len(found.unexpected)} of them {'is' if len(found.unexpected) == 1 else 'are'} not explained "
            "by the demo's design (read them; the first few follow):"
        )
    )
    for line in found.unexpected[:3]:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=not console.is_terminal)
    for index, tail in report.drainer_tails.items():
        say(f"[red]drainer {index + 1} did not exit 0[/red]; its log ends with:")
        console.print(tail, markup=False, highlight=False)

    heading("Where to look next")
    admin_url = (
        "http://127.0.0.1:8000/admin/outbox/outboxevent/?status__exact=failed"
        if admin_registered
        else "http://127.0.0.1:8000/admin/ (the outbox event admin is not registered in this checkout)"
    )
    say(f"  the admin: python manage.py createsuperuser, then python manage.py runserver, then {admin_url}")
    say("  the SQL: docs/monitoring.sql, ready monitoring queries for python manage.py dbshell (psql) or any client")
    for name, hint in (
        ("outbox_status", "python manage.py outbox_status: counts and lag"),
        ("outbox_retry", "python manage.py outbox_retry --dry-run: what retrying the failed events would do"),
        ("outbox_doctor", "python manage.py outbox_doctor: claim plan, vacuum and lease health"),
    ):
        if name in commands:
            say(f"  {hint}")
    for doc, what in (
        ("docs/operations.md", "drainers in production"),
        ("docs/guarantees.md", "what holds under crashes"),
        ("docs/scaling.md", "past one machine"),
    ):
        if (base_dir / doc).exists():
            say(f"  {doc}: {what}")
    say(
        "  again, bigger: python manage.py outbox_demo --results 200000 --drainers 4 "
        "(it resets its own DEMO- products first; --keep adds to them)"
    )
