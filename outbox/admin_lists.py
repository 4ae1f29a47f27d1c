"""Admin list building blocks for large tables, used by the outbox's admin and by
any app's own (pricing's CrawlResult list uses them).

* ``parse_id``: a URL value as a row id, or None.
* ``ShownFiltersOnly``: only the list's own filters may be typed into its URL.
* ``EstimatedCountPaginator``: a count that never reads every row of a large table.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from outbox.sql import queries

#: The largest bigint: a longer number is no row's id (and PostgreSQL refuses it).
BIGINT_MAX = 2**63 - 1


def parse_id(text: str | None) -> int | None:
    """``text`` as a row id, or None when it cannot be one.

    ASCII digits only: ``str.isdigit()`` also accepts ``²`` and other digits that
    ``int()`` refuses; and within bigint, or the query fails instead of matching nothing.
    """
    if not text or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= BIGINT_MAX else None


class ShownFiltersOnly:
    """Only the filters the list shows may be typed into its URL.

    Django lets anyone who may view a list filter it by any lookup on its own
    columns (``?key__regex=``, ``?payload__contains=``): on a large table each is a
    scan of every row. Here ``lookup_allowed`` accepts the parameters of the list's
    own filters and ``extra_lookups`` (links from other pages) and nothing else; the
    admin answers anything else with 400 Bad Request. So does a NUL character in a
    value, which no PostgreSQL text can hold (the query would fail).
    """

    #: Lookups allowed besides the list filters' own, e.g. for links from other pages.
    extra_lookups: tuple[str, ...] = ()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return "\x00" not in str(value) and lookup in self.allowed_lookups(request)

    def allowed_lookups(self, request: HttpRequest | None) -> set[str]:
        allowed = set(self.extra_lookups)
        filters = self.get_list_filter(request) if request is not None else self.list_filter  # type: ignore[attr-defined]
        for item in filters:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                allowed.add(item.parameter_name)
            else:
                # A field's own filter (choices, boolean): exact value or empty.
                field = item[0] if isinstance(item, list | tuple) else item
                allowed |= {f"{field}__exact", f"{field}__isnull"}
        return allowed


def estimated_rows(table: str, using: str) -> int | None:
    """The planner's estimate of a table's rows, or None before its first ANALYZE."""
    with connections[using].cursor() as cursor:
        cursor.execute(queries.table_estimated_rows, {"table": table})
        row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


class EstimatedCount(int):
    """A row count that is an estimate: an int that prints as ``~1,234,567``, so every
    place the admin shows the count (``N results``, ``Select all N``) says so."""

    def __str__(self) -> str:
        return f"~{int(self):,}"


class EstimatedCountPaginator(Paginator):
    """A paginator that never counts every row of a large table.

    * Unfiltered, on a table the planner estimates at more than
      ``exact_table_limit`` rows: that estimate (``pg_class.reltuples``), free;
      at most that many: an exact count (the primary key's index, milliseconds).
    * Filtered (or never analyzed): a capped count: ``SELECT count(*) FROM (... LIMIT limit + 1)``,
      which stops after ``limit + 1`` rows. Below the cap it is exact; at the cap
      the planner's estimate of the filtered query (``EXPLAIN``) is used instead.

    ``estimated`` says which happened, and an estimate is an ``EstimatedCount``.
    Pages past the end of an over-estimate are simply empty.
    """

    #: Unfiltered tables up to this many rows are counted exactly (as outbox_stats does).
    exact_table_limit = 200_000
    #: A filtered list (a filter may match few rows of a large table) stops counting here.
    exact_count_limit = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.estimated = False

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return super().count
        limit = self.exact_count_limit
        if not qs.query.where:
            estimate = estimated_rows(qs.model._meta.db_table, qs.db)
            if estimate is not None and estimate > self.exact_table_limit:
                self.estimated = True
                return EstimatedCount(estimate)
            if estimate is not None:
                return qs.order_by().count()
        capped = qs.order_by()[: limit + 1].count()
        if capped <= limit:
            return capped
        self.estimated = True
        return EstimatedCount(max(self._planner_estimate(qs), capped))

    @staticmethod
    def _planner_estimate(qs: QuerySet[Any]) -> int:
        plan = json.loads(qs.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])

    def validate_number(self, number: Any) -> int:
        if not self.estimated:
            return super().validate_number(number)
        # An estimate may overshoot: a page past the real end is empty, not an error.
        try:
            value = int(number)
        except (TypeError, ValueError):
            return super().validate_number(number)
        return max(value, 1)
