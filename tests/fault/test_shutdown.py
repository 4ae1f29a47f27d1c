"""Shutdown under load (issue 4, point 4).

What it proves: the first SIGTERM lets the drainer finish the batch it is in and
exit 0 (the batch committed, the next one never claimed); a second signal ends it
at once, by that signal: its transaction rolls back, nothing of the batch is
applied, and the events come back through the dead-holder rescue to another
drainer, which applies each exactly once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.fault.conftest import all_settled, assert_queue_settled, lease_holder, sleeping_backend
from tests.poison.apps import POISON_TOPIC
from tests.support import DrainerProcess, drainer_env, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("poison_effect"),
    pytest.mark.process,
    pytest.mark.fault,
]

BATCH = 10


def make_events(sleep_seconds: float) -> list[int]:
    """Two batches; the handler of the first event sleeps ``sleep_seconds`` in its transaction."""
    events = OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                topic=POISON_TOPIC,
                key=f"q{i}",
                payload={"action": "sleep", "seconds": sleep_seconds} if i == 0 else {"action": "ok"},
            )
            for i in range(2 * BATCH)
        ]
    )
    return [e.id for e in events]


def effects() -> Counter[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM poison_effect")
        return Counter(row[0] for row in cursor.fetchall())


def drainer() -> DrainerProcess:
    return DrainerProcess(["--batch-size", str(BATCH), "--interval", "0.2"], env=drainer_env("tests.settings_poison"))


def test_sigterm_finishes_the_batch_then_exits_0() -> None:
    ids = make_events(sleep_seconds=1.5)
    d = drainer()
    try:
        identity = wait_until(lease_holder, timeout=60, message="a claim")
        wait_until(lambda: sleeping_backend(identity), timeout=30, message="the drainer busy in its first batch")
        d.send(signal.SIGTERM)
        started = time.monotonic()
        code = d.wait(30)
        elapsed = time.monotonic() - started
        output = d.output()
    finally:
        d.close()
    assert code == 0, f"exit code {code} after one SIGTERM:\n{output[-3000:]}"
    assert elapsed < 15, f"took {elapsed:.1f}s to finish one batch and exit"
    assert "finishing the current batch" in output, output[-3000:]
    first, second = ids[:BATCH], ids[BATCH:]
    done = set(OutboxEvent.objects.filter(status="done").values_list("id", flat=True))
    assert done == set(first), f"done after SIGTERM: {sorted(done)}; expected the first batch {first}"
    assert effects() == Counter(first), f"effects after SIGTERM: {effects()}"
    untouched = OutboxEvent.objects.filter(id__in=second, status="pending", attempts=0, locked_by=None).count()
    assert untouched == BATCH, "the second batch was claimed after SIGTERM"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_exits_at_once_and_the_batch_comes_back(second: signal.Signals) -> None:
    ids = make_events(sleep_seconds=60)
    d = drainer()
    rescuer: DrainerProcess | None = None
    try:
        identity = wait_until(lease_holder, timeout=60, message="a claim")
        wait_until(lambda: sleeping_backend(identity), timeout=30, message="the drainer busy in its first batch")
        d.send(signal.SIGTERM)
        wait_until(lambda: "finishing the current batch" in d.output(), timeout=10, message="the first signal seen")
        d.send(second)
        started = time.monotonic()
        code = d.wait(10)
        elapsed = time.monotonic() - started
        assert code == -second, f"exit code {code} after a second {second.name}, expected death by it"
        assert elapsed < 5, f"took {elapsed:.1f}s to exit after the second signal"
        assert not effects(), f"a batch cut short by the second signal left effects: {effects()}"
        # Its backend goes with it, though in the middle of a 60 s statement: the
        # session checks for its client (client_connection_check_interval). The
        # rescue then hands the leases to the next drainer, well before the dead
        # statement would have hit statement_timeout (30 s) and freed them.
        rescuer = drainer()
        wait_until(all_settled, timeout=20, message="the next drainer took the batch back")
        assert rescuer.stop(30) == 0, rescuer.output()[-3000:]
        output = rescuer.output()
    finally:
        d.close()
        if rescuer is not None:
            rescuer.close()
    assert "rescued" in output, output[-3000:]
    assert effects() == Counter(ids), f"effects (event: times): {sorted(effects().items())}"
    assert_queue_settled()
