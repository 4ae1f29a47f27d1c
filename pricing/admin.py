"""Pricing in the Django admin: crawl results with their outbox events, and price history.

Both are read-only: results are what the crawler saw and history is what the
outbox handler wrote; editing either by hand would make them disagree. Both tables
grow without bound, so the changelists use the outbox's ``EstimatedCountPaginator``
(no ``COUNT(*)`` of the whole table), no facet counts, and filters whose choices
never come from a ``DISTINCT`` over the table.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_field
from django.db import connection
from django.db.models import Case, F, Q, QuerySet, TextField, When
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from outbox.admin import STATUS_STYLES
from outbox.admin_display import register_admin_url, when, when_full
from outbox.admin_lists import EstimatedCountPaginator, ShownFiltersOnly, parse_id
from outbox.models import OutboxEvent
from pricing.auto_record import get_config, queries
from pricing.models import CRAWL_RESULT_CREATED, CRAWLED_AT_RANGE, CrawlResult, PriceHistory, Product
from pricing.services import REPLAYABLE, backfill

#: Rows sampled for the source filter's choices (plus the column statistics).
SOURCE_SAMPLE = 10_000
#: Up to this many products, the product filter lists them all.
PRODUCT_CHOICES_MAX = 100
ESTIMATED_CHANGE_LIST = "admin/outbox/estimated_change_list.html"


class ReadOnlyAdmin(ShownFiltersOnly, admin.ModelAdmin):
    """View-only rows; large-table settings; only the shown filters in the URL."""

    change_list_template = ESTIMATED_CHANGE_LIST
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute(queries.crawl_result_sources, {"sample": SOURCE_SAMPLE})
            sources = {row[0] for row in cursor.fetchall()}
        sources |= set(get_config().allowed_sources)
        selected = self.value()
        if selected:
            sources.add(selected)
        return [(source, source) for source in sorted(sources)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(source=self.value()) if self.value() else queryset


class ProductFilter(admin.SimpleListFilter):
    """Every product while there are few; else only the chosen one (pick it from a row's link)."""

    title = "product"
    parameter_name = "product"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        products = list(Product.objects.order_by("sku").values_list("id", "sku")[: PRODUCT_CHOICES_MAX + 1])
        if len(products) <= PRODUCT_CHOICES_MAX:
            return [(str(pk), sku) for pk, sku in products]
        selected = parse_id(self.value())
        if selected is not None:
            product = Product.objects.filter(pk=selected).values_list("id", "sku").first()
            if product:
                return [(str(product[0]), product[1])]
        return []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        product_id = parse_id(self.value())
        return queryset.none() if product_id is None else queryset.filter(product_id=product_id)


def _result_admin_url(event: Any) -> str | None:
    """An outbox event's page links to its CrawlResult (the event's key is the result's id)."""
    try:
        return reverse("admin:pricing_crawlresult_change", args=[uuid.UUID(event.key)])
    except ValueError:
        return None


register_admin_url(CRAWL_RESULT_CREATED, _result_admin_url, label="crawl result")


def _events_url(result_id: uuid.UUID) -> str:
    query = urlencode({"key": str(result_id), "topic": CRAWL_RESULT_CREATED})
    return f"{reverse('admin:outbox_outboxevent_changelist')}?{query}"


@admin.register(CrawlResult)
class CrawlResultAdmin(ReadOnlyAdmin):
    list_display = (
        "short_id",
        "product",
        "source",
        "price_shown",
        "currency",
        "confidence",
        "crawled_at_shown",
        "history_record_status",
        "history_record_reason",
        "outbox_events",
    )
    list_display_links = ("short_id",)
    list_filter = ("history_record_status", SourceFilter)
    list_select_related = ("product",)
    search_fields = ("id",)
    search_help_text = "An exact CrawlResult id or product SKU."
    # Newest first: the primary key is a random UUID, so crawled_at is the order;
    # filtered by status it reads pricing_cr_record_status (see docs/operations.md).
    ordering = ("-crawled_at",)
    sortable_by = ("crawled_at_shown",)
    actions = ("enqueue_again",)
    readonly_fields = ("price_shown", "crawled_at_full", "history_recorded_at_full", "outbox_event_list")
    fieldsets = (
        (None, {"fields": ("id", "product", "source", "price_shown", "currency", "confidence", "crawled_at_full")}),
        (
            "Recording",
            {
                "fields": (
                    "history_recorded",
                    "history_recorded_at_full",
                    "history_record_status",
                    "history_record_reason",
                    "outbox_event_list",
                )
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[CrawlResult]:
        # crawled_at as a datetime only where Python can hold it, and as PostgreSQL
        # prints it: a row from before the CHECK constraints (migration 0005) may hold
        # 'infinity', which psycopg cannot load, and one such row broke the whole list.
        low, high = CRAWLED_AT_RANGE
        readable = Q(crawled_at__gt=low, crawled_at__lt=high)
        return (
            super()
            .get_queryset(request)
            .defer("crawled_at")
            .annotate(
                crawled_at_value=Case(When(readable, then=F("crawled_at")), default=None),
                crawled_at_text=Cast("crawled_at", TextField()),
            )
        )

    @admin.display(description="price", ordering="price")
    def price_shown(self, obj: CrawlResult) -> str:
        # A NaN price (a row from before the CHECK constraints) cannot be formatted as a number.
        if obj.price is not None and not obj.price.is_finite():
            return str(obj.price)
        return display_for_field(obj.price, CrawlResult._meta.get_field("price"), self.get_empty_value_display())

    @admin.display(description="crawled", ordering="crawled_at")
    def crawled_at_shown(self, obj: CrawlResult) -> str:
        value = obj.crawled_at_value  # type: ignore[attr-defined]
        return obj.crawled_at_text if value is None else when(value)  # type: ignore[attr-defined]

    @admin.display(description="crawled at")
    def crawled_at_full(self, obj: CrawlResult) -> str:
        value = obj.crawled_at_value  # type: ignore[attr-defined]
        return obj.crawled_at_text if value is None else when_full(value)  # type: ignore[attr-defined]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[CrawlResult], search_term: str
    ) -> tuple[QuerySet[CrawlResult], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(product__sku=term), False

    @admin.display(description="id")
    def short_id(self, obj: CrawlResult) -> str:
        return format_html('<span title="{}">{}…</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="history recorded at")
    def history_recorded_at_full(self, obj: CrawlResult) -> str:
        return when_full(obj.history_recorded_at)

    @admin.display(description="outbox")
    def outbox_events(self, obj: CrawlResult) -> str:
        # A link, not a query per row: the outbox list filtered by this key (hash index).
        return format_html('<a href="{}">events</a>', _events_url(obj.pk))

    @admin.display(description="outbox events")
    def outbox_event_list(self, obj: CrawlResult) -> str:
        events = OutboxEvent.objects.filter(topic=CRAWL_RESULT_CREATED, key=str(obj.pk)).order_by("id")
        rows = [
            (
                reverse("admin:outbox_outboxevent_change", args=[event.pk]),
                event.pk,
                STATUS_STYLES.get(event.status, ""),
                event.get_status_display(),
                event.attempts,
            )
            for event in events[:20]
        ]
        if not rows:
            return "none (purged after the retention period, or never written)"
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 (a constant)
            '<a href="{}">event #{}</a> <span class="outbox-badge {}">{}</span> after {} attempt(s)',
            rows,
        )

    def has_enqueue_permission(self, request: HttpRequest) -> bool:
        # Enqueueing writes outbox events: the outbox's own "add" permission.
        return request.user.has_perm("outbox.add_outboxevent")

    @admin.action(
        description="Enqueue selected results again (unprocessed, failed or skipped)", permissions=["enqueue"]
    )
    def enqueue_again(self, request: HttpRequest, queryset: QuerySet[CrawlResult]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        result = backfill(ids=ids, statuses=REPLAYABLE)
        level = messages.SUCCESS if result.enqueued else messages.WARNING
        self.message_user(
            request,
            f"Enqueued {result.enqueued:,} event(s); {len(ids) - result.enqueued:,} selected result(s) were "
            "recorded, duplicates or already pending: left alone.",
            level,
        )


@admin.register(PriceHistory)
class PriceHistoryAdmin(ReadOnlyAdmin):
    list_display = ("id", "product_link", "price", "currency", "source", "crawled", "recorded", "result_link")
    list_filter = (ProductFilter,)
    list_select_related = ("product",)
    search_fields = ("product__sku",)
    search_help_text = "An exact product SKU."
    ordering = ("-id",)  # newest recorded first, on the primary key
    sortable_by = ("id",)
    fields = ("product", "price", "currency", "source", "crawled_at_full", "recorded_at_full", "crawl_result")
    readonly_fields = ("crawled_at_full", "recorded_at_full")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PriceHistory], search_term: str
    ) -> tuple[QuerySet[PriceHistory], bool]:
        term = search_term.strip()
        return (queryset.filter(product__sku=term), False) if term else (queryset, False)

    @admin.display(description="product")
    def product_link(self, obj: PriceHistory) -> str:
        url = f"{reverse('admin:pricing_pricehistory_changelist')}?{urlencode({'product': obj.product_id})}"
        return format_html('<a href="{}" title="Only this product">{}</a>', url, obj.product)

    @admin.display(description="crawled")
    def crawled(self, obj: PriceHistory) -> str:
        return when(obj.crawled_at)

    @admin.display(description="recorded")
    def recorded(self, obj: PriceHistory) -> str:
        return when(obj.recorded_at)

    @admin.display(description="crawled at")
    def crawled_at_full(self, obj: PriceHistory) -> str:
        return when_full(obj.crawled_at)

    @admin.display(description="recorded at")
    def recorded_at_full(self, obj: PriceHistory) -> str:
        return when_full(obj.recorded_at)

    @admin.display(description="crawl result")
    def result_link(self, obj: PriceHistory) -> str:
        url = reverse("admin:pricing_crawlresult_change", args=[obj.crawl_result_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.crawl_result_id)[:8])


@admin.register(Product)
class ProductAdmin(ShownFiltersOnly, admin.ModelAdmin):
    list_display = ("sku", "name", "history_link")
    search_fields = ("=sku", "name")
    ordering = ("sku",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    @admin.display(description="price history")
    def history_link(self, obj: Product) -> str:
        url = f"{reverse('admin:pricing_pricehistory_changelist')}?{urlencode({'product': obj.pk})}"
        return format_html('<a href="{}">history</a>', url)
