"""drain_outbox --metrics-port: a bad value, a port in use or a missing prometheus_client is a clear
error, nothing drained; and the fault counters (lease lost, reconnects) count real faults."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import Event
from outbox.models import OutboxEvent
from outbox.signals import batch_claimed
from tests.factories import make_event, make_result
from tests.support import current_database_url, receiving

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("value", ["http://x", "99999", "host:port"])
def test_a_bad_metrics_port_is_refused_by_the_parser(value: str) -> None:
    with pytest.raises(CommandError, match="argument --metrics-port: must be PORT or ADDRESS:PORT"):
        call_command("drain_outbox", "--once", "--metrics-port", value)


def test_a_port_in_use_stops_the_drainer_before_it_claims() -> None:
    make_event("pricing.crawl_result.created", "1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"--metrics-port: cannot listen on 127.0.0.1:{port}: "):
            call_command("drain_outbox", "--once", "--metrics-port", f"127.0.0.1:{port}")
    assert OutboxEvent.objects.get().status == "pending"


def test_without_prometheus_client_the_flag_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    make_event("pricing.crawl_result.created", "1")
    # As on an install without the [metrics] extra: the import itself fails.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "outbox.metrics.drainer", raising=False)
    with pytest.raises(CommandError, match=r"--metrics-port needs prometheus_client .*django-pg-outbox\[metrics\]"):
        call_command("drain_outbox", "--once", "--metrics-port", "127.0.0.1:0")
    assert OutboxEvent.objects.get().status == "pending"


@pytest.fixture
def drainer_metrics() -> Iterator[Callable[[str], float]]:
    """The drainer's receivers connected in this process; the value of one counter now."""
    from prometheus_client import REGISTRY

    from outbox.metrics import drainer as metrics

    metrics.install()
    try:
        yield lambda name: REGISTRY.get_sample_value(name) or 0.0
    finally:
        metrics.uninstall()


def _after_first_claim(action: Callable[[list[int]], None]) -> Callable[..., None]:
    """A batch_claimed receiver that runs ``action`` on the ids of the first claim only."""
    done: list[bool] = []

    def receiver(sender: object, events: list[Event], **kwargs: object) -> None:
        if not done and events:
            done.append(True)
            action([e.id for e in events])

    return receiver


def test_an_event_taken_over_before_its_run_counts_as_lease_lost(drainer_metrics: Callable[[str], float]) -> None:
    event = make_event("pricing.crawl_result.created", "1")

    def take_over(ids: list[int]) -> None:  # another drainer's rescue took it meanwhile
        with psycopg.connect(current_database_url(), autocommit=True) as other:
            other.execute("UPDATE outbox_event SET locked_by = 'outbox:elsewhere:1:abcdef' WHERE id = ANY(%s)", [ids])

    before = drainer_metrics("outbox_lease_lost_events_total")
    with receiving(batch_claimed, _after_first_claim(take_over)):
        connection.close()
        d = Drainer(DrainerConfig.from_settings())
        try:
            result = d.run_once()
        finally:
            d.close()
    assert result.lost == 1, result
    assert drainer_metrics("outbox_lease_lost_events_total") - before == 1
    assert OutboxEvent.objects.get(pk=event.pk).status == "pending"


def test_a_lost_connection_counts_a_reconnect(drainer_metrics: Callable[[str], float]) -> None:
    event = OutboxEvent.objects.get(key=str(make_result().id))
    drainer_pid: list[int] = []

    def cut(ids: list[int]) -> None:  # the server ends the drainer's session after its claim
        with psycopg.connect(current_database_url(), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [drainer_pid[0]])

    before = drainer_metrics("outbox_reconnects_total")
    with receiving(batch_claimed, _after_first_claim(cut)):
        connection.close()
        d = Drainer(DrainerConfig.from_settings())
        try:
            connection.ensure_connection()
            drainer_pid.append(connection.connection.info.backend_pid)
            total = d.drain()
        finally:
            d.close()
    assert drainer_metrics("outbox_reconnects_total") - before == 1
    assert total.done == 1, total
    assert OutboxEvent.objects.get(pk=event.pk).status == "done"
