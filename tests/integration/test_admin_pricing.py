"""The pricing admin: crawl results (filters, their outbox events, enqueue again) and price history."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from outbox.drainer import Drainer, DrainerConfig
from outbox.models import OutboxEvent
from pricing.models import PriceHistory
from tests.factories import make_product, make_result

pytestmark = pytest.mark.django_db(transaction=True)

RESULTS = "admin:pricing_crawlresult_changelist"
HISTORY = "admin:pricing_pricehistory_changelist"


def drain() -> None:
    drainer = Drainer(DrainerConfig.from_settings())
    try:
        drainer.drain()
    finally:
        drainer.close()


def pks(response: Any) -> list[Any]:
    return [obj.pk for obj in response.context["cl"].result_list]


def test_crawl_results_filter_by_status_and_source(admin_client: Client) -> None:
    product = make_product()
    recorded = make_result(product, price=Decimal("10.00"))
    skipped = make_result(product, source="html_rules")
    drain()
    unprocessed = make_result(product, source="html_rules")
    base = reverse(RESULTS)
    assert pks(admin_client.get(base + "?history_record_status__exact=recorded")) == [recorded.pk]
    assert pks(admin_client.get(base + "?history_record_status__exact=skipped")) == [skipped.pk]
    assert pks(admin_client.get(base + "?history_record_status__isnull=True")) == [unprocessed.pk]
    assert set(pks(admin_client.get(base + "?source=html_rules"))) == {skipped.pk, unprocessed.pk}
    response = admin_client.get(base)
    spec = next(s for s in response.context["cl"].filter_specs if getattr(s, "parameter_name", "") == "source")
    # The choices come from the column statistics plus a sample of rows; statistics
    # outlive the truncation between tests (an earlier test's sources may linger),
    # so ask for what this test wrote, in order, not for nothing else.
    choices = [value for value, _ in spec.lookup_choices]
    assert choices == sorted(choices)
    assert {"html_ml", "html_rules"} <= set(choices), choices
    assert pks(response)[0] == unprocessed.pk, "newest crawl first"
    assert pks(admin_client.get(base + f"?q={recorded.pk}")) == [recorded.pk]
    assert set(pks(admin_client.get(base + f"?q={product.sku}"))) == {recorded.pk, skipped.pk, unprocessed.pk}


def test_crawl_result_links_to_its_outbox_event(admin_client: Client) -> None:
    result = make_result()
    event = OutboxEvent.objects.get(key=str(result.pk))
    html = admin_client.get(reverse(RESULTS)).content.decode()
    match = re.search(rf'href="([^"]*key={result.pk}[^"]*)"', html)
    assert match, "no link to the result's outbox events"
    target = admin_client.get(unescape(match.group(1)))
    assert [obj.pk for obj in target.context["cl"].result_list] == [event.pk]
    detail = admin_client.get(reverse("admin:pricing_crawlresult_change", args=[result.pk])).content.decode()
    assert reverse("admin:outbox_outboxevent_change", args=[event.pk]) in detail
    assert f"event #{event.pk}" in detail and ">Pending</span>" in detail


def test_crawl_results_are_read_only(admin_client: Client) -> None:
    result = make_result()
    assert admin_client.get(reverse("admin:pricing_crawlresult_add")).status_code == 403
    assert admin_client.get(reverse("admin:pricing_crawlresult_delete", args=[result.pk])).status_code == 403
    html = admin_client.get(reverse("admin:pricing_crawlresult_change", args=[result.pk])).content.decode()
    assert 'name="_save"' not in html


def test_enqueue_again_action(admin_client: Client) -> None:
    product = make_product()
    failed = make_result(product, history_record_status="failed")
    recorded = make_result(product, history_record_status="recorded")
    OutboxEvent.objects.all().delete()
    response = admin_client.post(
        reverse(RESULTS),
        {"action": "enqueue_again", "index": "0", "_selected_action": [str(failed.pk), str(recorded.pk)]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Enqueued 1 event(s); 1 selected result(s) were recorded, duplicates or already pending: left alone."
    ]
    assert list(OutboxEvent.objects.values_list("key", flat=True)) == [str(failed.pk)]


def test_enqueue_again_needs_the_outbox_add_permission() -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_crawlresult"))
    client = Client()
    client.force_login(viewer)
    result = make_result(history_record_status="failed")
    OutboxEvent.objects.all().delete()
    html = client.get(reverse(RESULTS)).content.decode()
    assert 'name="action"' not in html
    client.post(reverse(RESULTS), {"action": "enqueue_again", "index": "0", "_selected_action": [str(result.pk)]})
    assert not OutboxEvent.objects.exists()


def test_price_history_newest_first_filtered_by_product(admin_client: Client) -> None:
    first, second = make_product(), make_product()
    base = timezone.now() - dt.timedelta(hours=1)
    make_result(first, price=Decimal("1.00"), crawled_at=base)
    make_result(second, price=Decimal("2.00"), crawled_at=base)
    make_result(first, price=Decimal("3.00"), crawled_at=base + dt.timedelta(minutes=1))
    drain()
    history = list(PriceHistory.objects.order_by("-id"))
    response = admin_client.get(reverse(HISTORY))
    assert pks(response) == [h.pk for h in history]
    only_first = admin_client.get(reverse(HISTORY) + f"?product={first.pk}")
    assert [h.price for h in only_first.context["cl"].result_list] == [Decimal("3.00"), Decimal("1.00")]
    spec = next(s for s in response.context["cl"].filter_specs if getattr(s, "parameter_name", "") == "product")
    assert [value for value, _ in spec.lookup_choices] == [str(first.pk), str(second.pk)]
    assert admin_client.get(reverse("admin:pricing_pricehistory_add")).status_code == 403


#: One time format on both apps' pages: ISO 8601 in UTC with the age.
ISO_WITH_AGE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \((?:\d+[dhms] ?)+ ago\)")
LIST_TIME = re.compile(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="[^"]+Z \([^"]+ ago\)">')


def test_both_apps_show_instants_the_same_way(admin_client: Client) -> None:
    result = make_result(crawled_at=timezone.now() - dt.timedelta(minutes=5))
    drain()
    event = OutboxEvent.objects.get(key=str(result.pk))
    history = PriceHistory.objects.get(crawl_result=result)
    pages = {
        "event": reverse("admin:outbox_outboxevent_change", args=[event.pk]),
        "result": reverse("admin:pricing_crawlresult_change", args=[result.pk]),
        "history": reverse("admin:pricing_pricehistory_change", args=[history.pk]),
    }
    for name, url in pages.items():
        html = admin_client.get(url).content.decode()
        assert ISO_WITH_AGE.search(html), f"{name} page: no ISO 8601 UTC instant with its age"
        assert "a.m." not in html and "p.m." not in html, f"{name} page: Django's local format"
    lists = ("admin:outbox_outboxevent_changelist", RESULTS, "admin:pricing_pricehistory_changelist")
    for url in map(reverse, lists):
        assert LIST_TIME.search(admin_client.get(url).content.decode()), f"{url}: no <time> cell"


def test_an_event_page_links_to_the_row_it_is_about(admin_client: Client) -> None:
    result = make_result()
    event = OutboxEvent.objects.get(key=str(result.pk))
    html = admin_client.get(reverse("admin:outbox_outboxevent_change", args=[event.pk])).content.decode()
    link = reverse("admin:pricing_crawlresult_change", args=[result.pk])
    assert f'href="{link}" id="outbox-row-link">crawl result {result.pk}</a>' in html
    stock = OutboxEvent.objects.create(topic="stock.level.counted", key="7")  # no link registered for it
    html = admin_client.get(reverse("admin:outbox_outboxevent_change", args=[stock.pk])).content.decode()
    assert "outbox-row-link" not in html
