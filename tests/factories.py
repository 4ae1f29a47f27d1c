"""Test data that sets only what matters to the test."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from django.db import connection

from outbox.models import OutboxEvent
from pricing.models import CrawlResult, Product

_seq = itertools.count(1)


def make_product(**fields: Any) -> Product:
    n = next(_seq)
    fields.setdefault("sku", f"SKU-{n:06d}")  # zero-padded: sorted by sku is creation order
    fields.setdefault("name", f"Product {n}")
    return Product.objects.create(**fields)


def make_result(product: Product | None = None, **fields: Any) -> CrawlResult:
    """A CrawlResult that the default config records (html_ml, 0.95, a positive price)."""
    fields.setdefault("source", "html_ml")
    fields.setdefault("price", Decimal("10.00"))
    fields.setdefault("currency", "EUR")
    fields.setdefault("confidence", 0.95)
    return CrawlResult.objects.create(product=product or make_product(), **fields)


def make_results_sql(product_ids: list[int], count: int, *, price_mod: int = 1000) -> None:
    """Insert ``count`` eligible results over ``product_ids`` in one plain-SQL statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence)
            SELECT (%(products)s::bigint[])[1 + (g %% cardinality(%(products)s::bigint[]))],
                   'html_ml', 1 + (g %% %(mod)s), 'EUR', 0.95
            FROM generate_series(1, %(count)s) AS g
            """,
            {"products": product_ids, "count": count, "mod": price_mod},
        )


def make_event(topic: str = "test.topic", key: str = "k", **fields: Any) -> OutboxEvent:
    return OutboxEvent.objects.create(topic=topic, key=key, **fields)
