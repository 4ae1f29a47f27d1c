"""/outbox/metrics: who may read it, and queue-state gauges that follow the database's state."""

from __future__ import annotations

import datetime as dt
from base64 import b64encode

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from outbox.metrics.exposition import queue_state_text
from tests.factories import make_event
from tests.support import current_database_url

pytestmark = pytest.mark.django_db

URL = "/outbox/metrics"
OPEN_TO_LOCALHOST = {"METRICS": True, "METRICS_ALLOWED_IPS": ["127.0.0.0/8"]}


def samples(text: bytes | str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def gauge(text: bytes, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


@pytest.mark.parametrize(
    ("outbox", "remote", "auth", "status"),
    [
        ({}, "127.0.0.1", None, 404),  # off by default, whoever asks
        ({"METRICS": True}, "127.0.0.1", None, 403),  # on, but no rule lets a scraper in
        (OPEN_TO_LOCALHOST, "127.0.0.1", None, 200),
        (OPEN_TO_LOCALHOST, "10.1.2.3", None, 403),
        ({"METRICS": True, "METRICS_ALLOWED_IPS": ["0.0.0.0/0"]}, "10.1.2.3", None, 200),  # public on purpose
        ({"METRICS": True, "METRICS_BASIC_AUTH": "prom:pw"}, "10.1.2.3", "prom:pw", 200),
        ({"METRICS": True, "METRICS_BASIC_AUTH": "prom:pw"}, "10.1.2.3", "prom:nope", 401),
        ({"METRICS": True, "METRICS_BASIC_AUTH": "prom:pw"}, "10.1.2.3", None, 401),
        # both rules: both must pass
        ({**OPEN_TO_LOCALHOST, "METRICS_BASIC_AUTH": "prom:pw"}, "10.1.2.3", "prom:pw", 403),
        ({**OPEN_TO_LOCALHOST, "METRICS_BASIC_AUTH": "prom:pw"}, "127.0.0.1", None, 401),
        ({**OPEN_TO_LOCALHOST, "METRICS_BASIC_AUTH": "prom:pw"}, "127.0.0.1", "prom:pw", 200),
    ],
)
def test_who_may_read_the_metrics(outbox: dict[str, object], remote: str, auth: str | None, status: int) -> None:
    headers = {"HTTP_AUTHORIZATION": "Basic " + b64encode(auth.encode()).decode()} if auth else {}
    with override_settings(OUTBOX=outbox):
        response = Client(REMOTE_ADDR=remote).get(URL, **headers)
    assert response.status_code == status, response.content
    if status == 200:
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b"outbox_database_up 1.0" in response.content
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Basic realm=")


def test_staff_with_the_view_permission_may_read_it_from_anywhere() -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)  # noqa: S106
    client = Client(REMOTE_ADDR="10.9.9.9")
    client.force_login(viewer)
    with override_settings(OUTBOX={"METRICS": True}):
        assert client.get(URL).status_code == 403  # staff, but not allowed to view the outbox
        viewer.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
        viewer = User.objects.get(pk=viewer.pk)  # a fresh permission cache
        client.force_login(viewer)
        assert client.get(URL).status_code == 200
        assert client.post(URL).status_code == 405


def test_openmetrics_when_asked_for() -> None:
    with override_settings(OUTBOX=OPEN_TO_LOCALHOST):
        response = Client().get(URL, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


def test_queue_gauges_follow_the_table() -> None:
    now = timezone.now()
    make_event("a.topic", "1", available_at=now - dt.timedelta(seconds=90))
    make_event("a.topic", "2", available_at=now + dt.timedelta(hours=1))  # a retry waiting: not claimable
    make_event("a.topic", "3", locked_by="outbox:gone:1:abc", locked_until=now + dt.timedelta(minutes=5),
               available_at=now + dt.timedelta(minutes=5))  # fmt: skip
    make_event("a.topic", "4", status="failed", processed_at=now)
    text = queue_state_text()
    assert gauge(text, "outbox_events", topic="a.topic", status="pending") == 3
    assert gauge(text, "outbox_events", topic="a.topic", status="failed") == 1
    assert gauge(text, "outbox_events_leased", topic="a.topic") == 1
    assert 90 <= gauge(text, "outbox_lag_seconds", topic="a.topic") < 120
    assert gauge(text, "outbox_orphaned_leases") == 1  # its holder has no session
    assert gauge(text, "outbox_events_unhandled", topic="a.topic") == 3  # no drainer at all
    assert gauge(text, "outbox_drainers") == 0


def test_a_snapshot_held_open_shows_in_the_horizon_gauges() -> None:
    with psycopg.connect(current_database_url()) as other:
        other.execute("SELECT txid_current()")  # a transaction with an xid and a snapshot, left open
        other.execute("SELECT 1")
        with connection.cursor() as cursor:
            cursor.execute("SELECT txid_current()")  # consume xids so the other's xmin ages
        text = queue_state_text()
        assert gauge(text, "outbox_oldest_transaction_age_seconds") > 0
        assert gauge(text, "outbox_xmin_age_transactions") >= 1


def test_a_disabled_trigger_is_reported() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'pricing_crawlresult'::regclass "
                       "AND tgname LIKE 'pgtrigger_outbox%%'")  # fmt: skip
        (name,) = cursor.fetchone()
        cursor.execute(f'ALTER TABLE pricing_crawlresult DISABLE TRIGGER "{name}"')
    text = queue_state_text()
    labels = {"table": "pricing_crawlresult", "trigger": "outbox_crawl_result"}
    assert gauge(text, "outbox_trigger_installed", **labels) == 1
    assert gauge(text, "outbox_trigger_enabled", **labels) == 0


def test_a_database_that_cannot_be_read_is_up_0_not_an_error_page() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER VIEW outbox_stats RENAME TO outbox_stats_away")
    with override_settings(OUTBOX=OPEN_TO_LOCALHOST):
        response = Client().get(URL)
    assert response.status_code == 200
    assert samples(response.content) == {("outbox_database_up", frozenset()): 0.0}
