"""Give the pending events written before 0005 the order bucket the trigger now writes.

In chunks of 10,000 rows, each its own short transaction (the migration is not
atomic), so a long backlog is never locked at once and drainers keep draining; an
event a drainer holds locked right now is skipped and picked up by the next chunk.
Run before the drainers of the new version start: those claim an ordered topic's
events by bucket, and treat an event without one as bucket 0 until it has its own.
"""

from django.db import migrations

TOPIC = "pricing.crawl_result.created"
CHUNK = 10_000

# The trigger's bucket of the same product id (outbox.triggers.bucket_sql), read from
# the payload the trigger wrote; one chunk of the oldest events still without one.
BUCKET_CHUNK = """
WITH chunk AS (
    SELECT id
    FROM outbox_event
    WHERE status = 'pending' AND topic = %(topic)s AND bucket IS NULL AND payload ? 'product_id'
    ORDER BY id
    LIMIT %(chunk)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_event AS e
SET bucket = (hashtextextended((e.payload ->> 'product_id'), 0) & 255)::smallint
FROM chunk
WHERE e.id = chunk.id
"""


def bucket_pending(apps, schema_editor):
    connection = schema_editor.connection
    while True:
        with connection.cursor() as cursor:
            cursor.execute(BUCKET_CHUNK, {"topic": TOPIC, "chunk": CHUNK})
            if cursor.rowcount < CHUNK:
                return


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("pricing", "0005_outbox_trigger_order_key"),
    ]

    operations = [
        migrations.RunPython(bucket_pending, migrations.RunPython.noop, elidable=True),
    ]
