"""Enqueue events for rows that already exist: the event the trigger would have written.

For rows the trigger never saw: rows written before the outbox was installed, while
its trigger was disabled, or whose ids were still in the queue being replaced
(docs/adopting.md, "Cut over"). Any model with an ``outbox_trigger`` in its
``Meta.triggers`` can be backfilled; which rows is a queryset, so the domain's own
notion of "not processed yet" is a filter the caller writes (or registers as the
model's default with ``register()``, as pricing does for CrawlResult).

The events are written by the trigger's own ``INSERT`` (``OutboxTrigger.
events_insert``) run over the chosen rows, so topic, key and payload are exactly
the trigger's. It is idempotent: a row that already has a pending event of the
topic gets no second one, so a backfill can be re-run, or run while writers and
drainers work. Rows are numbered once in the order asked for (one sort, kept in a
temporary table), then enqueued in chunks, each in a short transaction of its own
that checks the queryset again, so a row processed in the meantime is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections, models, transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import RowNumber
from psycopg import sql

from outbox.sql import Queries
from outbox.triggers import NOTIFY_CHANNEL, OutboxTrigger, model_outbox_triggers

queries = Queries(Path(__file__).with_name("sql") / "backfill.sql")

#: Rows per INSERT and transaction.
DEFAULT_CHUNK = 1000


@dataclass(frozen=True)
class BackfillResult:
    #: Rows the queryset chose.
    selected: int
    #: Events written.
    enqueued: int
    #: Chosen rows that got no event: one was already pending, or the row stopped
    #: matching the queryset (processed) in the meantime.
    skipped: int


@dataclass(frozen=True)
class BackfillDefaults:
    """What ``outbox_backfill app.Model`` does without --filter, --id or --all."""

    #: The rows chosen by default, e.g. ``Q(history_record_status__isnull=True)``.
    default: Q
    #: The order events are written in (field names, ``-`` for descending).
    order_by: tuple[str, ...]
    #: Says which rows ``default`` chooses, for the command's help and output.
    description: str


_defaults: dict[type[models.Model], BackfillDefaults] = {}


def register(
    model: type[models.Model], *, default: Q, order_by: Sequence[str] = ("pk",), description: str = ""
) -> None:
    """Give ``model`` a default backfill selection and order (call it in ``AppConfig.ready()``)."""
    _defaults[model] = BackfillDefaults(default, tuple(order_by), description or str(default))


def defaults_for(model: type[models.Model]) -> BackfillDefaults | None:
    return _defaults.get(model)


def trigger_for(model: type[models.Model], topic: str | None = None) -> OutboxTrigger:
    """The outbox trigger of ``model`` (the one writing ``topic`` when it has several)."""
    triggers = model_outbox_triggers(model)
    label = model._meta.label
    if not triggers:
        raise ValueError(f"{label} has no outbox trigger (outbox_trigger() in its Meta.triggers): nothing to backfill")
    if topic is not None:
        for trigger in triggers:
            if trigger.topic == topic:
                return trigger
        known = ", ".join(t.topic for t in triggers)
        raise ValueError(f"{label} has no outbox trigger for topic {topic!r} (its topics: {known})")
    if len(triggers) > 1:
        topics = ", ".join(t.topic for t in triggers)
        raise ValueError(f"{label} has several outbox triggers: choose a topic ({topics})")
    return triggers[0]


def backfill(
    queryset: QuerySet[Any],
    *,
    topic: str | None = None,
    order_by: Sequence[str] | None = None,
    chunk: int = DEFAULT_CHUNK,
    dry_run: bool = False,
    on_selected: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Enqueue the trigger's event for each row of ``queryset`` that has no pending one.

    ``order_by``: the order of the events (default: the model's registered order, else
    the primary key). ``on_selected(total)`` is called once the rows are chosen and
    ``progress(done)`` after each chunk. The queryset's database (``.using(alias)``)
    is the one written to: each database has its own outbox.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    model = queryset.model
    trigger = trigger_for(model, topic)
    registered = defaults_for(model)
    order = tuple(order_by or (registered.order_by if registered else ("pk",)))
    using = queryset.db
    qs = queryset.order_by()
    selection = qs.annotate(outbox_n=Window(RowNumber(), order_by=list(order)), outbox_pk=F("pk")).values_list(
        "outbox_n", "outbox_pk"
    )
    selection_sql, selection_params = selection.query.sql_with_params()
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute(queries.backfill_drop)
        try:
            cursor.execute(_compose(conn, queries.backfill_select, selection=sql.SQL(selection_sql)), selection_params)
            selected = cursor.rowcount
            if on_selected is not None:
                on_selected(selected)
            if dry_run:
                return BackfillResult(selected, 0, 0)
            cursor.execute(queries.backfill_index)
            enqueued = 0
            after = 0
            while after < selected:
                # A fixed statement of backfill.sql, its values as parameters.
                rows = RawSQL(queries.backfill_chunk_rows, (after, after + chunk))  # noqa: S611
                chosen = qs.filter(pk__in=rows).values("pk")
                chosen_sql, chosen_params = chosen.query.sql_with_params()
                with transaction.atomic(using=using):
                    cursor.execute(queries.backfill_lock, [trigger.topic])
                    statement = _chunk_statement(conn, model, trigger, chosen_sql)
                    cursor.execute(statement, [*chosen_params, trigger.topic])
                    _, written = cursor.fetchone()
                    if written:
                        cursor.execute(queries.backfill_notify, [NOTIFY_CHANNEL, trigger.topic])
                enqueued += int(written)
                after += chunk
                if progress is not None:
                    progress(min(after, selected))
            return BackfillResult(selected, enqueued, selected - enqueued)
        finally:
            cursor.execute(queries.backfill_drop)


def _chunk_statement(conn: Any, model: type[models.Model], trigger: OutboxTrigger, chosen: str) -> str:
    """backfill_chunk for this model, its trigger and the chunk's queryset SQL."""
    key_column = model._meta.get_field(trigger.key_field).column
    return _compose(
        conn,
        queries.backfill_chunk,
        table=sql.Identifier(model._meta.db_table),
        pk=sql.Identifier(model._meta.pk.column),
        key=sql.Identifier(key_column),
        events_insert=sql.SQL(trigger.render_events_insert(model)),
        chosen=sql.SQL(chosen),
    )


def _compose(conn: Any, template: str, **parts: sql.Composable) -> str:
    """``template`` with its ``{name}`` parts filled in, as text for Django's cursor."""
    conn.ensure_connection()
    return sql.SQL(template).format(**parts).as_string(conn.connection)


def parse_model(label: str) -> type[models.Model]:
    """``app_label.ModelName`` (any case) -> the model, or ValueError saying which exist."""
    from django.apps import apps

    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        with_trigger = sorted(m._meta.label for m in apps.get_models() if model_outbox_triggers(m))
        raise ValueError(
            f"{label!r} is not a model (app_label.ModelName); models with an outbox trigger: "
            f"{', '.join(with_trigger) or 'none'}"
        ) from None
