# Fill factor 40 on outbox_event, so the claim is a HOT update (bench/writers.py,
# docs/writers.md). An event is inserted once and updated twice: the claim (locked_by,
# locked_until, available_at: no indexed column since 0004) and the ack (status, so a
# new entry in every index whose predicate it meets). The claim can be HOT only with
# room for the new version on the row's page; packed full (the default, 100), the
# claim moved nearly every row to another page: an entry in each of three indexes,
# a full new tuple and a lock record in the WAL. With half of each page left free:
#
# * the claim is HOT for nearly every event (no index entry, a small WAL record);
# * the ack's new version stays on the same page (pruning frees the claimed-away
#   version first), a compressed WAL record instead of a lock and a whole tuple;
# * measured per event's life (insert, claim, ack): WAL 2,050 -> 1,220 bytes, index
#   entries 8.8 -> 6.2; and the table is smaller afterwards, not larger (760 against
#   1,030 heap bytes per event), since updated rows no longer spill onto new pages.
#
# ALTER TABLE ... SET (fillfactor) changes metadata only (SHARE UPDATE EXCLUSIVE
# lock, no rewrite, writers go on): it applies to pages filled from now on, so on a
# big table the effect comes as the purge frees old pages and new events fill them.

from django.db import migrations

FILLFACTOR = 40


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0007_stats_lag"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"ALTER TABLE outbox_event SET (fillfactor = {FILLFACTOR})",
            reverse_sql="ALTER TABLE outbox_event RESET (fillfactor)",
        ),
    ]
