# CHECK constraints on what a crawl result's values may be: confidence from 0 to 1
# (not NaN, not infinite), price not NaN, crawled_at finite and readable by Python.
# Without them 'NaN', 1.7 or 'Infinity' could be stored, and NaN passed the criteria
# (NaN < 0.85 is false). The criteria refuse such values anyway (should_auto_record,
# reason invalid_confidence): rows written before this migration keep them.
#
# Added NOT VALID: ALTER TABLE takes an ACCESS EXCLUSIVE lock, which blocks every
# reader and writer of pricing_crawlresult while it is held; NOT VALID makes it
# instant (no scan of the existing rows; new and updated rows are checked at once).
# lock_timeout: if a long transaction holds the table, give up after 10 s instead of
# queueing, with every writer queued behind us; run migrate again later. The rows
# already there are checked by 0008, VALIDATE CONSTRAINT, which takes a lock that
# lets reads and writes go on while it scans.

import datetime
from decimal import Decimal

from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("pricing", "0006_bucket_pending_events"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '10s'", reverse_sql=migrations.RunSQL.noop),
        AddConstraintNotValid(
            model_name="crawlresult",
            constraint=models.CheckConstraint(
                condition=models.Q(("confidence__gte", 0), ("confidence__lte", 1)), name="pricing_cr_confidence_0_1"
            ),
        ),
        AddConstraintNotValid(
            model_name="crawlresult",
            constraint=models.CheckConstraint(
                condition=models.Q(("price__lte", Decimal("9999999999.99"))), name="pricing_cr_price_not_nan"
            ),
        ),
        AddConstraintNotValid(
            model_name="crawlresult",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("crawled_at__gt", datetime.datetime(1, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)),
                    ("crawled_at__lt", datetime.datetime(9999, 12, 31, 0, 0, tzinfo=datetime.timezone.utc)),
                ),
                name="pricing_cr_crawled_at_finite",
            ),
        ),
    ]
