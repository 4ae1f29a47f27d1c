"""OpenTelemetry spans of the drainer, when the application traces: optional, free otherwise.

Imported only when ``opentelemetry-api`` is installed (``outbox.apps`` looks with
``importlib.util.find_spec``, which imports nothing), and then connected only when a
tracer provider is configured (the SDK, ``opentelemetry-instrument``, an APM's
distribution): checked once, when a drainer starts. Each processing transaction is a
span ``outbox.process`` (kind CONSUMER) and each handler run a child span of the same
name, with the OpenTelemetry messaging attributes; a span is current while its
handler runs, so the handler's own instrumentation nests under it. docs/metrics.md#tracing.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from outbox import signals
from outbox.handlers import Event

#: The span name of a batch and of a handler run.
SPAN_NAME = "outbox.process"
#: The instrumentation scope spans are recorded under.
TRACER_NAME = "outbox"
_UID = "outbox.tracing"


@dataclass
class _Open:
    span: trace.Span
    token: object


class _Tracer:
    """The spans open in each drainer (a drainer runs in one thread)."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer(TRACER_NAME)
        self.batches: weakref.WeakKeyDictionary[Any, _Open] = weakref.WeakKeyDictionary()
        self.handlers: weakref.WeakKeyDictionary[Any, _Open] = weakref.WeakKeyDictionary()

    def _base(self) -> dict[str, Any]:
        return {
            "messaging.system": "outbox",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
        }

    def handler_started(self, sender: Any, drainer: Any, topic: str, events: Sequence[Event], **kwargs: Any) -> None:
        if drainer not in self.batches:
            span = self.tracer.start_span(SPAN_NAME, kind=SpanKind.CONSUMER, attributes=self._base())
            self.batches[drainer] = _Open(span, context.attach(trace.set_span_in_context(span)))
        attributes = {
            **self._base(),
            "messaging.destination.name": topic,
            "messaging.batch.message_count": len(events),
        }
        span = self.tracer.start_span(SPAN_NAME, kind=SpanKind.CONSUMER, attributes=attributes)
        self.handlers[drainer] = _Open(span, context.attach(trace.set_span_in_context(span)))

    def handler_finished(
        self,
        sender: Any,
        drainer: Any,
        events: Sequence[Event],
        outcomes: Mapping[str, int],
        failed: Mapping[int, object],
        error: BaseException | None,
        **kwargs: Any,
    ) -> None:
        opened = self.handlers.pop(drainer, None)
        if opened is None:
            return
        span = opened.span
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
            span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
            span.set_attribute("outbox.outcome", "raised")
        else:
            span.set_attribute("outbox.outcome", ",".join(sorted(outcomes)) or "done")
            if failed:
                span.set_attribute("outbox.failed_events", len(failed))
        context.detach(opened.token)  # type: ignore[arg-type]
        span.end()

    def batch_acked(self, sender: Any, drainer: Any, report: Any, **kwargs: Any) -> None:
        opened = self.batches.pop(drainer, None)
        result = report.result
        topics = sorted({e.topic for e in report.events})
        if opened is None:  # no handler ran (a suspect failed unrun): the span, after the fact
            start = time.time_ns() - int(report.seconds * 1e9)
            span = self.tracer.start_span(SPAN_NAME, kind=SpanKind.CONSUMER, attributes=self._base(), start_time=start)
        else:
            span = opened.span
        span.set_attribute("messaging.batch.message_count", len(report.events))
        if len(topics) == 1:
            span.set_attribute("messaging.destination.name", topics[0])
        outcome = "failed" if result.failed else "retry" if result.retried else "done"
        span.set_attribute("outbox.outcome", outcome)
        for name in ("done", "retried", "failed", "lost", "released"):
            span.set_attribute(f"outbox.{name}", getattr(result, name))
        if opened is not None:
            context.detach(opened.token)  # type: ignore[arg-type]
        span.end()

    def abandon(self, sender: Any, drainer: Any, **kwargs: Any) -> None:
        """The transaction never committed (a lost connection, a stop): close what is open."""
        for spans in (self.handlers, self.batches):
            opened = spans.pop(drainer, None)
            if opened is not None:
                opened.span.set_status(Status(StatusCode.ERROR, "the processing transaction did not commit"))
                context.detach(opened.token)  # type: ignore[arg-type]
                opened.span.end()


_tracer: _Tracer | None = None


def provider_configured() -> bool:
    """Is a real tracer provider set (not the API's proxy or no-op one)?"""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def install() -> bool:
    """Connect the span receivers if a tracer provider is configured; returns whether they are."""
    global _tracer
    if _tracer is not None:
        return True
    if not provider_configured():
        return False
    _tracer = _Tracer()
    for signal, receiver in _receivers(_tracer):
        signal.connect(receiver, dispatch_uid=f"{_UID}.{receiver.__name__}")
    return True


def uninstall() -> None:
    global _tracer
    if _tracer is None:
        return
    for signal, receiver in _receivers(_tracer):
        signal.disconnect(dispatch_uid=f"{_UID}.{receiver.__name__}")
    _tracer = None


def _receivers(tracer: _Tracer) -> list[tuple[Any, Any]]:
    return [
        (signals.handler_started, tracer.handler_started),
        (signals.handler_finished, tracer.handler_finished),
        (signals.batch_acked, tracer.batch_acked),
        (signals.reconnected, tracer.abandon),
        (signals.drainer_stopped, tracer.abandon),
    ]
