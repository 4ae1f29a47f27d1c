"""``manage.py outbox_backfill app.Model``: events for rows that exist already (``outbox.backfill``).

The rows are chosen by ``--filter`` / ``--exclude`` (Django lookups, as in a
queryset), by key (``--id``, ``--ids-from``: the ids left in a queue being
replaced), by the model's registered default (pricing: results not processed yet),
or ``--all``. The command only parses; the work is ``outbox.backfill.backfill()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import FieldDoesNotExist, FieldError, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, models
from django.db.models import Q
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from outbox import backfill as outbox_backfill
from outbox.management.commands._args import chunk_size, moment, non_empty
from outbox.management.commands._database import add_database_argument
from outbox.management.commands._preflight import preflight
from outbox.management.commands.outbox_status import console_for

#: Lookups whose value is true or false.
_BOOLEAN_LOOKUPS = ("isnull",)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def lookup(text: str) -> tuple[str, str]:
    """``field__lookup=value`` -> (``field__lookup``, ``value``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"must be LOOKUP=VALUE, e.g. source=html_ml or crawled_at__gte=7d: {text!r}")
    return name.strip(), value


def _value(model: type[models.Model], name: str, raw: str) -> Any:
    """A lookup's value from its text: booleans, comma lists for __in, instants for dates."""
    parts = name.split("__")
    last = parts[-1]
    if last in _BOOLEAN_LOOKUPS:
        if raw.lower() not in _TRUE | _FALSE:
            raise CommandError(f"--filter {name}: must be true or false, got {raw!r}")
        return raw.lower() in _TRUE
    if last == "in":
        return [item.strip() for item in raw.split(",") if item.strip()]
    try:
        field = model._meta.get_field(parts[0])
    except FieldDoesNotExist:
        return raw  # Django names the unknown field in its own error below
    if isinstance(field, models.DateTimeField) and last not in {"year", "month", "day", "hour", "date"}:
        try:
            return moment(raw)  # ISO 8601 or a duration ago (7d, 12h)
        except argparse.ArgumentTypeError as exc:
            raise CommandError(f"--filter {name}: {exc}") from None
    return raw


def _lookups(model: type[models.Model], pairs: list[tuple[str, str]] | None) -> Q:
    q = Q()
    for name, raw in pairs or []:
        q &= Q(**{name: _value(model, name, raw)})
    return q


def _read_ids(path: str) -> list[str]:
    """One key a line (blank lines and #-comments skipped); ``-`` reads standard input.

    UTF-8 text only: a NUL byte (``/dev/zero``, a binary file) stops the read at once
    instead of filling memory, and undecodable bytes are named, not a traceback."""
    chunks = []
    try:
        with open(sys.stdin.fileno(), "rb", closefd=False) if path == "-" else Path(path).open("rb") as stream:
            while chunk := stream.read(1 << 20):
                if b"\0" in chunk:
                    raise CommandError(f"--ids-from {path}: not a text file of keys (it holds NUL bytes)")
                chunks.append(chunk)
    except OSError as exc:
        raise CommandError(f"--ids-from {path}: {exc.strerror or exc}") from exc
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"--ids-from {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class Command(BaseCommand):
    help = (
        "Enqueue outbox events for existing rows of a model that has an outbox trigger, the event the "
        "trigger writes, in the model's order (pricing.CrawlResult: crawl order), in chunks. Idempotent: "
        "a row that already has a pending event gets no second one. Choose the rows with --filter / "
        "--exclude, --id / --ids-from, or --all; without them, the model's registered default "
        "(pricing.CrawlResult: results not processed yet)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="app_label.Model", help="The model, e.g. pricing.CrawlResult.")
        parser.add_argument(
            "--filter",
            action="append",
            dest="filters",
            type=lookup,
            metavar="LOOKUP=VALUE",
            help="Only rows matching this Django lookup, e.g. source=html_ml, history_record_status__isnull=true, "
            "source__in=a,b, crawled_at__gte=7d (dates: ISO 8601 or a duration ago); repeat to AND them "
            "(default: the model's registered default, else required).",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            dest="excludes",
            type=lookup,
            metavar="LOOKUP=VALUE",
            help="Leave out rows matching this lookup; repeat for several (default: none).",
        )
        parser.add_argument(
            "--id",
            action="append",
            dest="ids",
            type=non_empty,
            metavar="KEY",
            help="Only the row whose event key is KEY (for pricing: a CrawlResult id); repeat for several.",
        )
        parser.add_argument(
            "--ids-from",
            metavar="FILE",
            help="Only the rows whose keys are in FILE, one a line; - reads standard input (e.g. the ids "
            "left in the queue being replaced: redis-cli LRANGE queue 0 -1 > ids.txt).",
        )
        parser.add_argument(
            "--all", action="store_true", help="Every row of the table, whatever the registered default."
        )
        parser.add_argument("--topic", default=None, help="The trigger's topic, when the model has several.")
        parser.add_argument(
            "--order-by",
            action="append",
            dest="order_by",
            metavar="FIELD",
            help="The order events are written in, -FIELD for descending; repeat for several (default: the "
            "model's registered order, else the primary key).",
        )
        parser.add_argument(
            "--chunk-size",
            type=chunk_size,
            default=outbox_backfill.DEFAULT_CHUNK,
            metavar="N",
            help="Rows per INSERT and transaction (default: %(default)r).",
        )
        add_database_argument(parser, "rows and outbox to use")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows chosen; enqueue nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = outbox_backfill.parse_model(options["model"])
            trigger = outbox_backfill.trigger_for(model, options["topic"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        queryset, what = self._queryset(model, trigger.key_field, options)  # bad values first, no database
        preflight(("outbox", model._meta.app_label), using=options["database"])
        kwargs: dict[str, Any] = {
            "topic": trigger.topic,
            "order_by": options["order_by"],
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
                    result = outbox_backfill.backfill(
                        queryset,
                        **kwargs,
                        on_selected=lambda total: bar.update(task, total=total),
                        progress=lambda done: bar.update(task, completed=done),
                    )
            else:
                result = outbox_backfill.backfill(queryset, **kwargs)
        except (FieldError, ValidationError, ValueError) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(f"cannot choose the rows of {model._meta.label}: {message}") from exc
        except OverflowError as exc:  # e.g. --filter crawled_at__year=99999999999
            raise CommandError(
                f"cannot choose the rows of {model._meta.label}: a --filter/--exclude value is out of range ({exc})"
            ) from exc
        except DatabaseError as exc:  # a value only the server refuses, e.g. --filter source__regex=(
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(
                f"cannot choose the rows of {model._meta.label}: the database refused it: {reason}"
            ) from exc
        if options["dry_run"]:
            self.stdout.write(f"Would enqueue {trigger.topic} events for up to {result.selected:,} row(s) ({what}).")
            return
        self.stdout.write(
            f"Enqueued {result.enqueued:,} {trigger.topic} event(s) for {result.selected:,} row(s) ({what}); "
            f"{result.skipped:,} already had a pending event or stopped matching meanwhile."
        )

    def _queryset(self, model: type[models.Model], key_field: str, options: dict[str, Any]) -> tuple[Any, str]:
        """The rows the options choose, and a few words saying which."""
        queryset = model._default_manager.using(options["database"])
        ids = list(options["ids"] or [])
        if options["ids_from"]:
            ids += _read_ids(options["ids_from"])
        chosen_by_hand = bool(options["filters"] or options["excludes"] or options["ids"] or options["ids_from"])
        registered = outbox_backfill.defaults_for(model)
        what: list[str] = []
        if options["all"]:
            if chosen_by_hand:
                raise CommandError("--all chooses every row: leave out --filter, --exclude, --id and --ids-from")
            what.append("all rows")
        elif not chosen_by_hand:
            if registered is None:
                raise CommandError(
                    f"choose the rows of {model._meta.label}: --filter LOOKUP=VALUE, --id KEY, --ids-from FILE, "
                    "or --all (it has no registered default selection)"
                )
            queryset = queryset.filter(registered.default)
            what.append(registered.description)
        try:
            queryset = queryset.filter(_lookups(model, options["filters"]))
            for name, raw in options["excludes"] or []:
                queryset = queryset.exclude(**{name: _value(model, name, raw)})
        except (FieldError, ValidationError, ValueError, OverflowError) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            raise CommandError(f"--filter/--exclude: {message}") from exc
        what += [f"{n}={v}" for n, v in options["filters"] or []]
        what += [f"not {n}={v}" for n, v in options["excludes"] or []]
        if options["ids_from"] or options["ids"]:
            if not ids:
                raise CommandError(f"--ids-from {options['ids_from']}: no keys in it")
            try:
                queryset = queryset.filter(**{f"{key_field}__in": ids})
            except (ValidationError, ValueError, OverflowError) as exc:
                message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                raise CommandError(f"--id/--ids-from: not a key of {model._meta.label}: {message}") from exc
            what.append(f"{len(set(ids)):,} key(s) given")
        return queryset, "; ".join(what)
