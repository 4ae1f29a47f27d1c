from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        from outbox.handlers import registry
        from shop.handlers import send_receipt
        from shop.models import ORDER_PLACED

        registry.register(ORDER_PLACED, send_receipt)
