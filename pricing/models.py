"""The domain: products, what the crawler saw, and the price history it feeds.

``CrawlResult`` carries the outbox trigger in ``Meta.triggers``: any insert, by
``save()``, ``bulk_create()`` or plain SQL from another program, writes its outbox
event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django.contrib.postgres.functions import RandomUUID
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from outbox.triggers import outbox_trigger

#: The topic of the event each new CrawlResult writes.
CRAWL_RESULT_CREATED = "pricing.crawl_result.created"
#: The largest price numeric(12, 2) holds. PostgreSQL sorts NaN above every number,
#: so ``price <= MAX_PRICE`` also refuses NaN (numeric(12, 2) cannot hold an infinity).
MAX_PRICE = Decimal("9999999999.99")
#: crawled_at must be a finite instant that Python's datetime can hold (years 1 to
#: 9999), with a day's margin so that it can be shown in any time zone.
CRAWLED_AT_RANGE = (dt.datetime(1, 1, 2, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, tzinfo=dt.UTC))


class Product(models.Model):
    sku = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=255)
    url = models.URLField(max_length=2000, blank=True, default="", db_default="")

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class HistoryRecordStatus(models.TextChoices):
    #: A PriceHistory row was written for this result.
    RECORDED = "recorded", "Recorded"
    #: Not written: the result already has history, or its price equals the latest.
    DUPLICATE = "duplicate", "Duplicate"
    #: Not written: the criteria said no (disabled, source, invalid or low confidence, price, stale).
    SKIPPED = "skipped", "Skipped"
    #: The handler failed max_attempts times; see the outbox event's last_error.
    FAILED = "failed", "Failed"


class CrawlResult(models.Model):
    """A price the crawler saw for a product on a page, as its extractor read it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, db_default=RandomUUID(), editable=False)
    # No index of its own: pricing_cr_product_crawled starts with it.
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="crawl_results", db_index=False)
    source = models.CharField(max_length=64, help_text="The extractor, e.g. html_ml.")
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, three capital letters.")
    confidence = models.FloatField(help_text="The extractor's confidence, 0 to 1.")
    crawled_at = models.DateTimeField(default=timezone.now, db_default=Now())
    history_recorded = models.BooleanField(default=False, db_default=False)
    history_recorded_at = models.DateTimeField(null=True, blank=True)
    history_record_status = models.CharField(max_length=16, choices=HistoryRecordStatus.choices, null=True, blank=True)
    history_record_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        # No index on the history_record_* columns: the drainer sets them once per
        # result, and with none of them indexed (and the table's fill factor,
        # migration 0003) that update is HOT, writing no index entry at all.
        indexes = [
            models.Index(fields=["product", "crawled_at"], name="pricing_cr_product_crawled"),
            # Newest-first admin list and the backfill's crawl-order selection.
            models.Index(fields=["crawled_at", "id"], name="pricing_cr_crawled_id"),
        ]
        # The three value checks came after rows were written (migrations 0005, 0006:
        # added NOT VALID, then validated), so rows from before may still break them:
        # the criteria and the admin do not rely on them.
        constraints = [
            models.CheckConstraint(condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="pricing_cr_currency_iso"),
            # From 0 to 1; NaN and the infinities fail the range (NaN sorts above every number).
            models.CheckConstraint(
                condition=models.Q(confidence__gte=0, confidence__lte=1), name="pricing_cr_confidence_0_1"
            ),
            models.CheckConstraint(condition=models.Q(price__lte=MAX_PRICE), name="pricing_cr_price_not_nan"),
            models.CheckConstraint(
                condition=models.Q(crawled_at__gt=CRAWLED_AT_RANGE[0], crawled_at__lt=CRAWLED_AT_RANGE[1]),
                name="pricing_cr_crawled_at_finite",
            ),
        ]
        triggers = [
            outbox_trigger(
                topic=CRAWL_RESULT_CREATED,
                key="id",
                # One product's results are handled one at a time, in outbox order.
                order_key="product",
                payload_fields=("product", "source", "price", "currency", "confidence", "crawled_at"),
                name="outbox_crawl_result",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.price} {self.currency} for product {self.product_id}"


class PriceHistory(models.Model):
    """A recorded price. One per CrawlResult at most: crawl_result is the idempotency key."""

    # No index of its own: pricing_ph_product_latest starts with it.
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="price_history", db_index=False)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    source = models.CharField(max_length=64)
    crawled_at = models.DateTimeField(help_text="When the price was seen (the result's crawled_at).")
    recorded_at = models.DateTimeField(default=timezone.now, db_default=Now())
    crawl_result = models.OneToOneField(CrawlResult, on_delete=models.CASCADE, related_name="price_history")

    class Meta:
        verbose_name_plural = "price history"
        ordering = ["-recorded_at", "-id"]
        indexes = [
            # The handler's "latest recorded price of this product" lookup.
            models.Index(
                models.F("product"),
                models.F("crawled_at").desc(),
                models.F("id").desc(),
                name="pricing_ph_product_latest",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.price} {self.currency} for product {self.product_id}"
