from django.db import models

from outbox.triggers import outbox_trigger

ORDER_PLACED = "shop.order.placed"


class Order(models.Model):
    customer = models.CharField(max_length=100)
    total = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        triggers = [outbox_trigger(topic=ORDER_PLACED, key="id", payload_fields=("customer", "total"))]

    def __str__(self) -> str:
        return f"order {self.pk} of {self.customer}"


class Receipt(models.Model):
    order = models.OneToOneField(Order, on_delete=models.CASCADE)  # one receipt per order: replays are no-ops
    total = models.DecimalField(max_digits=10, decimal_places=2)

    def __str__(self) -> str:
        return f"receipt for order {self.order_id}"
