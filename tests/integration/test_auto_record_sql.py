"""The handler's SQL criteria agree with should_auto_record, its reference, on every case.

A generated table: every source x confidence x price, under several configs, each
result on a product of its own (so the per-product rules, stale and unchanged price,
stay out of it). The values the CHECK constraints now refuse (NaN, infinities,
confidence outside 0..1) are in it too, as rows written before those constraints:
the test drops the constraints inside its transaction, which is rolled back.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import NamedTuple

import pytest
from django.db import connection

from outbox.handlers import Event
from outbox.models import OutboxEvent
from pricing.auto_record import AutoRecordConfig, override_config, record_batch, should_auto_record
from tests.factories import make_product

pytestmark = pytest.mark.django_db

SOURCES = ("html_ml", "html_regex", "HTML_ML")
#: As PostgreSQL float8 literals; float() reads each the same.
CONFIDENCES = ("NaN", "-Infinity", "-0.01", "0", "0.5", "0.8499", "0.85", "0.9", "1", "1.0001", "Infinity")
#: As numeric literals (None: NULL); numeric(12, 2) holds no infinity.
PRICES = (None, "NaN", "-3", "0", "0.01", "19.99", "9999999999.99")
CONFIGS = {
    "default": AutoRecordConfig(),
    "disabled": AutoRecordConfig(enabled=False),
    "threshold 0": AutoRecordConfig(min_confidence=0.0),
    "threshold 1": AutoRecordConfig(min_confidence=1.0),
    "two sources": AutoRecordConfig(allowed_sources=frozenset({"html_ml", "html_regex"})),
    "no skip of unchanged": AutoRecordConfig(skip_unchanged_price=False),
}


class Case(NamedTuple):
    source: str
    confidence: float
    price: Decimal | None


def insert_case(product_id: int, source: str, confidence: str, price: str | None) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
            "VALUES (%s, %s, %s::numeric, 'EUR', %s::float8) RETURNING id::text",
            [product_id, source, price, confidence],
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_sql_criteria_decide_as_should_auto_record_on_every_case(name: str) -> None:
    config = CONFIGS[name]
    with connection.cursor() as cursor:  # rows as written before the CHECK constraints
        cursor.execute(
            "ALTER TABLE pricing_crawlresult DROP CONSTRAINT pricing_cr_confidence_0_1, "
            "DROP CONSTRAINT pricing_cr_price_not_nan"
        )
    cases: dict[str, Case] = {}
    for source, confidence, price in itertools.product(SOURCES, CONFIDENCES, PRICES):
        result_id = insert_case(make_product().id, source, confidence, price)
        cases[result_id] = Case(source, float(confidence), None if price is None else Decimal(price))
    events = [
        Event(e.id, e.topic, e.key, None, 1, e.created_at) for e in OutboxEvent.objects.filter(key__in=list(cases))
    ]
    assert len(events) == len(cases), "every result has its event"

    with override_config(config):
        handled = record_batch(events)
        expected = {}
        for result_id, case in cases.items():
            decision = should_auto_record(case, config)
            expected[result_id] = ("recorded" if decision.record else "skipped", decision.reason)

    assert not handled.failed, handled.failed
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id::text, history_record_status, history_record_reason FROM pricing_crawlresult "
            "WHERE id::text = ANY(%s)",
            [list(cases)],
        )
        decided = {result_id: (status, reason) for result_id, status, reason in cursor.fetchall()}
    disagree = {cases[r]: (decided[r], expected[r]) for r in cases if decided[r] != expected[r]}
    assert not disagree, f"{len(disagree)} of {len(cases)} cases (case: (SQL, reference)): {list(disagree.items())[:5]}"
    reasons = {reason for _, reason in expected.values()}
    if name == "default":  # the table reaches every reason the criteria have
        assert reasons == {"eligible", "source_not_allowed", "invalid_confidence", "low_confidence", "invalid_price"}
