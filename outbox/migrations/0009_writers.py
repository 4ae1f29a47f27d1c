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
# * measured per event's life (insert, claim, ack; bench/writers.py, PostgreSQL 15):
#   WAL 2,052 -> 1,176 bytes, index entries 8.8 -> 6.0 (3 at insert, 0 at the claim,
#   3 at the ack: the floor while the ack changes status); at 50 a few claims still
#   found their page full (6.2 entries), at 70 more than half of them did (7.6).
#
# Right after a drain the table is not larger for it: rows updated in place leave no
# new versions on other pages (heap bytes per event: 1,027 at 100, 912 at 40). In
# the steady state it is: new rows fill a page only to 40%, so the done events kept
# for RETENTION take up to 2.5 times the space (bench/metrics.json: 10,000,000 done
# events in 6.93 GiB of heap, 2.63 GiB at 100; docs/scaling.md).
#
# ALTER TABLE ... SET (fillfactor) changes metadata only (SHARE UPDATE EXCLUSIVE
# lock, no rewrite, writers go on): it applies to pages filled from now on, so on a
# big table the effect comes as the purge frees old pages and new events fill them.

from django.db import migrations

FILLFACTOR = 40


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0008_tasks"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"ALTER TABLE outbox_event SET (fillfactor = {FILLFACTOR})",
            reverse_sql="ALTER TABLE outbox_event RESET (fillfactor)",
        ),
    ]
