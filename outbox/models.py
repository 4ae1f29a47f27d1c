"""The outbox tables: events, the order buckets, and the drainers that own them.

Life of an event (docs/guarantees.md has the diagram): ``pending`` --claim-->
``pending`` under a lease (locked_by, locked_until) --handler ok--> ``done``;
--handler raised--> ``pending`` after a backoff, or ``failed`` once its attempts
reach max_attempts; --drainer died--> claimed again, run alone.

Events of an ordered topic carry a ``bucket`` (a hash of their order key); a
drainer claims them only from the buckets it owns (``OutboxBucket``), so the
events of one key are handled by one drainer at a time, in order.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import HashIndex
from django.db import models
from django.db.models.functions import Now

from outbox.conf import BUCKETS


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
    bucket = models.SmallIntegerField(
        null=True,
        blank=True,
        help_text="Order bucket, hash(order key) mod 256; null for a topic without an order key.",
    )
    payload = models.JSONField(default=dict, db_default=models.Value({}, output_field=models.JSONField()))
    status = models.TextField(choices=EventStatus.choices, default=EventStatus.PENDING, db_default=EventStatus.PENDING)
    attempts = models.IntegerField(
        default=0,
        db_default=0,
        help_text="Handler runs so far: counted by the ack, or just before a run alone (docs/guarantees.md).",
    )
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
            # The claim index: a claim reads `WHERE status = 'pending' AND topic = t ORDER BY
            # id, bucket LIMIT n` for each topic it handles, about n entries, however many
            # done rows the table holds (partial) and however long a backlog of other topics
            # is ahead (topic first). bucket makes the claim's order one that only this index
            # gives (not the primary key). No column a claim changes is indexed, so the
            # claim's update can be HOT (docs/guarantees.md#the-claim).
            models.Index(
                fields=["topic", "id", "bucket"],
                name="outbox_event_claim_idx",
                condition=models.Q(status="pending"),
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


class OutboxBucket(models.Model):
    """Who may claim the events of one order bucket of one topic (null: nobody yet)."""

    pk = models.CompositePrimaryKey("topic", "bucket")
    topic = models.TextField()
    bucket = models.SmallIntegerField()
    owner = models.TextField(null=True, blank=True, help_text="The owning drainer's identity.")
    owned_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "outbox_bucket"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(bucket__gte=0, bucket__lt=BUCKETS), name="outbox_bucket_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic}/{self.bucket} ({self.owner or 'free'})"


class OutboxDrainer(models.Model):
    """A running drainer: what it handles and when it last said it was alive."""

    name = models.TextField(primary_key=True, help_text="Its identity, also its sessions' application_name.")
    topics = ArrayField(models.TextField(), help_text="The topics it handles.")
    host = models.TextField()
    pid = models.IntegerField()
    #: Whether the drainer keeps a session of its own on the server (not through a
    #: transaction-mode pooler): then a session gone from pg_stat_activity means it died.
    direct = models.BooleanField(default=True)
    started_at = models.DateTimeField(db_default=Now())
    seen_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "outbox_drainer"

    def __str__(self) -> str:
        return self.name


class OutboxTaskResult(models.Model):
    """What the runs of a ``django.tasks`` task left (outbox.tasks): one row per task.

    The task is its outbox event (its id is the task result's id); status, enqueue
    and finish times come from the event itself. This row is written by each run that
    ended, in the transaction that acks it, and goes with the event when it is purged
    (ON DELETE CASCADE, added by migration 0008).
    """

    event = models.OneToOneField(
        OutboxEvent, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="task_result"
    )
    started_at = models.DateTimeField(help_text="When the first run that ended began.")
    last_attempted_at = models.DateTimeField(help_text="When the latest run that ended began.")
    finished_at = models.DateTimeField(help_text="When the latest run that ended returned or raised.")
    return_value = models.JSONField(null=True, blank=True, help_text="The JSON the successful run returned.")
    errors = models.JSONField(default=list, help_text="One {exception_class_path, traceback} per run that raised.")
    worker_ids = ArrayField(models.TextField(), default=list, help_text="The drainer of each run that ended.")

    class Meta:
        db_table = "outbox_task_result"

    def __str__(self) -> str:
        return f"task {self.event_id}"
