# Built CONCURRENTLY: pricing_crawlresult is large and written all the time in
# production, and a plain CREATE INDEX would block every writer while it builds.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("pricing", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="crawlresult",
            index=models.Index(fields=["crawled_at", "id"], name="pricing_cr_crawled_id"),
        ),
    ]
