from django.apps import AppConfig


class PricingConfig(AppConfig):
    name = "pricing"
    verbose_name = "Pricing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbox.handlers import registry
        from pricing import checks  # noqa: F401  (registers the config check)
        from pricing.auto_record import load_at_start, mark_failed, record_batch
        from pricing.models import CRAWL_RESULT_CREATED

        if CRAWL_RESULT_CREATED not in registry:
            registry.register(
                CRAWL_RESULT_CREATED,
                record_batch,
                batch=True,
                on_failed=mark_failed,
                # The auto-record config, read and validated once per drainer, before its first claim.
                on_start=load_at_start,
                log_label="Auto-record",
                outcome_names=("recorded", "duplicates", "skipped"),
            )
