"""The outbox admin: summary, filters, search, read-only detail, actions and their permissions,
and the queries a changelist page runs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from outbox.admin import STATUS_STYLES
from outbox.admin_lists import EstimatedCount, EstimatedCountPaginator
from outbox.models import EventStatus, OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
from tests.factories import make_event, make_result

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:outbox_outboxevent_changelist"


def url(**params: Any) -> str:
    base = reverse(CHANGELIST)
    if not params:
        return base
    return base + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def ago(**kwargs: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kwargs)


def staff(username: str, *perms: str) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="outbox", codename=codename))
    client = Client()
    client.force_login(user)
    return client


def ids_on_page(response: Any) -> list[int]:
    return [obj.pk for obj in response.context["cl"].result_list]


def post_action(client: Client, action: str, ids: list[int], **extra: str) -> Any:
    data = {"action": action, "index": "0", "_selected_action": [str(i) for i in ids], **extra}
    return client.post(url(), data, follow=True)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def events() -> dict[str, OutboxEvent]:
    return {
        "pending": make_event("pricing.crawl_result.created", "k-pending", payload={"product_id": 7, "price": "1.50"}),
        "failed": make_event(
            "stock.level.counted",
            "k-failed",
            status="failed",
            attempts=3,
            last_error="builtins.ValueError: bad payload\nTraceback line 2",
            processed_at=ago(minutes=5),
        ),
        "done": make_event("pricing.crawl_result.created", "k-done", status="done", processed_at=ago(minutes=1)),
        "retried": make_event(
            "pricing.crawl_result.created", "k-retried", status="done", last_error="TimeoutError", processed_at=ago()
        ),
    }


def test_changelist_summary_newest_first(admin_client: Client, events: dict[str, OutboxEvent]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE outbox_event SET created_at = now() - interval '2 hours', "
            "available_at = now() - interval '30 minutes' WHERE key = 'k-pending'"
        )
    response = admin_client.get(url())
    assert response.status_code == 200
    summary = response.context["outbox_summary"]
    counts = {box["status"]: box["count"] for box in summary["boxes"]}
    assert counts == {"pending": "1", "done": "2", "failed": "1"}
    assert summary["lag"].startswith("30m") and summary["oldest_age"].startswith("2h") and not summary["estimated"]
    html = response.content.decode()
    assert 'id="outbox-summary-failed"' in html and "?status__exact=failed" in html
    assert ids_on_page(response) == sorted((e.pk for e in events.values()), reverse=True)
    assert "bad payload" in html and "Traceback line 2" not in html.split('title="')[0], "short error: first line"
    assert "Drainers alive: 0" in html
    assert "1 pending event(s) of pricing.crawl_result.created wait for a drainer that handles it" in html


def test_filters_and_search(admin_client: Client, events: dict[str, OutboxEvent]) -> None:
    assert ids_on_page(admin_client.get(url(status__exact="failed"))) == [events["failed"].pk]
    assert ids_on_page(admin_client.get(url(topic="stock.level.counted"))) == [events["failed"].pk]
    assert set(ids_on_page(admin_client.get(url(has_error="yes")))) == {events["failed"].pk, events["retried"].pk}
    assert set(ids_on_page(admin_client.get(url(has_error="no")))) == {events["pending"].pk, events["done"].pk}
    assert ids_on_page(admin_client.get(url(q="k-done"))) == [events["done"].pk]
    assert ids_on_page(admin_client.get(url(q=str(events["pending"].pk)))) == [events["pending"].pk]
    assert ids_on_page(admin_client.get(url(q="k-d"))) == [], "search is exact, never a LIKE scan"
    assert ids_on_page(admin_client.get(url(key="k-done"))) == [events["done"].pk], "?key= filters by key"


def test_topic_choices_come_from_the_stats_and_the_registry(admin_client: Client) -> None:
    make_event("some.other.topic", "x")
    response = admin_client.get(url())
    spec = next(s for s in response.context["cl"].filter_specs if getattr(s, "parameter_name", "") == "topic")
    topics = [value for value, _ in spec.lookup_choices]
    # tasks.*: the queues of the test settings' outbox.tasks backend (tests/taskapp/config.py)
    assert topics == sorted(
        {"some.other.topic", CRAWL_RESULT_CREATED, "stock.level.counted", "tasks.default", "tasks.other"}
    )


def test_every_status_has_a_label_and_a_style(admin_client: Client) -> None:
    assert set(STATUS_STYLES) == set(EventStatus.values)
    html = admin_client.get(url()).content.decode()
    for _, label in EventStatus.choices:
        assert f">{label}</a>" in html, f"the status filter lacks {label}"


def test_changelist_never_counts_the_whole_table(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO outbox_event (topic, key, status, processed_at) "
            "SELECT 't', g::text, 'done', now() FROM generate_series(1, 3000) g"
        )
        cursor.execute(
            "INSERT INTO outbox_event (topic, key, status) SELECT 't', 'f' || g, 'failed' FROM generate_series(1, 5) g"
        )
        cursor.execute("ANALYZE outbox_event")
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 100)
    response = admin_client.get(url())
    assert response.context["cl"].result_count == 3005, "a table this small is counted exactly"
    assert not response.context["cl"].paginator.estimated
    monkeypatch.setattr(EstimatedCountPaginator, "exact_table_limit", 100)

    with CaptureQueriesContext(connection) as unfiltered:
        response = admin_client.get(url())
    cl = response.context["cl"]
    assert isinstance(cl.result_count, EstimatedCount) and abs(cl.result_count - 3005) < 100
    assert str(cl.result_count).startswith("~") and f"{cl.result_count} results" in response.content.decode()
    assert len(cl.result_list) == 100

    with CaptureQueriesContext(connection) as filtered:
        response = admin_client.get(url(status__exact="failed"))
    assert response.context["cl"].result_count == 5 and not response.context["cl"].paginator.estimated

    with CaptureQueriesContext(connection) as done:
        response = admin_client.get(url(status__exact="done"))
    assert response.context["cl"].paginator.estimated, "over the cap: the planner's estimate"

    for captured in (unfiltered, filtered, done):
        sql = [_code(q["sql"]) for q in captured.captured_queries if "outbox" in q["sql"]]
        # The events table: never counted whole (outbox_drainer, a row per drainer, may be).
        for statement in (s for s in sql if re.search(r"\boutbox_event\b", s)):
            if re.search(r"count\(", statement, re.IGNORECASE):
                assert "LIMIT" in statement.upper(), f"an unbounded count: {statement}"
            assert "DISTINCT" not in statement.upper(), f"a DISTINCT over the table: {statement}"
        assert sum("outbox_stats" in s for s in sql) == 1, "one query on the stats view per page"
        assert sum("outbox_throughput" in s for s in sql) == 1, "one query for the chart (the last hour)"
        assert len(sql) <= 6, sql


def _code(sql: str) -> str:
    """A statement without its -- comments (the SQL file's blocks carry documentation)."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def test_paginator_past_an_overestimate_is_empty_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        make_event("t", str(i))
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_limit", 2)
    paginator = EstimatedCountPaginator(OutboxEvent.objects.filter(topic="t").order_by("-id"), 2)
    paginator.count = EstimatedCount(50)  # as if the planner overestimated
    paginator.estimated = True
    assert list(paginator.page(20).object_list) == []


def test_detail_page_is_read_only_with_pretty_payload_and_full_error(
    admin_client: Client, events: dict[str, OutboxEvent]
) -> None:
    failed = events["failed"]
    response = admin_client.get(reverse("admin:outbox_outboxevent_change", args=[failed.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "builtins.ValueError: bad payload\nTraceback line 2" in html
    assert 'name="_save"' not in html and "deletelink" not in html
    assert 'value="retry_events"' in html and "Retry this event" in html
    assert 'value="mark_events_failed"' not in html
    pending = admin_client.get(reverse("admin:outbox_outboxevent_change", args=[events["pending"].pk])).content.decode()
    assert "{\n  &quot;price&quot;: &quot;1.50&quot;,\n  &quot;product_id&quot;: 7\n}" in pending
    assert "Mark this event as failed" in pending and 'value="retry_events"' not in pending


def test_no_add_and_no_edit(admin_client: Client, events: dict[str, OutboxEvent]) -> None:
    assert admin_client.get(reverse("admin:outbox_outboxevent_add")).status_code == 403
    pending = events["pending"]
    admin_client.post(reverse("admin:outbox_outboxevent_change", args=[pending.pk]), {"status": "done"})
    assert OutboxEvent.objects.get(pk=pending.pk).status == "pending"
    assert admin_client.get(reverse("admin:outbox_outboxevent_delete", args=[pending.pk])).status_code == 403
    done_delete = admin_client.get(reverse("admin:outbox_outboxevent_delete", args=[events["done"].pk]))
    assert done_delete.status_code == 200, "a done event may be deleted one by one"


def test_retry_action_changes_failed_events_only(admin_client: Client, events: dict[str, OutboxEvent]) -> None:
    response = post_action(admin_client, "retry_events", [events["failed"].pk, events["done"].pk])
    assert messages_of(response) == [
        "Retried 1 event(s). 1 selected event(s) were not failed (or a drainer held them): left alone."
    ]
    failed = OutboxEvent.objects.get(pk=events["failed"].pk)
    assert (failed.status, failed.attempts) == ("pending", 0)
    assert OutboxEvent.objects.get(pk=events["done"].pk).status == "done"
    assert response.context["outbox_summary"]["boxes"][2]["count"] == "0", "the summary shows the change"


def test_retry_all_across_pages(admin_client: Client) -> None:
    for i in range(3):
        make_event("t", str(i), status="failed", attempts=3)
    response = admin_client.post(
        url(status__exact="failed"),
        {"action": "retry_events", "index": "0", "select_across": "1", "_selected_action": ["0"]},
        follow=True,
    )
    assert messages_of(response) == ["Retried 3 event(s)."]
    assert not OutboxEvent.objects.filter(status="failed").exists()


def test_mark_failed_action_marks_the_crawl_result_too(admin_client: Client) -> None:
    result = make_result()
    event = OutboxEvent.objects.get(key=str(result.pk))
    response = post_action(admin_client, "mark_events_failed", [event.pk])
    assert messages_of(response) == ["Marked as failed 1 event(s)."]
    event.refresh_from_db()
    assert event.status == "failed" and event.last_error == "marked failed by admin in the admin"
    assert CrawlResult.objects.get(pk=result.pk).history_record_status == "failed"


def test_delete_action_deletes_done_events_only(admin_client: Client, events: dict[str, OutboxEvent]) -> None:
    response = post_action(admin_client, "delete_done_events", [e.pk for e in events.values()])
    assert messages_of(response) == [
        "Deleted 2 event(s). 2 selected event(s) were not done (or a drainer held them): left alone."
    ]
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"pending", "failed"}


def test_button_on_the_event_page_returns_to_it(admin_client: Client, events: dict[str, OutboxEvent]) -> None:
    failed = events["failed"]
    response = admin_client.post(
        url(),
        {"action": "retry_events", "index": "0", "_selected_action": str(failed.pk), "_outbox_return_to": failed.pk},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:outbox_outboxevent_change", args=[failed.pk])
    assert OutboxEvent.objects.get(pk=failed.pk).status == "pending"


def test_view_only_staff_sees_everything_and_can_do_nothing(events: dict[str, OutboxEvent]) -> None:
    client = staff("viewer", "view_outboxevent")
    response = client.get(url())
    assert response.status_code == 200 and len(ids_on_page(response)) == 4
    html = response.content.decode()
    assert 'name="action"' not in html and "action-checkbox" not in html
    detail = client.get(reverse("admin:outbox_outboxevent_change", args=[events["failed"].pk]))
    assert detail.status_code == 200
    assert 'id="outbox-object-actions"' not in detail.content.decode(), "no action buttons for a viewer"
    for action in ("retry_events", "mark_events_failed", "delete_done_events"):
        post_action(client, action, [e.pk for e in events.values()])
    assert dict(OutboxEvent.objects.values_list("key", "status")) == {
        "k-pending": "pending",
        "k-failed": "failed",
        "k-done": "done",
        "k-retried": "done",
    }


def test_each_action_needs_its_own_permission(events: dict[str, OutboxEvent]) -> None:
    retrier = staff("retrier", "view_outboxevent", "retry_outboxevent")
    choices = [value for value, _ in retrier.get(url()).context["action_form"].fields["action"].choices if value]
    assert choices == ["retry_events"]
    post_action(retrier, "delete_done_events", [events["done"].pk])
    assert OutboxEvent.objects.filter(pk=events["done"].pk).exists()
    post_action(retrier, "retry_events", [events["failed"].pk])
    assert OutboxEvent.objects.get(pk=events["failed"].pk).status == "pending"

    failer = staff("failer", "view_outboxevent", "fail_outboxevent", "delete_outboxevent")
    choices = [value for value, _ in failer.get(url()).context["action_form"].fields["action"].choices if value]
    assert choices == ["mark_events_failed", "delete_done_events"]


def test_anonymous_is_sent_to_login() -> None:
    response = Client().get(url())
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
