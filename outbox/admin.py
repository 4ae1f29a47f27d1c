"""The outbox in the Django admin: see events, and steer them with permissioned actions.

Rows are read-only: ``status`` is a state machine that the drainers drive, and a
hand-edited row would break it (a ``done`` event set back to ``pending`` by hand
keeps its lease columns, an attempt count...). What an operator may do is an
action, each behind its own permission, filtered to the states it is legal in,
run through ``outbox.services`` (the same code as the commands), and reported
with how many rows it changed:

=============================  =========================  =====================
action                         legal for                  permission
=============================  =========================  =====================
Retry selected failed events   failed                     outbox.retry_outboxevent
Mark selected as failed        pending                    outbox.fail_outboxevent
Delete selected done events    done                       outbox.delete_outboxevent
=============================  =========================  =====================

A staff user with only ``outbox.view_outboxevent`` sees the list and the details
and no action at all.

The changelist stays fast on tens of millions of rows. Per page load it runs: one
query on the ``outbox_stats`` view (the summary above the list and the topic
filter's choices; pending and failed rows come from partial indexes, done rows
are estimated on a large table), one bounded count (``EstimatedCountPaginator``:
at most ``exact_count_limit + 1`` index entries, else the planner's estimate),
and the page itself (``ORDER BY id DESC LIMIT 100`` on the primary key, or on
the partial index of the filtered status). There is no ``COUNT(*)`` of the
whole table, no ``SELECT DISTINCT topic``, no facet counts, and sorting is by
id only. docs/operations.md has the measured times on 1,000,000 rows.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator

from outbox import chart, services
from outbox.admin_display import row_admin_link, when, when_full
from outbox.admin_lists import EstimatedCountPaginator, ShownFiltersOnly, parse_id
from outbox.handlers import registry
from outbox.models import EventStatus, OutboxEvent

#: Status -> the CSS class of its badge and summary box.
STATUS_STYLES: dict[str, str] = {
    EventStatus.PENDING: "outbox-pending",
    EventStatus.DONE: "outbox-done",
    EventStatus.FAILED: "outbox-failed",
}
#: Keys up to this long are shown whole in the list; longer ones (UUIDs) shortened.
KEY_SHOWN = 12
#: The most of an error the list's hover text shows (the event's page shows all of it).
ERROR_TITLE_CHARS = 2000
#: Sent by the buttons on an event's page, so the action returns to that page.
RETURN_TO_OBJECT = "_outbox_return_to"


def _status_for(request: HttpRequest) -> services.OutboxStatus:
    """services.status(), once per request (the summary and the topic filter share it)."""
    cached = getattr(request, "_outbox_status", None)
    if cached is None:
        cached = services.status()
        request._outbox_status = cached  # type: ignore[attr-defined]
    return cached


class TopicFilter(admin.SimpleListFilter):
    """Topics from the stats view and the handler registry: never a DISTINCT over the table."""

    title = "topic"
    parameter_name = "topic"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        topics = set(_status_for(request).topics()) | set(registry.topics())
        return [(topic, topic) for topic in sorted(topics)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        value = self.value()
        return queryset.filter(topic=value) if value else queryset


class HasErrorFilter(admin.SimpleListFilter):
    """Events with a last_error (served by the partial index outbox_event_error_idx)."""

    title = "has error"
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        if self.value() == "yes":
            return queryset.filter(~Q(last_error=""))
        if self.value() == "no":
            return queryset.filter(last_error="")
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ShownFiltersOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "topic",
        "short_key",
        "status_badge",
        "attempts",
        "created",
        "since",
        "short_error",
    )
    list_display_links = ("id",)
    list_filter = ("status", TopicFilter, HasErrorFilter)
    extra_lookups = ("key",)  # the CrawlResult admin links to ?key=<id>&topic=... (the hash index)
    search_fields = ("key",)
    search_help_text = "An exact key (for pricing: a CrawlResult id) or an event id."
    ordering = ("-id",)
    sortable_by = ("id",)  # any other order would sort the whole table
    list_per_page = 100
    list_max_show_all = 500
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would count the table per filter choice
    paginator = EstimatedCountPaginator
    actions = ("retry_events", "mark_events_failed", "delete_done_events")
    fieldsets = (
        (None, {"fields": ("id", "topic", "key", "row", "status_badge", "attempts")}),
        ("Delivery", {"fields": ("available_at_full", "lease", "created_at_full", "processed_at_full")}),
        ("Payload", {"fields": ("payload_pretty",)}),
        ("Last error", {"fields": ("error_full",)}),
    )
    readonly_fields = (
        "id",
        "topic",
        "key",
        "row",
        "status_badge",
        "attempts",
        "available_at_full",
        "lease",
        "created_at_full",
        "processed_at_full",
        "payload_pretty",
        "error_full",
    )

    # ------------------------------------------------------------ permissions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events come from triggers (or outbox_backfill), never by hand

    def has_change_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False  # read-only rows; the actions are the way to change them

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        if obj is not None and obj.status != EventStatus.DONE:
            return False  # a pending or failed event is unfinished work
        return super().has_delete_permission(request, obj)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_outboxevent")

    def has_fail_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.fail_outboxevent")

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 says where the actions are shown (ActionLocation) and deprecates an
        # override without the parameter; 5.2 has no such parameter.
        extra = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **extra)
        # Django's own would load every selected row and cascade; ours deletes done rows only.
        actions.pop("delete_selected", None)
        return actions

    # ------------------------------------------------------------ list

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OutboxEvent], search_term: str
    ) -> tuple[QuerySet[OutboxEvent], bool]:
        """Exact key (the hash index) or id (the primary key); never a LIKE scan."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(key=term)
        event_id = parse_id(term)
        if event_id is not None:
            condition |= Q(id=event_id)
        return queryset.filter(condition), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: OutboxEvent) -> str:
        return format_html(
            '<span class="outbox-badge {}">{}</span>', STATUS_STYLES.get(obj.status, ""), obj.get_status_display()
        )

    @admin.display(description="created")
    def created(self, obj: OutboxEvent) -> str:
        return when(obj.created_at)

    @admin.display(description="since")
    def since(self, obj: OutboxEvent) -> str:
        """Pending: since (or until) when it is claimable; done or failed: when it finished."""
        if obj.status == EventStatus.PENDING:
            return when(obj.available_at)
        return when(obj.processed_at)

    @admin.display(description="key")
    def short_key(self, obj: OutboxEvent) -> str:
        """Long keys (UUIDs) shortened to their start; the whole key on hover and on the event's page."""
        if len(obj.key) <= KEY_SHOWN:
            return obj.key
        return format_html('<span title="{}">{}…</span>', obj.key, obj.key[: KEY_SHOWN - 4])

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        """The first line, cut to the column by CSS; the full text on hover and on the event's page."""
        if not obj.last_error:
            return ""
        # "builtins." says nothing an operator needs, and the column is narrow.
        first_line = obj.last_error.splitlines()[0].removeprefix("builtins.")
        return format_html(
            '<span title="{}">{}</span>',
            Truncator(obj.last_error).chars(ERROR_TITLE_CHARS),
            Truncator(first_line).chars(200),
        )

    @admin.display(description="about")
    def row(self, obj: OutboxEvent) -> str:
        """A link to the row the event is about, where its domain app registered one."""
        link = row_admin_link(obj)
        if link is None:
            return "-"
        url, label = link
        return format_html('<a href="{}" id="outbox-row-link">{} {}</a>', url, label, obj.key)

    # ------------------------------------------------------------ detail

    @admin.display(description="available at")
    def available_at_full(self, obj: OutboxEvent) -> str:
        return when_full(obj.available_at)

    @admin.display(description="created at")
    def created_at_full(self, obj: OutboxEvent) -> str:
        return when_full(obj.created_at)

    @admin.display(description="processed at")
    def processed_at_full(self, obj: OutboxEvent) -> str:
        return when_full(obj.processed_at)

    @admin.display(description="lease")
    def lease(self, obj: OutboxEvent) -> str:
        if obj.locked_by is None:
            return "-"
        if obj.status == EventStatus.PENDING and obj.locked_until is not None:
            return format_html("held by <code>{}</code> until {}", obj.locked_by, when_full(obj.locked_until))
        return format_html("last held by <code>{}</code>", obj.locked_by)

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxEvent) -> str:
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        return format_html('<pre class="outbox-pre">{}</pre>', text)

    @admin.display(description="last error")
    def error_full(self, obj: OutboxEvent) -> str:
        if not obj.last_error:
            return "-"
        return format_html('<pre class="outbox-pre outbox-error">{}</pre>', obj.last_error)

    # ------------------------------------------------------------ views

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        if request.method == "GET":
            context["outbox_summary"] = self._summary(request)
            context["outbox_chart"] = self._chart(request)
        return super().changelist_view(request, extra_context=context)

    def _chart(self, request: HttpRequest) -> dict[str, Any]:
        """The throughput chart (outbox.chart); its span comes from ?chart=, which the list never sees."""
        span = request.GET.get(chart.PARAM, chart.DEFAULT_SPAN)
        if chart.PARAM in request.GET:
            request.GET = request.GET.copy()
            del request.GET[chart.PARAM]
        if span not in chart.SPANS:
            span = chart.DEFAULT_SPAN
        context = chart.chart_context(span, chart.cached_series(chart.SPANS[span]))
        query = request.GET.copy()
        query[chart.PARAM] = context["other_span"]
        context["other_url"] = f"?{query.urlencode()}"
        return context

    def _summary(self, request: HttpRequest) -> dict[str, Any]:
        result = _status_for(request)
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        boxes = []
        for status_value, label in EventStatus.choices:
            count = result.counts.get(status_value)
            estimated = status_value in result.estimated
            if count is None:
                text = "?"
            else:
                text = f"~{count:,}" if estimated else f"{count:,}"
            note = ""
            if status_value == EventStatus.PENDING:
                note = f"{result.processing:,} processing"
            boxes.append(
                {
                    "status": status_value,
                    "label": label,
                    "count": text,
                    "note": note,
                    "css": STATUS_STYLES.get(status_value, ""),
                    "url": f"{url}?{urlencode({'status__exact': status_value})}",
                }
            )
        lag, age = result.lag_seconds, result.oldest_pending_age_seconds
        return {
            "boxes": boxes,
            "lag": services.format_age(lag) if lag is not None else None,
            "oldest_age": services.format_age(age) if age is not None else None,
            "estimated": bool(result.estimated),
            "drainers": result.drainers.get(None, 0),
            "unhandled": sorted(result.unhandled.items()),
        }

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            context["outbox_object_actions"] = self._object_actions(request, obj)
            context["outbox_return_to"] = RETURN_TO_OBJECT
        return super().change_view(request, object_id, form_url, extra_context=context)

    #: The actions that have a button on an event's page: the state each is legal in, and its label.
    OBJECT_ACTIONS: dict[str, tuple[str, str]] = {
        "retry_events": (EventStatus.FAILED, "Retry this event"),
        "mark_events_failed": (EventStatus.PENDING, "Mark this event as failed"),
        "delete_done_events": (EventStatus.DONE, "Delete this event"),
    }

    def _object_actions(self, request: HttpRequest, obj: OutboxEvent) -> list[dict[str, str]]:
        """The actions legal for this event that this user may run: buttons on its page."""
        allowed = self.get_actions(request)
        return [
            {"name": name, "label": label}
            for name, (status, label) in self.OBJECT_ACTIONS.items()
            if name in allowed and obj.status == status
        ]

    def _after_action(self, request: HttpRequest) -> HttpResponse | None:
        """Back to the event's page when the action came from its buttons."""
        if RETURN_TO_OBJECT not in request.POST:
            return None
        object_id = parse_id(request.POST[RETURN_TO_OBJECT])
        if object_id is not None and OutboxEvent.objects.filter(pk=object_id).exists():
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[object_id])
            )
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))

    # ------------------------------------------------------------ actions

    @staticmethod
    def _selected(request: HttpRequest) -> int | None:
        """How many rows were ticked (None for "select all": counting them could be costly)."""
        if request.POST.get("select_across") == "1":
            return None
        return len(request.POST.getlist(ACTION_CHECKBOX_NAME))

    def _report(self, request: HttpRequest, done: int, verb: str, legal: str) -> None:
        selected = self._selected(request)
        level = messages.SUCCESS if done else messages.WARNING
        text = f"{verb} {done:,} event(s)."
        if selected is not None and selected > done:
            text += f" {selected - done:,} selected event(s) were not {legal} (or a drainer held them): left alone."
        self.message_user(request, text, level)

    @admin.action(description="Retry selected failed events", permissions=["retry"])
    def retry_events(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> HttpResponse | None:
        ids = list(queryset.filter(status=EventStatus.FAILED).values_list("id", flat=True))
        count = services.retry(ids=ids) if ids else 0
        self._report(request, count, "Retried", "failed")
        return self._after_action(request)

    @admin.action(description="Mark selected pending events as failed", permissions=["fail"])
    def mark_events_failed(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> HttpResponse | None:
        ids = list(queryset.filter(status=EventStatus.PENDING).values_list("id", flat=True))
        reason = f"marked failed by {request.user.get_username()} in the admin"
        count = services.mark_failed(ids, reason=reason) if ids else 0
        self._report(request, count, "Marked as failed", "pending")
        return self._after_action(request)

    @admin.action(description="Delete selected done events", permissions=["delete"])
    def delete_done_events(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> HttpResponse | None:
        ids = list(queryset.filter(status=EventStatus.DONE).values_list("id", flat=True))
        count = services.delete_done(ids) if ids else 0
        self._report(request, count, "Deleted", "done")
        return self._after_action(request)
