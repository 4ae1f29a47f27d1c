"""The queue's state, read from the database at scrape time: what /outbox/metrics serves.

One ``QueueStateCollector.collect()`` runs a handful of cheap statements (the
``outbox_stats`` view, the claimable lag per topic, the live drainers, the doctor's
table health, orphaned leases, retention, xmin horizon and triggers) and turns
them into gauges. Nothing counts the done rows of a large table: done counts are
``outbox_stats``' estimate there. A database that cannot be read gives
``outbox_database_up 0`` and nothing else, never an error page.
docs/metrics.md lists every metric; bench/metrics_bench.py measures a scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outbox import services
from outbox.conf import get_settings
from outbox.handlers import registry
from outbox.models import EventStatus
from outbox.sql import metrics_queries, queries

logger = logging.getLogger(__name__)


def _gauge(name: str, documentation: str, labels: Iterable[str] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels), unit=unit)


class QueueStateCollector(Collector):
    """Gauges of the outbox's state in database ``using``, computed on each collect()."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def describe(self) -> list[Metric]:
        return []  # the names depend on nothing but are cheap to find by collecting; no describe-time query

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = _gauge("outbox_database_up", "1 if the outbox's database answered this scrape, else 0.")
        try:
            metrics = list(self._collect())
        except (DatabaseError, psycopg.Error) as exc:
            logger.warning("outbox metrics: cannot read the database %r: %s", self.using, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics
        took = _gauge(
            "outbox_scrape_query_duration_seconds",
            "Seconds the database reads of this scrape took (all of its statements).",
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _collect(self) -> Iterator[Metric]:
        stats = services.status(using=self.using)
        with connections[self.using].cursor() as cursor:
            drainers = self._drainers(cursor)
            topics = sorted(set(stats.topics()) | set(registry.topics()) | {t for t in drainers if t})
            yield from self._events(stats, topics)
            yield from self._lag(cursor, topics)
            yield from self._drainer_gauges(stats, drainers, topics)
            yield from self._health(cursor)
            yield from self._triggers(cursor)

    # ------------------------------------------------------------ the queue

    @staticmethod
    def _events(stats: services.OutboxStatus, topics: list[str]) -> Iterator[Metric]:
        events = _gauge(
            "outbox_events",
            "Events by topic and status. Pending and failed are exact; done is estimated from "
            "PostgreSQL's statistics on a large table (see outbox_stats).",
            ["topic", "status"],
        )
        leased = _gauge("outbox_events_leased", "Pending events under a live lease: a drainer has them.", ["topic"])
        counts: dict[tuple[str, str], int] = {(t, s): 0 for t in topics for s in EventStatus.values}
        held: dict[str, int] = dict.fromkeys(topics, 0)
        for row in stats.rows:
            if row.events is None:
                continue  # an estimate with no statistics yet: no value rather than a wrong one
            key = (row.topic or "", row.status)
            counts[key] = counts.get(key, 0) + row.events
            if row.status == EventStatus.PENDING:
                held[row.topic or ""] = held.get(row.topic or "", 0) + row.leased
        for (topic, status), count in sorted(counts.items()):
            events.add_metric([topic, status], count)
        for topic, count in sorted(held.items()):
            leased.add_metric([topic], count)
        yield events
        yield leased

    @staticmethod
    def _lag(cursor: Any, topics: list[str]) -> Iterator[Metric]:
        lag = _gauge(
            "outbox_lag_seconds",
            "How long the oldest event claimable now (pending, available_at <= now()) has waited; 0 when none.",
            ["topic"],
        )
        cursor.execute(metrics_queries.metrics_lag_by_topic, {"topics": topics})
        for topic, seconds in cursor.fetchall():
            lag.add_metric([topic], max(seconds or 0.0, 0.0))
        yield lag

    def _drainers(self, cursor: Any) -> dict[str | None, int]:
        """Live drainers per topic they handle; None: how many in all."""
        cursor.execute(queries.drainer_live_by_topic, {"expiry": get_settings().lease})
        return {topic: int(count) for topic, count in cursor.fetchall()}

    @staticmethod
    def _drainer_gauges(
        stats: services.OutboxStatus, drainers: dict[str | None, int], topics: list[str]
    ) -> Iterator[Metric]:
        total = _gauge("outbox_drainers", "Drainers alive now (outbox_drainer, seen within their lease).")
        total.add_metric([], drainers.get(None, 0))
        per_topic = _gauge("outbox_topic_drainers", "Drainers alive now that handle this topic.", ["topic"])
        unhandled = _gauge(
            "outbox_events_unhandled",
            "Pending events of a topic that no live drainer handles: nothing will process them.",
            ["topic"],
        )
        pending: dict[str, int] = {}
        for row in stats.rows:
            if row.status == EventStatus.PENDING and row.topic is not None:
                pending[row.topic] = pending.get(row.topic, 0) + (row.events or 0)
        for topic in topics:
            handling = drainers.get(topic, 0)
            per_topic.add_metric([topic], handling)
            unhandled.add_metric([topic], 0 if handling else pending.get(topic, 0))
        yield total
        yield per_topic
        yield unhandled

    # ------------------------------------------------------------ the doctor's checks

    @staticmethod
    def _health(cursor: Any) -> Iterator[Metric]:
        cursor.execute(queries.doctor_table_health, {})
        row = cursor.fetchone()
        live, dead = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        dead_rows = _gauge("outbox_table_dead_rows", "Dead row versions of outbox_event (statistics counters).")
        dead_rows.add_metric([], dead)
        ratio = _gauge(
            "outbox_table_dead_ratio", "Dead row versions of outbox_event as a fraction of all its row versions."
        )
        ratio.add_metric([], dead / (live + dead) if live + dead else 0.0)
        yield dead_rows
        yield ratio

        cursor.execute(queries.doctor_orphaned_leases, {})
        orphaned, _ = cursor.fetchone()
        leases = _gauge("outbox_orphaned_leases", "Pending events leased by a drainer whose database session is gone.")
        leases.add_metric([], int(orphaned))
        yield leases

        cursor.execute(metrics_queries.metrics_xmin_horizon, {})
        xmin_age, xact_age = cursor.fetchone()
        xmin = _gauge(
            "outbox_xmin_age_transactions",
            "Age, in transactions, of the oldest snapshot holding back VACUUM in this database "
            "(sessions, prepared transactions, replication slots).",
        )
        xmin.add_metric([], int(xmin_age or 0))
        oldest = _gauge(
            "outbox_oldest_transaction_age_seconds", "Age of the oldest open transaction of another session."
        )
        oldest.add_metric([], float(xact_age or 0.0))
        yield xmin
        yield oldest

        cursor.execute(queries.doctor_oldest_done, {})
        _, done_age = cursor.fetchone()
        retention = _gauge(
            "outbox_oldest_done_age_seconds",
            "Age of the oldest done event (processed_at): above RETENTION, nobody purges. 0: none.",
        )
        retention.add_metric([], float(done_age or 0.0))
        yield retention

    def _triggers(self, cursor: Any) -> Iterator[Metric]:
        installed = _gauge(
            "outbox_trigger_installed",
            "1 if the outbox trigger of this table is installed at the version the code declares.",
            ["table", "trigger"],
        )
        enabled = _gauge(
            "outbox_trigger_enabled",
            "1 if the outbox trigger of this table fires for ordinary sessions' inserts.",
            ["table", "trigger"],
        )
        for state in services.trigger_states(cursor, self.using):
            installed.add_metric([state.table, state.name], int(state.installed))
            enabled.add_metric([state.table, state.name], int(state.installed and state.fires))
        yield installed
        yield enabled
