"""The pricing handler end to end through a Drainer: every outcome and reason on the result."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import call_command

from outbox.drainer import Drainer, DrainerConfig
from outbox.models import OutboxEvent
from pricing.auto_record import AutoRecordConfig, override_config
from pricing.models import CrawlResult, PriceHistory
from tests.factories import make_product, make_result

pytestmark = pytest.mark.django_db(transaction=True)


def drain() -> None:
    drainer = Drainer(DrainerConfig.from_settings())
    try:
        drainer.drain()
    finally:
        drainer.close()


def outcome(result: CrawlResult) -> tuple[str | None, str]:
    result.refresh_from_db()
    return result.history_record_status, result.history_record_reason


def test_eligible_result_is_recorded() -> None:
    result = make_result(price=Decimal("19.99"), currency="USD")
    drain()
    assert outcome(result) == ("recorded", "eligible")
    result.refresh_from_db()
    assert result.history_recorded and result.history_recorded_at is not None
    history = PriceHistory.objects.get()
    assert (history.crawl_result_id, history.price, history.currency, history.source, history.product_id) == (
        result.id,
        Decimal("19.99"),
        "USD",
        "html_ml",
        result.product_id,
    )
    assert history.crawled_at == result.crawled_at
    assert OutboxEvent.objects.get().status == "done"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"source": "html_regex"}, "source_not_allowed"),
        ({"confidence": 0.5}, "low_confidence"),
        ({"price": None}, "invalid_price"),
        ({"price": Decimal("0")}, "invalid_price"),
        ({"price": Decimal("-3")}, "invalid_price"),
    ],
)
def test_criteria_skip_with_reason(fields: dict[str, object], reason: str) -> None:
    result = make_result(**fields)
    drain()
    assert outcome(result) == ("skipped", reason)
    assert PriceHistory.objects.count() == 0
    assert OutboxEvent.objects.get().status == "done"


def test_disabled_config_skips() -> None:
    result = make_result()
    with override_config(AutoRecordConfig(enabled=False)):
        drain()
    assert outcome(result) == ("skipped", "disabled")


def test_unchanged_price_is_a_duplicate_and_a_change_is_recorded() -> None:
    product = make_product()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    first = make_result(product, price=Decimal("5.00"), crawled_at=t0)
    same = make_result(product, price=Decimal("5.00"), crawled_at=t0 + dt.timedelta(hours=1))
    changed = make_result(product, price=Decimal("6.00"), crawled_at=t0 + dt.timedelta(hours=2))
    back = make_result(product, price=Decimal("5.00"), crawled_at=t0 + dt.timedelta(hours=3))
    drain()
    assert [outcome(r) for r in (first, same, changed, back)] == [
        ("recorded", "eligible"),
        ("duplicate", "unchanged_price"),
        ("recorded", "eligible"),
        ("recorded", "eligible"),
    ]


def test_unchanged_price_is_recorded_when_skip_unchanged_price_is_off() -> None:
    product = make_product()
    a = make_result(product, price=Decimal("5.00"))
    b = make_result(product, price=Decimal("5.00"))
    with override_config(AutoRecordConfig(skip_unchanged_price=False)):
        drain()
    assert [outcome(r)[0] for r in (a, b)] == ["recorded", "recorded"]


def test_same_price_in_another_currency_is_recorded() -> None:
    product = make_product()
    a = make_result(product, price=Decimal("5.00"), currency="EUR")
    b = make_result(product, price=Decimal("5.00"), currency="USD")
    drain()
    assert [outcome(r)[0] for r in (a, b)] == ["recorded", "recorded"]


def test_result_that_already_has_history_is_a_duplicate() -> None:
    result = make_result()
    drain()
    # Replay its event (what outbox_backfill or a manual retry does).
    OutboxEvent.objects.create(
        topic="pricing.crawl_result.created", key=str(result.id), payload=OutboxEvent.objects.get().payload
    )
    drain()
    assert outcome(result) == ("duplicate", "already_recorded")
    assert PriceHistory.objects.count() == 1


def test_older_result_arriving_after_a_newer_one_is_skipped_as_stale() -> None:
    product = make_product()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    newer = make_result(product, price=Decimal("7.00"), crawled_at=t0 + dt.timedelta(minutes=5))
    drain()
    older = make_result(product, price=Decimal("6.00"), crawled_at=t0)
    drain()
    assert outcome(newer) == ("recorded", "eligible")
    assert outcome(older) == ("skipped", "stale")
    assert list(PriceHistory.objects.values_list("price", flat=True)) == [Decimal("7.00")]


def test_within_one_batch_results_are_taken_in_crawl_order() -> None:
    product = make_product()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    late = make_result(product, price=Decimal("2.00"), crawled_at=t0 + dt.timedelta(minutes=1))
    early = make_result(product, price=Decimal("1.00"), crawled_at=t0)
    drain()
    # Inserted late-first, but crawl order decides: both recorded, latest is the late one.
    assert outcome(early) == ("recorded", "eligible") and outcome(late) == ("recorded", "eligible")
    latest = PriceHistory.objects.order_by("-crawled_at").first()
    assert latest is not None and latest.price == Decimal("2.00")


def test_results_with_the_same_crawled_at_are_taken_in_outbox_order() -> None:
    product = make_product()
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    a = make_result(product, price=Decimal("3.00"), crawled_at=t0)
    b = make_result(product, price=Decimal("3.00"), crawled_at=t0)
    c = make_result(product, price=Decimal("4.00"), crawled_at=t0)
    drain()
    assert [outcome(r) for r in (a, b, c)] == [
        ("recorded", "eligible"),
        ("duplicate", "unchanged_price"),
        ("recorded", "eligible"),
    ]


def test_drain_outbox_once_through_call_command(capsys: pytest.CaptureFixture[str]) -> None:
    product = make_product()
    for i in range(25):
        make_result(product, price=Decimal(i + 1))
    make_result(product, source="other")
    call_command("drain_outbox", "--once", "--batch-size", "10")
    assert "drained claimed=26 done=26 retried=0 failed=0" in capsys.readouterr().out
    assert PriceHistory.objects.count() == 25
    assert not OutboxEvent.objects.exclude(status="done").exists()
    assert CrawlResult.objects.filter(history_record_status__isnull=True).count() == 0
