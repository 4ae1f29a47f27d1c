from django.apps import AppConfig


class PricingConfig(AppConfig):
    name = "pricing"
    verbose_name = "Pricing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbox import backfill
        from outbox.handlers import registry
        from pricing import checks  # noqa: F401  (registers the config check)
        from pricing.auto_record import load_at_start, mark_failed, record_batch
        from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
        from pricing.services import CRAWL_ORDER, NOT_PROCESSED

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
        backfill.register(
            CrawlResult,
            default=NOT_PROCESSED,
            order_by=CRAWL_ORDER,
            description="results not processed yet: history_record_status is NULL",
        )
