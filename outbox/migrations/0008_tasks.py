"""outbox_task_result: what the runs of a django.tasks task left (outbox.tasks).

One row per task, keyed by its outbox event; the foreign key is made here, with ON
DELETE CASCADE, so that purging an event (any path: outbox_purge, the drainer's
retention, the admin) takes its result with it.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0007_stats_lag"),
    ]

    operations = [
        migrations.CreateModel(
            name="OutboxTaskResult",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="task_result",
                        serialize=False,
                        to="outbox.outboxevent",
                    ),
                ),
                ("started_at", models.DateTimeField(help_text="When the first run that ended began.")),
                ("last_attempted_at", models.DateTimeField(help_text="When the latest run that ended began.")),
                (
                    "finished_at",
                    models.DateTimeField(help_text="When the latest run that ended returned or raised."),
                ),
                (
                    "return_value",
                    models.JSONField(blank=True, help_text="The JSON the successful run returned.", null=True),
                ),
                (
                    "errors",
                    models.JSONField(
                        default=list, help_text="One {exception_class_path, traceback} per run that raised."
                    ),
                ),
                (
                    "worker_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.TextField(),
                        default=list,
                        help_text="The drainer of each run that ended.",
                        size=None,
                    ),
                ),
            ],
            options={
                "db_table": "outbox_task_result",
            },
        ),
        migrations.RunSQL(
            sql=(
                "ALTER TABLE outbox_task_result ADD CONSTRAINT outbox_task_result_event_fk "
                "FOREIGN KEY (event_id) REFERENCES outbox_event (id) ON DELETE CASCADE"
            ),
            reverse_sql="ALTER TABLE outbox_task_result DROP CONSTRAINT outbox_task_result_event_fk",
        ),
    ]
