from django.apps import AppConfig


class StockAppConfig(AppConfig):
    name = "tests.stockapp"
    label = "stockapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbox.handlers import registry
        from tests.stockapp.handlers import reorder_if_low
        from tests.stockapp.models import STOCK_LEVEL_COUNTED

        if STOCK_LEVEL_COUNTED not in registry:
            registry.register(STOCK_LEVEL_COUNTED, reorder_if_low, log_label="Stock")
