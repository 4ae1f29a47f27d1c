"""Operations: the indexes the admin and the commands need, and the monitoring views.

The indexes are built CONCURRENTLY (so the migration is not atomic): on a live
outbox of millions of rows, a plain CREATE INDEX would hold a lock that blocks
every insert into outbox_event, and with it every CrawlResult writer, for as long
as the build takes. If a concurrent build fails it leaves an INVALID index behind:
drop it and migrate again.

The views' SQL lives in outbox/sql/views.sql, read here, so that it is reviewed as
SQL; it is read when the migration runs, so editing that file later means adding a
migration that runs it again (CREATE OR REPLACE VIEW).
"""

from pathlib import Path

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

VIEWS_SQL = Path(__file__).resolve().parent.parent / "sql" / "views.sql"


def views_sql() -> str:
    return VIEWS_SQL.read_text(encoding="utf-8")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("status", "failed")), fields=["id"], name="outbox_event_failed_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="outboxevent",
            index=models.Index(
                condition=models.Q(("last_error", ""), _negated=True), fields=["id"], name="outbox_event_error_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="outboxevent",
            index=django.contrib.postgres.indexes.HashIndex(fields=["key"], name="outbox_event_key_idx"),
        ),
        migrations.RunSQL(
            sql=views_sql(),
            reverse_sql=(
                "DROP VIEW IF EXISTS outbox_throughput, outbox_failures, outbox_stats;"
                "DROP FUNCTION IF EXISTS outbox_stats_rows(), outbox_stats_by_topic(), outbox_stats_topic_shares();"
            ),
        ),
    ]
