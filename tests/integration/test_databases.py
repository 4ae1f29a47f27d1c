"""Several databases: each has its own outbox, drained on its own, nothing crossing over.

Two aliases on the test server (``default`` and ``other``, project/settings_test.py),
both migrated, both with the stock app's trigger. Every outbox command takes
``--database``; a drainer of one alias never touches the other's events, and the
handler's writes land in the database its events came from (outbox.databases).
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from outbox.models import OutboxEvent
from tests.stockapp.models import STOCK_LEVEL_COUNTED, ReorderRequest, StockLevel

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def command(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def state(alias: str) -> tuple[dict[str, int], int]:
    events = OutboxEvent.objects.using(alias)
    by_status = {s: events.filter(status=s).count() for s in ("pending", "done", "failed")}
    return by_status, ReorderRequest.objects.using(alias).count()


def test_two_databases_are_drained_independently() -> None:
    for i in range(3):
        StockLevel.objects.using("default").create(sku=f"D-{i}", warehouse="default", quantity=0)
    for i in range(2):
        StockLevel.objects.using("other").create(sku=f"O-{i}", warehouse="other", quantity=0)
    # The trigger wrote each row's event into the outbox of its own database.
    assert state("default") == ({"pending": 3, "done": 0, "failed": 0}, 0)
    assert state("other") == ({"pending": 2, "done": 0, "failed": 0}, 0)
    assert set(OutboxEvent.objects.using("other").values_list("topic", flat=True)) == {STOCK_LEVEL_COUNTED}

    assert "claimed=2 done=2" in command("drain_outbox", "--once", "--database", "other")
    assert state("other") == ({"pending": 0, "done": 2, "failed": 0}, 2)
    assert state("default") == ({"pending": 3, "done": 0, "failed": 0}, 0), "the other drainer crossed over"
    assert sorted(ReorderRequest.objects.using("other").values_list("sku", flat=True)) == ["O-0", "O-1"]

    assert "claimed=3 done=3" in command("drain_outbox", "--once")
    assert state("default") == ({"pending": 0, "done": 3, "failed": 0}, 3)
    assert state("other") == ({"pending": 0, "done": 2, "failed": 0}, 2)

    status = json.loads(command("outbox_status", "--json", "--database", "other"))
    assert (status["pending"], status["done"]) == (0, 2), status
    assert "Purged 2 done" in command("outbox_purge", "--older-than", "0s", "--database", "other")
    assert state("other")[0]["done"] == 0 and state("default")[0]["done"] == 3

    backfilled = command("outbox_backfill", "stockapp.StockLevel", "--all", "--database", "other")
    assert backfilled.startswith(f"Enqueued 2 {STOCK_LEVEL_COUNTED} event(s)"), backfilled
    assert state("other")[0]["pending"] == 2 and state("default")[0]["pending"] == 0

    OutboxEvent.objects.using("other").update(status="failed")
    assert "Retried 2 failed" in command("outbox_retry", "--database", "other")
    assert "Retried 0 failed" in command("outbox_retry")
    out = io.StringIO()
    with pytest.raises(CommandError, match="drainers"):  # 2 pending in other, no drainer connected there
        call_command("outbox_doctor", "--json", "--database", "other", stdout=out)
    checks = {check["name"]: check["state"] for check in json.loads(out.getvalue())}
    assert checks["trigger on stockapp_stocklevel"] == "ok" and checks["drainers"] == "fail", checks


def test_an_unknown_alias_is_refused() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'nowhere'"):
        call_command("drain_outbox", "--once", "--database", "nowhere")
