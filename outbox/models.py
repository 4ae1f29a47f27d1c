"""The outbox table: one row per domain event, written by a trigger, drained by SQL.

Life of a row (see docs/guarantees.md for the diagram):

``pending`` --claim--> ``pending`` under a lease (locked_by, locked_until, attempts+1)
--handler ok--> ``done``; --handler raised--> ``pending`` after a backoff, or
``failed`` once attempts reach max_attempts; --drainer died--> claimable again when
its lease ends or its backend is gone.

A lease is expressed twice on purpose: ``locked_until`` for people and
``available_at = locked_until`` for the claim, so the claim has one predicate
(``status = 'pending' AND available_at <= now()``) that covers fresh events, retries
whose backoff has passed and expired leases alike, all served by one partial index.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import HashIndex
from django.db import models
from django.db.models.functions import Now


class EventStatus(models.TextChoices):
    #: Waiting to be claimed, or claimed and under a lease (locked_by is set).
    PENDING = "pending", "Pending"
    #: The handler succeeded; kept for RETENTION, then purged.
    DONE = "done", "Done"
    #: The handler failed max_attempts times (or the event was abandoned); see last_error.
    FAILED = "failed", "Failed"


class OutboxEvent(models.Model):
    """An event to hand to the handler registered for its topic."""

    id = models.BigAutoField(primary_key=True)
    topic = models.TextField(help_text="Routes the event to its handler, e.g. pricing.crawl_result.created.")
    key = models.TextField(help_text="The aggregate's id (for pricing: the CrawlResult id).")
    payload = models.JSONField(default=dict, db_default=models.Value({}, output_field=models.JSONField()))
    status = models.TextField(choices=EventStatus.choices, default=EventStatus.PENDING, db_default=EventStatus.PENDING)
    attempts = models.IntegerField(default=0, db_default=0, help_text="Claims so far (counted at claim time).")
    available_at = models.DateTimeField(db_default=Now(), help_text="Not claimable before this instant.")
    locked_by = models.TextField(null=True, blank=True, help_text="Identity of the drainer holding the lease.")
    locked_until = models.DateTimeField(null=True, blank=True, help_text="End of the current lease.")
    last_error = models.TextField(default="", db_default="", blank=True)
    created_at = models.DateTimeField(db_default=Now())
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "outbox_event"
        verbose_name = "outbox event"
        ordering = ["-id"]
        permissions = [
            ("retry_outboxevent", "Can retry outbox events"),
            ("fail_outboxevent", "Can mark outbox events as failed"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=EventStatus.values), name="outbox_event_status_valid"),
            models.CheckConstraint(condition=models.Q(attempts__gte=0), name="outbox_event_attempts_nonnegative"),
        ]
        indexes = [
            # The claim index. The claim is `WHERE status='pending' AND available_at <= now()
            # ORDER BY id LIMIT n`: an index in id order returns the batch after reading
            # about n entries, with available_at checked inside the index (no heap visit
            # for leased or backing-off rows). Partial, so done rows never enter it and a
            # claim stays O(batch) however large the table grows.
            models.Index(
                fields=["id", "available_at"],
                name="outbox_event_claim_idx",
                condition=models.Q(status="pending"),
            ),
            # Leases in force, for the dead-holder rescue and the "processing" count.
            models.Index(
                fields=["locked_by"],
                name="outbox_event_leased_idx",
                condition=models.Q(status="pending", locked_by__isnull=False),
            ),
            # Retention purge and the throughput view read done rows by processed_at.
            models.Index(
                fields=["processed_at"],
                name="outbox_event_done_idx",
                condition=models.Q(status="done"),
            ),
            # The admin and operations (migration 0002). Failed events in id order: the
            # admin's "failed" filter, the outbox_failures view, outbox_retry. Partial,
            # so the insert/claim/ack path only evaluates its predicate.
            models.Index(
                fields=["id"],
                name="outbox_event_failed_idx",
                condition=models.Q(status="failed"),
            ),
            # The admin's "has error" filter; rare rows, so nearly free to keep.
            models.Index(
                fields=["id"],
                name="outbox_event_error_idx",
                condition=~models.Q(last_error=""),
            ),
            # Exact look-up by key: the admin's search, the link from a domain row to its
            # event, backfill's "already pending?" check. Hash, not btree: keys are
            # random (UUIDs), and a hash entry is small and fixed-size whatever the key's
            # length; measured +16% WAL on insert/claim/ack against +42% for a btree.
            HashIndex(fields=["key"], name="outbox_event_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.topic}#{self.id} ({self.status})"
