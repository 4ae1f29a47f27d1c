"""Both metrics endpoints scraped over HTTP against a real drain.

A real ``drain_outbox --metrics-port`` process drains crawl results (some of which
fail: their row is gone), while a stock event waits for a topic that drainer does
not handle. Then ``/outbox/metrics`` (the live server) and the drainer's own
endpoint are scraped, and every metric docs/metrics.md documents must be there
with a value that fits what happened.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator

import pytest
from django.db import transaction
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.live_server_helper import LiveServer

from outbox.conf import BUCKETS
from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
from tests.factories import make_product, make_results_sql
from tests.stockapp.models import STOCK_LEVEL_COUNTED, StockLevel
from tests.support import ROOT, DrainerProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]

DOC = ROOT / "docs" / "metrics.md"
RESULTS = 300
GONE = 7  # results deleted before the drain: their events fail
METRICS_ON = {"METRICS": True, "METRICS_ALLOWED_IPS": ["127.0.0.1/32", "::1"], "METRICS_BASIC_AUTH": None}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def documented(section: str) -> list[str]:
    """The metric names of one table of docs/metrics.md (the one under ``section``)."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", body, re.MULTILINE)


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[Samples, set[str]]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (our own test server)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (our own test server)
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, names


def refusal(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """The status and WWW-Authenticate of a refused request (the error's response closed)."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(url, headers)
    with refused.value as error:
        return error.code, error.headers.get("WWW-Authenticate", "")


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have: {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def drainer() -> Iterator[DrainerProcess]:
    process = DrainerProcess(["--metrics-port", "127.0.0.1:0", "--max-attempts", "2", "--interval", "0.2"])
    try:
        wait_until(process.started, timeout=60, message=f"the drainer to start:\n{process.tail()}")
        yield process
    finally:
        process.stop()
        process.close()


def metrics_url(process: DrainerProcess) -> str:
    match = wait_until(
        lambda: re.search(r"metrics on (http://[\d.]+:\d+/metrics)", process.output()),
        timeout=30,
        message="the drainer's metrics line",
    )
    return match.group(1)


def test_both_endpoints_report_a_real_drain(live_server: LiveServer, drainer: DrainerProcess) -> None:
    products = [make_product().id for _ in range(10)]
    with transaction.atomic():  # the drainer never sees the gone results (their events it does)
        make_results_sql(products, RESULTS, price_mod=100_000)
        gone = list(CrawlResult.objects.order_by("id").values_list("id", flat=True)[:GONE])
        CrawlResult.objects.filter(id__in=gone).delete()
    StockLevel.objects.create(sku="S-1", warehouse="north", quantity=3)  # no drainer handles stock here

    def finished() -> bool:
        left = OutboxEvent.objects.filter(topic=CRAWL_RESULT_CREATED, status="pending").count()
        return left == 0

    wait_until(finished, timeout=120, message=f"the drain to finish:\n{drainer.tail()}")
    assert OutboxEvent.objects.filter(topic=CRAWL_RESULT_CREATED, status="failed").count() == GONE
    done = RESULTS - GONE

    # ---- the drainer's endpoint
    url = metrics_url(drainer)
    d, d_names = wait_until(
        lambda: (
            (s := scrape(url))
            and value(s[0], "outbox_events_processed_total", topic=CRAWL_RESULT_CREATED, result="failed") == GONE
            and s
        ),
        timeout=30,
        message="the drainer's counters to catch up",
    )
    missing = [name for name in documented("Drainer activity") if name.removesuffix("_total") not in d_names]
    assert not missing, f"documented drainer metrics not exported: {missing}"
    topic = {"topic": CRAWL_RESULT_CREATED}
    assert value(d, "outbox_events_processed_total", result="done", **topic) == done
    assert value(d, "outbox_events_processed_total", result="retry", **topic) == GONE  # max_attempts 2: one retry
    assert value(d, "outbox_handler_failures_total", **topic) == 2 * GONE
    outcomes = total(d, "outbox_handler_outcomes_total", **topic)
    assert 0 < outcomes <= done, outcomes
    consumed = value(
        d, "messaging_client_consumed_messages_total", messaging_system="outbox",
        messaging_destination_name=CRAWL_RESULT_CREATED,
    )  # fmt: skip
    assert consumed >= RESULTS + GONE, consumed  # every event once, the failing ones twice
    batches = value(d, "outbox_batches_total")
    assert 1 <= batches <= consumed
    labels = {"messaging_system": "outbox", "messaging_operation_name": "process"}
    assert value(d, "messaging_process_duration_seconds_count", **labels) == batches
    assert 0 < value(d, "messaging_process_duration_seconds_sum", **labels) < 60 * batches
    assert value(d, "outbox_event_latency_seconds_count", **topic) == done
    assert 0 < value(d, "outbox_event_latency_seconds_sum", **topic) / done < 120
    assert value(d, "outbox_buckets_owned", **topic) == BUCKETS  # the only drainer owns them all
    assert value(d, "outbox_lease_lost_events_total") == 0
    assert value(d, "outbox_events_released_total") == 0
    assert value(d, "outbox_reconnects_total") == 0
    info = [ls for (n, ls) in d if n == "outbox_drainer_info"]
    assert len(info) == 1 and ("topics", CRAWL_RESULT_CREATED) in info[0], info

    # ---- the queue state, from the web process
    with override_settings(OUTBOX=METRICS_ON):
        q, q_names = scrape(f"{live_server.url}/outbox/metrics")
    missing = [name for name in documented("Queue state") if name not in q_names]
    assert not missing, f"documented queue-state metrics not exported: {missing}"
    assert value(q, "outbox_database_up") == 1
    assert value(q, "outbox_events", status="done", **topic) == done
    assert value(q, "outbox_events", status="failed", **topic) == GONE
    assert value(q, "outbox_events", status="pending", **topic) == 0
    assert value(q, "outbox_events", status="pending", topic=STOCK_LEVEL_COUNTED) == 1
    assert value(q, "outbox_events_leased", **topic) == 0
    assert value(q, "outbox_lag_seconds", **topic) == 0
    assert 0 <= value(q, "outbox_lag_seconds", topic=STOCK_LEVEL_COUNTED) < 300
    assert value(q, "outbox_drainers") == 1
    assert value(q, "outbox_topic_drainers", **topic) == 1
    assert value(q, "outbox_topic_drainers", topic=STOCK_LEVEL_COUNTED) == 0
    assert value(q, "outbox_events_unhandled", topic=STOCK_LEVEL_COUNTED) == 1
    assert value(q, "outbox_events_unhandled", **topic) == 0
    assert value(q, "outbox_orphaned_leases") == 0
    assert value(q, "outbox_xmin_age_transactions") >= 0
    assert value(q, "outbox_oldest_transaction_age_seconds") >= 0
    assert 0 <= value(q, "outbox_table_dead_ratio") <= 1
    assert value(q, "outbox_table_dead_rows") >= 0
    assert 0 < value(q, "outbox_oldest_done_age_seconds") < 600
    trigger = {"table": "pricing_crawlresult", "trigger": "outbox_crawl_result"}
    assert value(q, "outbox_trigger_installed", **trigger) == 1
    assert value(q, "outbox_trigger_enabled", **trigger) == 1
    assert 0 < value(q, "outbox_scrape_query_duration_seconds") < 10

    # ---- the rules use only exported names
    from tests.unit.test_prometheus_rules import metric_names_in_dashboard, metric_names_in_rules

    exported = (
        d_names
        | q_names
        | {f"{n}_total" for n in d_names}
        | {f"{n}_{s}" for n in d_names for s in ("bucket", "count", "sum", "info")}
    )
    unknown = (metric_names_in_rules() | metric_names_in_dashboard()) - exported
    assert not unknown, f"the rules or the dashboard use metrics no endpoint exports: {unknown}"


@override_settings(OUTBOX={"METRICS": True, "METRICS_BASIC_AUTH": "prometheus:s3cret", "METRICS_ALLOWED_IPS": []})
def test_the_queue_endpoint_wants_its_credentials(live_server: LiveServer) -> None:
    url = f"{live_server.url}/outbox/metrics"
    code, challenge = refusal(url)
    assert code == 401 and challenge.startswith("Basic "), (code, challenge)
    assert refusal(url, {"Authorization": "Basic " + b64encode(b"prometheus:guess").decode()})[0] == 401
    samples, _ = scrape(url, {"Authorization": "Basic " + b64encode(b"prometheus:s3cret").decode()})
    assert value(samples, "outbox_database_up") == 1


def test_the_queue_endpoint_is_off_by_default(live_server: LiveServer) -> None:
    assert refusal(f"{live_server.url}/outbox/metrics")[0] == 404
