# Autovacuum settings for outbox_event, the busiest table of the project: every
# event is inserted once and updated twice (claim, ack), neither update can be HOT
# (each changes an indexed column: available_at/locked_by at the claim, status at
# the ack), and the retention purge deletes it later. That is two dead row
# versions and their index entries per event, in the claim index that every claim
# walks from its start.
#
# The server defaults vacuum a table once 20% of it is dead (scale factor 0.2): on
# an outbox that keeps a week of done events, millions of dead rows before the
# first vacuum. Here the threshold is a fixed number of rows, whatever the size:
#
# * autovacuum_vacuum_scale_factor 0, threshold 10000: vacuum after 10,000 dead
#   rows (a few seconds of a busy drain; autovacuum_naptime, 1 min by default,
#   bounds how often autovacuum looks).
# * autovacuum_vacuum_insert_*: the same after 10,000 inserts, so the visibility
#   map stays current (index-only scans for the queue counts).
# * autovacuum_analyze_*: statistics after 10,000 changed rows.
# * autovacuum_vacuum_cost_delay 0: vacuum this table at full speed; it is small
#   next to the domain tables and slow vacuuming is what lets dead entries pile up.
#
# What the bench measured (docs/BENCHMARKS.md): the same drain with a VACUUM of
# outbox_event every second, and a drain before, during and after a long
# transaction that pins the xmin horizon. These settings need autovacuum on (the
# server default); where it is off, vacuum the table from cron.

from django.db import migrations

SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0.0",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_vacuum_insert_scale_factor": "0.0",
    "autovacuum_vacuum_insert_threshold": "10000",
    "autovacuum_analyze_scale_factor": "0.0",
    "autovacuum_analyze_threshold": "10000",
    "autovacuum_vacuum_cost_delay": "0",
}


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0002_operations"),
    ]

    operations = [
        migrations.RunSQL(
            sql="ALTER TABLE outbox_event SET ({})".format(", ".join(f"{k} = {v}" for k, v in SETTINGS.items())),
            reverse_sql="ALTER TABLE outbox_event RESET ({})".format(", ".join(SETTINGS)),
        ),
    ]
