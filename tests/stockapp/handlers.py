"""The stock topic's handler: reorder what runs low."""

from __future__ import annotations

from outbox.handlers import Event
from tests.stockapp.models import ReorderRequest

REORDER_BELOW = 10
REORDER_UP_TO = 50


def reorder_if_low(event: Event) -> str:
    """Per-event handler: runs in the drainer's transaction, returns an outcome name."""
    quantity = int(event.payload["quantity"])
    if quantity >= REORDER_BELOW:
        return "enough"
    ReorderRequest.objects.get_or_create(
        stock_level_id=int(event.key),
        defaults={"sku": event.payload["sku"], "quantity": REORDER_UP_TO - quantity},
    )
    return "reordered"
