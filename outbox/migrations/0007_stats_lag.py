"""outbox_stats: the lag per topic, counts that are exact where cheap, no blank rows.

Runs outbox/sql/views.sql again (it is written to be re-run): the view gains
``oldest_available_at`` and ``lag_seconds`` (the age of the oldest event claimable
now, beside the creation age), counts exactly below 200,000 rows whatever the
table's bloat, and attributes every estimated done row to a topic. The view is
replaced in place, so grants on it (docs/monitoring.sql) are kept; its function is
renamed outbox_stats_by_topic() because a function's result columns cannot change,
and made SECURITY DEFINER again by outbox/sql/monitoring.sql (as 0005 did the old one).
"""

from importlib import import_module

from django.db import migrations

views_sql = import_module("outbox.migrations.0002_operations").views_sql
monitoring_sql = import_module("outbox.migrations.0005_monitoring").monitoring_sql


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0006_throughput_wait"),
    ]

    operations = [
        # views.sql replaces the function, which resets its rights: monitoring.sql after it.
        migrations.RunSQL(sql=views_sql() + "\n" + monitoring_sql(), reverse_sql=migrations.RunSQL.noop),
    ]
