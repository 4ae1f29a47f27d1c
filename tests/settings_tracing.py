"""Settings of a project that traces with OpenTelemetry: a tracer provider set up at start-up.

Spans go to the file named by ``OUTBOX_TEST_SPANS``, one JSON object a line, for
tests/process/test_tracing.py to read.
"""

from __future__ import annotations

import json
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from project.settings import *  # noqa: F403

_provider = TracerProvider()
_spans = open(os.environ["OUTBOX_TEST_SPANS"], "a", encoding="utf-8")
_provider.add_span_processor(
    SimpleSpanProcessor(
        ConsoleSpanExporter(out=_spans, formatter=lambda span: json.dumps(json.loads(span.to_json())) + "\n")
    )
)
trace.set_tracer_provider(_provider)
