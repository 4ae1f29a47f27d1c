"""The monitoring role's window: views of the drainers' sessions, the database's open
transactions and lock waits, the leases and the retention, through SECURITY DEFINER
functions that leave out query text and other databases; outbox_stats_by_topic() runs with
its owner's rights too, and none of these functions is callable by PUBLIC. The SQL
lives in outbox/sql/monitoring.sql, read here (see 0002 for why). One transaction: the
file pins the search_path its functions keep for that transaction only.
"""

from pathlib import Path

from django.db import migrations

MONITORING_SQL = Path(__file__).resolve().parent.parent / "sql" / "monitoring.sql"


def monitoring_sql() -> str:
    return MONITORING_SQL.read_text(encoding="utf-8")


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0004_order_buckets"),
    ]

    operations = [
        migrations.RunSQL(
            sql=monitoring_sql(),
            reverse_sql=(
                "DROP VIEW IF EXISTS outbox_retention, outbox_leases, outbox_sessions, outbox_drainers;"
                "DROP FUNCTION IF EXISTS outbox_session_rows(), outbox_drainer_sessions();"
                "ALTER FUNCTION outbox_stats_by_topic() SECURITY INVOKER RESET search_path;"
                "GRANT EXECUTE ON FUNCTION outbox_stats_by_topic(), outbox_stats_topic_shares() TO PUBLIC;"
            ),
        ),
    ]
