from decimal import Decimal

from outbox.handlers import Event
from shop.models import Receipt


def send_receipt(event: Event) -> str:
    """Runs in the drainer's transaction: the receipt commits with the event's ack."""
    _, created = Receipt.objects.get_or_create(
        order_id=int(event.key), defaults={"total": Decimal(str(event.payload["total"]))}
    )
    return "sent" if created else "already sent"
