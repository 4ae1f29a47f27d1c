"""Stock levels counted in warehouses, and the reorder requests they cause."""

from __future__ import annotations

from django.db import models

from outbox.triggers import outbox_trigger

STOCK_LEVEL_COUNTED = "stock.level.counted"


class StockLevel(models.Model):
    sku = models.CharField(max_length=100)
    warehouse = models.CharField(max_length=32)
    quantity = models.IntegerField()

    class Meta:
        triggers = [
            outbox_trigger(
                topic=STOCK_LEVEL_COUNTED,
                key="id",
                payload_fields=("sku", "warehouse", "quantity"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku}@{self.warehouse}: {self.quantity}"


class ReorderRequest(models.Model):
    """Written by the handler; one per StockLevel at most, so a replay changes nothing."""

    stock_level = models.OneToOneField(StockLevel, on_delete=models.CASCADE)
    sku = models.CharField(max_length=100)
    quantity = models.IntegerField()

    def __str__(self) -> str:
        return f"reorder {self.quantity} of {self.sku}"
