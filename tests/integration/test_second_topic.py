"""A second topic (tests/stockapp) next to pricing: the extension point the README documents.

The stock app adds a model with ``outbox_trigger`` in ``Meta.triggers``, its own
migration and a handler registered in ``AppConfig.ready()``; these tests show its
events and pricing's drained together by one drainer, and that ``outbox`` itself
needed no change for it.
"""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import Event, registry
from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, PriceHistory
from tests.factories import make_product, make_result
from tests.stockapp.handlers import reorder_if_low
from tests.stockapp.models import STOCK_LEVEL_COUNTED, ReorderRequest, StockLevel

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_stock_bulk_insert_writes_one_event_per_row_on_its_topic() -> None:
    levels = StockLevel.objects.bulk_create(
        [StockLevel(sku="A-1", warehouse="north", quantity=3), StockLevel(sku="B-2", warehouse="south", quantity=40)]
    )
    events = {e.key: e for e in OutboxEvent.objects.all()}
    assert set(events) == {str(level.id) for level in levels}
    event = events[str(levels[0].id)]
    assert event.topic == STOCK_LEVEL_COUNTED
    assert event.payload == {"sku": "A-1", "warehouse": "north", "quantity": 3}


@pytest.mark.django_db(transaction=True)
def test_one_drainer_handles_both_topics_in_one_batch() -> None:
    assert registry.get(STOCK_LEVEL_COUNTED) is not None, "StockAppConfig.ready() did not register the handler"
    result = make_result(make_product(), price=Decimal("19.99"))
    low = StockLevel.objects.create(sku="A-1", warehouse="north", quantity=3)
    StockLevel.objects.create(sku="B-2", warehouse="south", quantity=40)
    topics = sorted(OutboxEvent.objects.values_list("topic", flat=True))
    assert topics == [CRAWL_RESULT_CREATED, STOCK_LEVEL_COUNTED, STOCK_LEVEL_COUNTED]

    drainer = Drainer(DrainerConfig.from_settings(batch_size=10))
    try:
        total = drainer.drain()
    finally:
        drainer.close()

    assert (total.claimed, total.done, total.retried, total.failed) == (3, 3, 0, 0), total
    assert total.outcomes == {"recorded": 1, "duplicates": 0, "skipped": 0, "reordered": 1, "enough": 1}
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"done"}
    assert list(PriceHistory.objects.values_list("crawl_result_id", flat=True)) == [result.id]
    reorder = ReorderRequest.objects.get()
    assert (reorder.stock_level_id, reorder.sku, reorder.quantity) == (low.id, "A-1", 47)


@pytest.mark.django_db(transaction=True)
def test_stock_handler_replayed_writes_nothing_twice() -> None:
    """At least once in, exactly once in effect: a second run of one event changes nothing."""
    level = StockLevel.objects.create(sku="A-1", warehouse="north", quantity=0)
    event = OutboxEvent.objects.get()
    claimed = Event(event.id, event.topic, event.key, event.payload, 1, event.created_at)
    assert reorder_if_low(claimed) == "reordered"
    assert reorder_if_low(claimed) == "reordered"
    assert ReorderRequest.objects.filter(stock_level=level).count() == 1


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_outbox_imports_no_domain_app() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] in {"pricing", "tests"}
        )
        for path in sorted((ROOT / "outbox").rglob("*.py"))
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}, f"outbox must not import a domain app: {offenders}"


def test_outbox_knows_nothing_of_the_stock_topic() -> None:
    mentions = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "outbox").rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".sql", ".html"}
        and any(name in path.read_text(encoding="utf-8") for name in ("stockapp", STOCK_LEVEL_COUNTED, "StockLevel"))
    ]
    assert mentions == [], f"outbox files mention the stock app: {mentions}"


def test_stock_migration_builds_on_outbox_and_adds_no_outbox_migration() -> None:
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    assert ("outbox", "0001_initial") in graph.node_map[("stockapp", "0001_initial")].parents
    for key in graph.leaf_nodes("outbox"):
        plan = graph.forwards_plan(key)
        assert not [k for k in plan if k[0] == "stockapp"], f"an outbox migration depends on the stock app: {plan}"


@pytest.mark.django_db
def test_the_stock_trigger_is_installed_by_its_own_migration() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, tgenabled FROM pg_trigger "
            "WHERE tgrelid = 'stockapp_stocklevel'::regclass AND NOT tgisinternal"
        )
        triggers = cursor.fetchall()
    assert len(triggers) == 1 and triggers[0][1] == "O", f"expected one enabled outbox trigger, got {triggers}"
