"""Hostile input to the admin lists: a 400 or an empty list, never a 500, and no lookup
that the list does not show (each would scan a large table)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from outbox.models import OutboxEvent
from pricing.models import PriceHistory
from tests.factories import make_event, make_product, make_result

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = reverse("admin:outbox_outboxevent_changelist")
RESULTS = reverse("admin:pricing_crawlresult_changelist")
HISTORY = reverse("admin:pricing_pricehistory_changelist")
PRODUCTS = reverse("admin:pricing_product_changelist")


def viewer() -> Client:
    """A staff user who may only view, as a curious one would type URLs."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    for app, codename in [
        ("outbox", "view_outboxevent"),
        ("pricing", "view_crawlresult"),
        ("pricing", "view_pricehistory"),
        ("pricing", "view_product"),
    ]:
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def pks(response: Any) -> list[Any]:
    return [obj.pk for obj in response.context["cl"].result_list]


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (EVENTS, {"q": "²"}),  # str.isdigit() says yes, int() says no
        (EVENTS, {"q": "99999999999999999999"}),  # beyond bigint
        (HISTORY, {"q": "²"}),
        (HISTORY, {"product": "²"}),
        (HISTORY, {"product": "99999999999999999999"}),
        (RESULTS, {"q": "²"}),
    ],
)
def test_odd_digits_and_huge_numbers_match_nothing(admin_client: Client, url: str, params: dict[str, str]) -> None:
    make_event("t", "k")
    make_result()
    response = admin_client.get(url, params)
    assert response.status_code in (200, 404), response.status_code
    if response.status_code == 200:
        assert pks(response) == [], f"{params} matched rows"


@pytest.mark.parametrize(
    ("url", "param"),
    [(EVENTS, "topic"), (EVENTS, "status__exact"), (RESULTS, "source"), (RESULTS, "history_record_status__exact")],
)
def test_a_nul_character_in_a_filter_is_a_bad_request(admin_client: Client, url: str, param: str) -> None:
    response = admin_client.get(url, {param: "pending\x00"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("url", "table", "param"),
    [
        (EVENTS, "outbox_event", "key__regex"),
        (EVENTS, "outbox_event", "payload__contains"),
        (EVENTS, "outbox_event", "last_error__icontains"),
        (EVENTS, "outbox_event", "id__gt"),
        (RESULTS, "pricing_crawlresult", "history_record_reason__startswith"),
        (RESULTS, "pricing_crawlresult", "price__gt"),
        (HISTORY, "pricing_pricehistory", "source__regex"),
        (PRODUCTS, "pricing_product", "name__icontains"),
    ],
)
def test_lookups_the_list_does_not_show_are_refused(url: str, table: str, param: str) -> None:
    client = viewer()
    make_event("t", "k", payload={"x": 1})
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {param: "1"})
    assert response.status_code == 400
    ran = [q["sql"] for q in queries.captured_queries if f'FROM "{table}"' in q["sql"]]
    assert not ran, f"{param} read {table}: {ran}"


def test_the_shown_filters_and_the_key_link_still_work() -> None:
    client = viewer()
    product = make_product()
    result = make_result(product)
    event = OutboxEvent.objects.get(key=str(result.pk))
    assert pks(client.get(EVENTS, {"key": str(result.pk), "topic": event.topic})) == [event.pk]
    assert pks(client.get(EVENTS, {"status__exact": "pending", "has_error": "no"})) == [event.pk]
    assert pks(client.get(RESULTS, {"history_record_status__isnull": "True", "source": "html_ml"})) == [result.pk]
    PriceHistory.objects.create(
        product=product, price=1, currency="EUR", source="html_ml", crawled_at=result.crawled_at, crawl_result=result
    )
    assert len(pks(client.get(HISTORY, {"product": str(product.pk)}))) == 1


@pytest.mark.parametrize("value", ["abc", "²", "99999999999999999999", ""])
def test_a_button_with_a_bad_return_to_applies_the_action_and_redirects(admin_client: Client, value: str) -> None:
    failed = make_event("t", "k", status="failed", attempts=3)
    response = admin_client.post(
        EVENTS,
        {"action": "retry_events", "index": "0", "_selected_action": str(failed.pk), "_outbox_return_to": value},
    )
    assert response.status_code == 302, response.status_code
    assert response["Location"].startswith(EVENTS)
    assert OutboxEvent.objects.get(pk=failed.pk).status == "pending", "the action was applied once"
