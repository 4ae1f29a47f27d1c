"""Build the trigger that feeds the outbox from any model.

``outbox_trigger(topic=..., key="id")`` returns a ``pgtrigger.Trigger`` to put in a
model's ``Meta.triggers``; ``makemigrations`` then writes it into a migration, so
the trigger is schema like any table. It is an AFTER INSERT, statement-level
trigger with a transition table: one ``INSERT ... SELECT`` writes the events of a
whole statement (a ``bulk_create`` of 10,000 rows runs it once), and a
``pg_notify`` wakes idle drainers at commit.

NOTIFY takes a server-wide lock at commit (it serialises committing transactions
that notified), so it is sent at most once per statement, only by the transaction
that wins the notify gate (``notify_gate_sql()``: at most one notifying transaction
in flight per 100 ms window; docs/guarantees.md#wake-ups), and can be switched off:
the trigger skips it when the ``outbox.notify`` setting is ``off``, e.g.
``ALTER DATABASE mydb SET outbox.notify = off``. Drainers then find events by polling.

The trigger is a ``pgtrigger.Trigger`` whose function has no call to pgtrigger's
``_pgtrigger_should_ignore()``: that function reads its setting inside an
``EXCEPTION`` block, which opens a subtransaction on every statement that fires
the trigger. bench/ measured it at about a tenth of the cost of a single-row
insert (1.32x the cost without the trigger against 1.16x without the check).
So ``pgtrigger.ignore()`` does not apply to outbox triggers; pause one with
``ALTER TABLE ... DISABLE TRIGGER`` (then ``outbox_backfill``), or stop its
NOTIFY with ``outbox.notify``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pgtrigger
from django.db import DEFAULT_DB_ALIAS, models
from pgtrigger import compiler
from pgtrigger.core import OUTDATED, UNINSTALLED

from outbox.conf import BUCKETS
from outbox.sql import queries

#: The channel drainers LISTEN on; the payload is the topic.
NOTIFY_CHANNEL = "outbox"
#: The GUC that switches the trigger's NOTIFY off (unset or anything else: on).
NOTIFY_GUC = "outbox.notify"
#: The advisory lock class of the NOTIFY gate ("outb" in ASCII), taken with the
#: two-key form, whose keys never meet the one-key form's (pg_advisory_xact_lock(bigint)).
NOTIFY_LOCK_CLASS = 1869968482
#: The gate's second key changes every NOTIFY_WINDOW_MS: a transaction that stays open
#: after its insert holds back other writers' notifications for the rest of its window
#: only (docs/guarantees.md#wake-ups).
NOTIFY_WINDOW_MS = 100

_TOPIC_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OutboxTriggerSql(compiler.UpsertTriggerSql):
    """pgtrigger's trigger SQL without the ignore check (see the module docstring).

    Referenced by the migrations that install outbox triggers: keep this template
    as it is, or version it (a new class), like pgtrigger does its own.
    """

    def get_template(self) -> str:
        return """
            CREATE OR REPLACE FUNCTION {pgid}()
            RETURNS TRIGGER AS $$
                {declare}
                BEGIN
                    {func}
                END;
            $$ LANGUAGE plpgsql;

            DROP TRIGGER IF EXISTS {pgid} ON {table};
            CREATE {constraint} TRIGGER {pgid}
                {when} {operation} ON {table}
                {timing}
                {referencing}
                FOR EACH {level} {condition}
                EXECUTE PROCEDURE {execute};

            COMMENT ON TRIGGER {pgid} ON {table} IS '{hash}';
        """


class OutboxTrigger(pgtrigger.Trigger):
    """A pgtrigger trigger compiled with OutboxTriggerSql; knows its topic and order key.

    ``key_field`` is the field its key comes from, ``events_insert`` the ``INSERT`` of
    its function, which reads the new rows from ``outbox_new_rows``: ``outbox.backfill``
    runs the same statement over existing rows, so a backfilled event is the one the
    trigger would have written (order bucket included).
    """

    def __init__(
        self,
        *,
        topic: str,
        order_key: str | None = None,
        key_field: str = "id",
        events_insert: pgtrigger.Func | None = None,
        **kwargs: object,
    ) -> None:
        self.topic = topic
        self.order_key = order_key
        self.key_field = key_field
        self.events_insert = events_insert
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def render_events_insert(self, model: type[models.Model]) -> str:
        """The trigger's INSERT of events, rendered for ``model`` (column names filled in)."""
        if self.events_insert is None:
            raise TypeError(f"trigger {self.name!r} was not built by outbox_trigger()")
        return self.events_insert.render(**self.get_func_template_kwargs(model))

    def compile(self, model: models.Model) -> compiler.Trigger:
        compiled = super().compile(model)
        return compiler.Trigger(name=compiled.name, sql=OutboxTriggerSql(**compiled.sql.kwargs))


def _check_field(name: str, what: str) -> str:
    if not _FIELD_RE.match(name):
        raise ValueError(f"outbox_trigger: {what} {name!r} is not a valid field name")
    return name


def bucket_sql(column: str) -> str:
    """The SQL expression of an event's order bucket, from its order key's SQL ``column``.

    ``hashtextextended`` is the hash that hash partitioning uses, stable across
    PostgreSQL versions and upgrades; the bucket is its low bits.
    """
    return f"(hashtextextended(({column})::text, 0) & {BUCKETS - 1})::smallint"


def notify_gate_sql() -> str:
    """The SQL condition under which a trigger sends its NOTIFY: it wins the gate.

    ``pg_try_advisory_xact_lock`` on the key of the current window: the first
    transaction of a window to insert wins and holds it until it ends; the others
    skip their NOTIFY, since the winner's is on its way and a drainer it wakes claims
    until a claim comes back empty. So at most one notifying transaction per window
    is in flight, instead of every writer queueing at COMMIT on NOTIFY's
    server-wide lock. The rare event that slips between (its writer commits after
    the last claim that woken drainers made) waits for the next notification or the
    poll interval: docs/guarantees.md#wake-ups.
    """
    window = f"(floor(date_part('epoch', clock_timestamp()) * {1000 // NOTIFY_WINDOW_MS})::bigint % 2147483647)::int"
    return f"pg_try_advisory_xact_lock({NOTIFY_LOCK_CLASS}, {window})"


def outbox_trigger(
    *,
    topic: str,
    key: str = "id",
    order_key: str | None = None,
    payload_fields: Sequence[str] | None = None,
    name: str | None = None,
) -> OutboxTrigger:
    """An AFTER INSERT trigger that writes one outbox event per inserted row.

    Args:
        topic: the event topic, e.g. ``"pricing.crawl_result.created"``
            (letters, digits and ``_.:-``).
        key: the model field whose value becomes the event key (default the pk).
        order_key: the model field whose events must be handled one at a time, in
            outbox order (pricing: ``"product"``); each event gets the order
            bucket of its value. ``None``: events are handled in any order.
        payload_fields: model fields copied into the JSON payload, keyed by column
            name (a foreign key ``product`` becomes ``product_id``); ``None`` copies
            the whole row (``to_jsonb``).
        name: the trigger name (default ``outbox_<last part of the topic>``).
    """
    if not _TOPIC_RE.match(topic):
        raise ValueError(f"outbox_trigger: topic {topic!r} must be 1-200 of letters, digits and _.:-")
    _check_field(key, "key")
    if order_key is None:
        bucket_value = "NULL"
    else:
        bucket_value = bucket_sql(f"n.{{columns.{_check_field(order_key, 'order key')}}}")
    if payload_fields is None:
        payload_sql = "to_jsonb(n)"
    else:
        pairs = ", ".join(
            f"'{{columns.{_check_field(field, 'payload field')}}}', n.{{columns.{field}}}" for field in payload_fields
        )
        payload_sql = f"jsonb_build_object({pairs})"
    trigger_name = name or ("outbox_" + re.sub(r"[^a-z0-9_]", "_", topic.lower().split(".")[-1]))[:40]
    # Trigger DDL, built once at import from the validated topic and field names
    # above (never from input); it is reviewed in the generated migration.
    insert = f"""
        INSERT INTO outbox_event (topic, key, bucket, payload)
        SELECT '{topic}', n.{{columns.{key}}}::text, {bucket_value}, {payload_sql}
        FROM outbox_new_rows AS n"""  # noqa: S608
    body = f"""{insert};
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted > 0 AND coalesce(current_setting('{NOTIFY_GUC}', true), 'on') <> 'off'
           AND {notify_gate_sql()} THEN
            PERFORM pg_notify('{NOTIFY_CHANNEL}', '{topic}');
        END IF;
        RETURN NULL;
        """  # noqa: S608
    func = pgtrigger.Func(body)
    return OutboxTrigger(
        topic=topic,
        order_key=order_key,
        key_field=key,
        events_insert=pgtrigger.Func(insert),
        name=trigger_name,
        level=pgtrigger.Statement,
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        referencing=pgtrigger.Referencing(new="outbox_new_rows"),
        declare=[("inserted", "bigint")],
        func=func,
    )


def model_outbox_triggers(model: type[models.Model]) -> list[OutboxTrigger]:
    """The outbox triggers of one model (``outbox_trigger()`` in its ``Meta.triggers``)."""
    return [t for t in getattr(model._meta, "triggers", ()) if isinstance(t, OutboxTrigger)]


def outbox_triggers() -> list[tuple[type[models.Model], OutboxTrigger]]:
    """Every installed model's outbox triggers: (model, trigger)."""
    from django.apps import apps

    return [(model, trigger) for model in apps.get_models() for trigger in model_outbox_triggers(model)]


def ordered_topics() -> set[str]:
    """Topics whose outbox trigger (in any installed model) has an order key."""
    return {trigger.topic for _, trigger in outbox_triggers() if trigger.order_key is not None}


@dataclass(frozen=True)
class TriggerState:
    """One outbox trigger as the database has it (the doctor's check, a metrics gauge)."""

    table: str
    name: str
    pgid: str
    #: pgtrigger's installation status: INSTALLED, UNINSTALLED or OUTDATED.
    installation: str
    #: pg_trigger.tgenabled: O or A (fires), R (replica sessions only), D (disabled); None: missing.
    enabled: str | None

    @property
    def installed(self) -> bool:
        """There, and the version the code declares."""
        return self.installation not in (UNINSTALLED, OUTDATED) and self.enabled is not None

    @property
    def fires(self) -> bool:
        """Fires for ordinary sessions' inserts."""
        return self.enabled in ("O", "A")


def trigger_states(cursor: Any, using: str = DEFAULT_DB_ALIAS) -> list[TriggerState]:
    """Every installed model's outbox trigger, as the database has it."""
    states = []
    for model, trigger in outbox_triggers():
        table = model._meta.db_table
        pgid = trigger.get_pgid(model)
        installation, _ = trigger.get_installation_status(model, database=using)
        cursor.execute(queries.doctor_trigger_state, {"table": table, "name": pgid})
        row = cursor.fetchone()
        states.append(TriggerState(table, trigger.name, pgid, installation, row[0] if row else None))
    return states
