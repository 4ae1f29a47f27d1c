"""outbox_throughput gains wait_seconds (a sample of the lag per minute), and
outbox_throughput_day is the same per 15 minutes over 24 hours: the admin's chart.

Both read outbox_throughput_rows(span, step). Runs outbox/sql/views.sql again (it
is written to be re-run), then outbox/sql/monitoring.sql, which makes the new
function SECURITY DEFINER like outbox_stats_rows() (re-creating that one reset it).
The views are replaced in place, so their grants are kept.
"""

from importlib import import_module

from django.db import migrations

views_sql = import_module("outbox.migrations.0002_operations").views_sql
monitoring_sql = import_module("outbox.migrations.0005_monitoring").monitoring_sql


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0005_monitoring"),
    ]

    operations = [
        migrations.RunSQL(sql=views_sql() + "\n" + monitoring_sql(), reverse_sql=migrations.RunSQL.noop),
    ]
