"""The bench's trivial topic: a batch handler that inserts one row per event, nothing else.

It measures the outbox's own machinery (claim, lock, ack, commit) against a
plain-SQL loop doing exactly the same work (bench/queries.sql ``trivial_drain_batch``).
The bench creates the table; the topic has no order key.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.apps import AppConfig
from django.db import connection

from outbox.handlers import Event
from outbox.sql import Queries, array_literal

#: The topic of the bench's trivial events.
TRIVIAL_TOPIC = "bench.trivial"

_queries = Queries(__import__("pathlib").Path(__file__).resolve().parent.parent / "queries.sql")


def insert_rows(events: Sequence[Event]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_queries.trivial_effect_insert, {"ids": array_literal(e.id for e in events)})


class TrivialConfig(AppConfig):
    name = "bench.trivial"
    label = "bench_trivial"
    verbose_name = "Bench: trivial topic"

    def ready(self) -> None:
        from outbox.handlers import registry

        if TRIVIAL_TOPIC not in registry:
            registry.register(TRIVIAL_TOPIC, insert_rows, batch=True, ordered=False, log_label="Trivial")
