"""OpenTelemetry spans of a real drainer, and nothing of metrics or tracing when not asked for.

The drainer runs with tests/settings_tracing.py (a tracer provider writing spans to
a file); without it (the project's settings), no span receiver is connected and
prometheus_client is never imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
from tests.factories import make_product, make_results_sql
from tests.support import ROOT, drainer_env, manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]

RESULTS = 60
GONE = 3


def test_each_batch_and_each_handler_run_is_a_span(tmp_path: Path) -> None:
    make_results_sql([make_product().id for _ in range(3)], RESULTS, price_mod=100_000)
    gone = list(CrawlResult.objects.order_by("id").values_list("id", flat=True)[:GONE])
    CrawlResult.objects.filter(id__in=gone).delete()
    spans_file = tmp_path / "spans.jsonl"
    env = drainer_env("tests.settings_tracing", OUTBOX_TEST_SPANS=str(spans_file))
    done = manage("drain_outbox", "--once", "--max-attempts", "1", "--batch-size", "25", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert OutboxEvent.objects.filter(status="done").count() == RESULTS - GONE

    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert spans and {s["name"] for s in spans} == {"outbox.process"}
    assert {s["kind"] for s in spans} == {"SpanKind.CONSUMER"}
    batches = [s for s in spans if s["parent_id"] is None]
    runs = [s for s in spans if s["parent_id"] is not None]
    assert sum(b["attributes"]["messaging.batch.message_count"] for b in batches) == RESULTS
    assert sum(b["attributes"]["outbox.done"] for b in batches) == RESULTS - GONE
    assert sum(b["attributes"]["outbox.failed"] for b in batches) == GONE
    assert {b["attributes"]["messaging.system"] for b in batches} == {"outbox"}
    assert {b["attributes"]["messaging.destination.name"] for b in batches} == {CRAWL_RESULT_CREATED}
    assert "failed" in {b["attributes"]["outbox.outcome"] for b in batches}
    batch_ids = {b["context"]["span_id"] for b in batches}
    assert runs and {r["parent_id"] for r in runs} <= batch_ids, "a handler run outside its batch's span"
    assert {r["attributes"]["messaging.destination.name"] for r in runs} == {CRAWL_RESULT_CREATED}
    assert sum(r["attributes"]["messaging.batch.message_count"] for r in runs) == RESULTS
    assert sum(r["attributes"].get("outbox.failed_events", 0) for r in runs) == GONE
    for run in runs:
        parent = next(b for b in batches if b["context"]["span_id"] == run["parent_id"])
        assert parent["start_time"] <= run["start_time"] <= run["end_time"] <= parent["end_time"]


PROBE = """
import json, sys, django
django.setup()
from outbox.drainer import drain
from outbox import signals
drain()
receivers = [r[0][0] for s in (signals.batch_acked, signals.handler_started) for r in s.receivers]
print(json.dumps({
    "prometheus_client": "prometheus_client" in sys.modules,
    "tracing": any(str(uid).startswith("outbox.tracing.") for uid in receivers),
}))
"""


def test_a_drainer_without_metrics_or_a_provider_connects_nothing() -> None:
    make_results_sql([make_product().id], 5)
    env = drainer_env()
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"prometheus_client": False, "tracing": False}
    assert OutboxEvent.objects.filter(status="done").count() == 5
