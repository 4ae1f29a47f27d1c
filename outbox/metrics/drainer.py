"""What each drainer did, as Prometheus counters and histograms: ``drain_outbox --metrics-port``.

The metrics live in prometheus_client's default registry of the drainer's process
(with its ``process_*`` and ``python_*`` collectors) and are fed by receivers of
the drainer's signals (``outbox.signals``), connected by ``install()``: a drainer
started without ``--metrics-port`` connects none and pays nothing. ``serve()``
starts prometheus_client's HTTP server on a thread of its own. Names follow the
OpenTelemetry messaging conventions where one exists (``messaging_*``, with their
attribute names as labels), else ``outbox_*``; docs/metrics.md lists them.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server

from outbox import signals
from outbox.handlers import Event

#: The ``messaging.system`` of these events (OpenTelemetry semantic conventions).
MESSAGING_SYSTEM = "outbox"
#: Seconds of one processing transaction: sub-millisecond batches to stalled ones.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds from an event's writer to its done ack: a NOTIFY wake-up to a day behind.
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip

CONSUMED = Counter(
    "messaging_client_consumed_messages",
    "Events a drainer claimed (delivered to it for processing), suspects included.",
    ["messaging_system", "messaging_destination_name"],
)
PROCESS_DURATION = Histogram(
    "messaging_process_duration_seconds",
    "Seconds of one processing transaction (a batch): lock, handlers, acks, COMMIT.",
    ["messaging_system", "messaging_operation_name"],
    buckets=BATCH_BUCKETS,
)
BATCHES = Counter("outbox_batches", "Processing transactions committed (batches, and suspects run alone).")
PROCESSED = Counter(
    "outbox_events_processed",
    "Events whose run ended in an ack, by topic and result: done, retry (failed, to run again), failed (for good).",
    ["topic", "result"],
)
OUTCOMES = Counter(
    "outbox_handler_outcomes",
    "Outcomes the handlers reported, by topic (pricing: recorded, duplicate, skipped, ...).",
    ["topic", "outcome"],
)
HANDLER_FAILURES = Counter(
    "outbox_handler_failures", "Events whose handler raised or reported them failed, by topic.", ["topic"]
)
LEASE_LOST = Counter(
    "outbox_lease_lost_events",
    "Claimed events another drainer had taken over before this one could ack them (fenced off).",
)
RELEASED = Counter("outbox_events_released", "Claimed events given back unrun (a stop, a bucket handed over).")
RECONNECTS = Counter("outbox_reconnects", "Times the drainer lost its database connection and made it again.")
LATENCY = Histogram(
    "outbox_event_latency_seconds",
    "Seconds from an event's created_at (its writer's transaction) to the commit of its done ack.",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
BUCKETS_OWNED = Gauge("outbox_buckets_owned", "Order buckets this drainer owns, by ordered topic.", ["topic"])
DRAINER = Info("outbox_drainer", "This drainer: its identity and the topics it handles.")

_UID = "outbox.metrics.drainer"
_server: Any = None


def _on_started(sender: Any, drainer: Any, topics: Sequence[str], ordered: Sequence[str], **kwargs: Any) -> None:
    DRAINER.info({"identity": drainer.identity, "topics": ",".join(topics), "ordered": ",".join(ordered)})
    for topic in topics:  # every series from the start, zeros included: rate() needs a first sample
        for result in ("done", "retry", "failed"):
            PROCESSED.labels(topic, result)
        HANDLER_FAILURES.labels(topic)
        CONSUMED.labels(MESSAGING_SYSTEM, topic)


def _on_buckets(sender: Any, drainer: Any, owned: dict[str, frozenset[int]], **kwargs: Any) -> None:
    for topic, buckets in owned.items():
        BUCKETS_OWNED.labels(topic).set(len(buckets))


def _on_claimed(sender: Any, drainer: Any, events: Sequence[Event], **kwargs: Any) -> None:
    for topic, count in Tally(e.topic for e in events).items():
        CONSUMED.labels(MESSAGING_SYSTEM, topic).inc(count)


def _on_acked(sender: Any, drainer: Any, report: Any, **kwargs: Any) -> None:
    result = report.result
    now = time.time()
    BATCHES.inc()
    PROCESS_DURATION.labels(MESSAGING_SYSTEM, "process").observe(report.seconds)
    topic_of = {e.id: e.topic for e in report.events}
    failed_ids = {f.id for f in report.failures}
    for failure in report.failures:
        PROCESSED.labels(topic_of.get(failure.id, ""), "failed" if failure.final else "retry").inc()
    meant_done = 0
    for topic in report.topics:
        name = topic.registration.topic
        done = topic.processed - topic.failed
        meant_done += done
        PROCESSED.labels(name, "done").inc(done)
        if topic.failed:
            HANDLER_FAILURES.labels(name).inc(topic.failed)
        for outcome, count in topic.outcomes.items():
            OUTCOMES.labels(name, outcome).inc(count)
    for event in report.events:
        if event.id not in failed_ids:
            LATENCY.labels(event.topic).observe(max(now - event.created_at.timestamp(), 0.0))
    # Lost before the run (the re-lock found another holder) or at the ack (the fence).
    fenced = max(meant_done - result.done, 0) + max(len(report.failures) - result.retried - result.failed, 0)
    if result.lost or fenced:
        LEASE_LOST.inc(result.lost + fenced)
    if result.released:
        RELEASED.inc(result.released)


def _on_reconnected(sender: Any, drainer: Any, released: int, **kwargs: Any) -> None:
    RECONNECTS.inc()


_RECEIVERS = (
    (signals.drainer_started, _on_started),
    (signals.buckets_changed, _on_buckets),
    (signals.batch_claimed, _on_claimed),
    (signals.batch_acked, _on_acked),
    (signals.reconnected, _on_reconnected),
)


def install() -> None:
    """Connect the receivers (once per process, however often it is called)."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, dispatch_uid=f"{_UID}.{receiver.__name__}")


def uninstall() -> None:
    for signal, receiver in _RECEIVERS:
        signal.disconnect(dispatch_uid=f"{_UID}.{receiver.__name__}")


def serve(port: int, addr: str = "0.0.0.0") -> tuple[str, int]:  # noqa: S104 (Prometheus scrapes from elsewhere)
    """Serve this process's metrics on http://addr:port/metrics; returns where (port 0: any free one)."""
    global _server
    install()
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    _server = server
    host, bound = server.server_address[:2]
    return str(host), int(bound)


def stop_serving() -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
