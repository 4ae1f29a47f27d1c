# Check the rows written before 0007 against its constraints: VALIDATE CONSTRAINT
# scans the table under a SHARE UPDATE EXCLUSIVE lock, so reads and writes go on
# meanwhile. Not atomic: each VALIDATE commits on its own, and none waits for the
# scan of another.
#
# A row that breaks a constraint stops migrate with the query that finds such rows;
# the constraint stays in place, NOT VALID (new rows are checked). Fix or delete
# them, then run migrate again: this migration is only recorded once every
# constraint is valid. Until then the criteria skip such rows (invalid_confidence,
# invalid_price), the handler fails their events with a message naming them, and
# the admin shows them as PostgreSQL prints them.

from django.contrib.postgres.operations import ValidateConstraint
from django.core.management.base import CommandError
from django.db import IntegrityError, migrations


class ValidateOrExplain(ValidateConstraint):
    """VALIDATE CONSTRAINT; rows that break it stop migrate with a query that lists them."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        try:
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        except IntegrityError as exc:
            model = from_state.apps.get_model(app_label, self.model_name)
            table = model._meta.db_table
            with schema_editor.connection.cursor() as cursor:
                # The constraint's own expression, as PostgreSQL prints it.
                cursor.execute(
                    "SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint "
                    "WHERE conrelid = to_regclass(%s) AND conname = %s",
                    [table, self.name],
                )
                (expression,) = cursor.fetchone()
            raise CommandError(
                f"rows of {table} break the constraint {self.name} ({expression}), added NOT VALID by "
                f"{app_label} 0007: new rows are checked, these old ones are not. List them with "
                f"SELECT * FROM {table} WHERE NOT ({expression}); fix or delete them, then run migrate again"
            ) from exc


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("pricing", "0007_crawl_result_value_checks"),
    ]

    operations = [
        ValidateOrExplain(model_name="crawlresult", name="pricing_cr_confidence_0_1"),
        ValidateOrExplain(model_name="crawlresult", name="pricing_cr_price_not_nan"),
        ValidateOrExplain(model_name="crawlresult", name="pricing_cr_crawled_at_finite"),
    ]
