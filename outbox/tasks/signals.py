"""What the task runner learns from the drainer's own signals (outbox.signals).

``handler_started`` tells it which drainer runs the batch (its identity is the
worker id of each run, its max_attempts says whether a run that raised was the
last); ``batch_acked`` ends a processing transaction, and with it the runs kept
for the drainer's re-run of a batch in halves.
"""

from __future__ import annotations

from typing import Any

from outbox import signals as drainer_signals


def connect(runner: Any, prefix: str) -> None:
    """Connect ``runner`` (a TaskRunner) to the drainer's signals for the topics that start
    with ``prefix`` (the task queues'); once per process."""

    def on_handler_started(sender: Any, drainer: Any, topic: str, **kwargs: Any) -> None:
        if topic.startswith(prefix):
            runner.worker_id = drainer.identity
            runner.max_attempts = drainer.settings.max_attempts

    def on_batch_acked(sender: Any, **kwargs: Any) -> None:
        runner.raised.clear()

    drainer_signals.handler_started.connect(on_handler_started, weak=False, dispatch_uid="outbox.tasks.worker")
    drainer_signals.batch_acked.connect(on_batch_acked, weak=False, dispatch_uid="outbox.tasks.forget")
