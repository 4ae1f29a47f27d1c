"""drain_outbox --metrics-port: a bad value or a port in use is a clear error, nothing drained."""

from __future__ import annotations

import socket
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from outbox.models import OutboxEvent
from tests.factories import make_event

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
