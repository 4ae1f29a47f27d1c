# The drainer's write path, tuned by what bench/profile_drain.py measured
# (docs/BENCHMARKS.md): each CrawlResult is inserted once and updated once, when
# its event is handled (history_record_status, _reason, history_recorded, _at).
#
# * No index on history_record_status: with an indexed column changing, every one
#   of those updates wrote a new entry into each of the table's five indexes.
#   Without it, and with free room on the page (the fill factor below), the update
#   is HOT: one new tuple version on the same page, no index entry. The update of
#   a batch's results took about a third of the time in the bench. Who filtered
#   by that column (the admin's status filter, the backfill's selection) reads the
#   table instead; both are occasional.
# * No separate index on the product foreign keys: pricing_cr_product_crawled and
#   pricing_ph_product_latest start with product_id and serve the same lookups
#   (and the cascade on product delete), so each insert maintains one index less.
# * fillfactor 60 on pricing_crawlresult: inserts leave 40% of each page free, the
#   room the HOT updates of the page's rows need (the rows of a page are usually
#   updated in the same batch, so pruning cannot free room between them). The
#   table takes about 1.6 times the space. It applies to pages written from now
#   on; existing rows keep their packing until the table is rewritten.
#
# Indexes dropped CONCURRENTLY (a non-atomic migration), so writers are not
# blocked on a large table.

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("pricing", "0002_crawled_at_index"),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name="crawlresult",
            name="pricing_cr_record_status",
        ),
        # State: the foreign keys lose db_index. Database: only their indexes go,
        # concurrently. (A plain AlterField would also drop and re-add each foreign
        # key constraint, re-checking every row under a lock.)
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="crawlresult",
                    name="product",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="crawl_results",
                        to="pricing.product",
                    ),
                ),
                migrations.AlterField(
                    model_name="pricehistory",
                    name="product",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="price_history",
                        to="pricing.product",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql="DROP INDEX CONCURRENTLY IF EXISTS pricing_crawlresult_product_id_ab4ccccf",
                    reverse_sql="CREATE INDEX CONCURRENTLY IF NOT EXISTS pricing_crawlresult_product_id_ab4ccccf "
                    "ON pricing_crawlresult (product_id)",
                ),
                migrations.RunSQL(
                    sql="DROP INDEX CONCURRENTLY IF EXISTS pricing_pricehistory_product_id_44e10ee4",
                    reverse_sql="CREATE INDEX CONCURRENTLY IF NOT EXISTS pricing_pricehistory_product_id_44e10ee4 "
                    "ON pricing_pricehistory (product_id)",
                ),
            ],
        ),
        migrations.RunSQL(
            sql="ALTER TABLE pricing_crawlresult SET (fillfactor = 60)",
            reverse_sql="ALTER TABLE pricing_crawlresult RESET (fillfactor)",
        ),
    ]
