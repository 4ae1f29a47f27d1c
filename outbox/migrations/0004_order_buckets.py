"""Per-key order by bucket ownership (docs/guarantees.md#per-key-order).

* ``outbox_event.bucket``: the order bucket the trigger writes (nullable, so adding
  it rewrites nothing).
* ``outbox_bucket``: one row per (topic, bucket), the drainer that may claim its
  events; ``outbox_drainer``: the drainers running now.
* The claim index becomes ``(topic, id, bucket)``: a claim reads about a batch of entries
  per topic it handles, whatever other topics have pending. The index of leased rows
  goes: nothing reads it any more, and without it no column a claim changes is
  indexed (the claim's update can be HOT).

Not atomic: the new index is built CONCURRENTLY (a plain CREATE INDEX would block
every writer of outbox_event, so every CrawlResult insert, while it builds) and the
old ones are dropped CONCURRENTLY after it exists. Drainers of the previous version
keep working meanwhile, more slowly once their index is gone: restart them on the
new code after migrating (docs/operations.md#upgrading).
"""

import django.contrib.postgres.fields
import django.db.models.functions.datetime
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0003_autovacuum"),
    ]

    operations = [
        migrations.CreateModel(
            name="OutboxBucket",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "topic", "bucket", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("topic", models.TextField()),
                ("bucket", models.SmallIntegerField()),
                ("owner", models.TextField(blank=True, help_text="The owning drainer's identity.", null=True)),
                ("owned_since", models.DateTimeField(blank=True, null=True)),
            ],
            options={"db_table": "outbox_bucket"},
        ),
        migrations.AddConstraint(
            model_name="outboxbucket",
            constraint=models.CheckConstraint(
                condition=models.Q(("bucket__gte", 0), ("bucket__lt", 256)), name="outbox_bucket_in_range"
            ),
        ),
        migrations.CreateModel(
            name="OutboxDrainer",
            fields=[
                (
                    "name",
                    models.TextField(
                        help_text="Its identity, also its sessions' application_name.",
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "topics",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.TextField(), help_text="The topics it handles.", size=None
                    ),
                ),
                ("host", models.TextField()),
                ("pid", models.IntegerField()),
                ("direct", models.BooleanField(default=True)),
                ("started_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("seen_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
            ],
            options={"db_table": "outbox_drainer"},
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="bucket",
            field=models.SmallIntegerField(
                blank=True,
                help_text="Order bucket, hash(order key) mod 256; null for a topic without an order key.",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="attempts",
            field=models.IntegerField(
                db_default=0,
                default=0,
                help_text="Handler runs so far: counted by the ack, or just before a run alone (docs/guarantees.md).",
            ),
        ),
        migrations.RenameIndex(
            model_name="outboxevent", new_name="outbox_event_claim_v1_idx", old_name="outbox_event_claim_idx"
        ),
        AddIndexConcurrently(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("status", "pending")), fields=["topic", "id", "bucket"], name="outbox_event_claim_idx"
            ),
        ),
        RemoveIndexConcurrently(model_name="outboxevent", name="outbox_event_claim_v1_idx"),
        RemoveIndexConcurrently(model_name="outboxevent", name="outbox_event_leased_idx"),
    ]
