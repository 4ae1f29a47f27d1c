"""Shutdown under load.

What it proves: the first SIGTERM or SIGINT lets the drainer finish the batch it is in and
exit 0 (the batch committed, the next one never claimed); a second signal ends it
at once, by that signal: its transaction rolls back, nothing of the batch is
applied, and the events come back through the dead-drainer rescue to another
drainer, which applies each exactly once.

No race with the clock: the first event's handler waits, in the batch's
transaction, for an advisory lock the test holds; the test sends its signals while
it sees the drainer's session waiting on that lock, then releases it.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import psycopg
import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.fault.conftest import all_settled, assert_queue_settled
from tests.poison.apps import POISON_TOPIC
from tests.support import DrainerProcess, drainer_env, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("poison_effect"),
    pytest.mark.process,
    pytest.mark.fault,
]

BATCH = 10


def make_events(lock: int) -> list[int]:
    """Two batches; the handler of the first event waits for the advisory lock ``lock``."""
    events = OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                topic=POISON_TOPIC,
                key=f"q{i}",
                payload={"action": "wait_for_lock", "lock": lock} if i == 0 else {"action": "ok"},
            )
            for i in range(2 * BATCH)
        ]
    )
    return [e.id for e in events]


def waiting_on(lock: int) -> bool:
    """Is a drainer's session waiting for the advisory lock ``lock`` right now?"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.objid = %s AND NOT l.granted AND a.application_name LIKE 'outbox:%%'",
            [lock],
        )
        return cursor.fetchone() is not None


def effects() -> Counter[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM poison_effect")
        return Counter(row[0] for row in cursor.fetchall())


def drainer() -> DrainerProcess:
    return DrainerProcess(["--batch-size", str(BATCH), "--interval", "0.2"], env=drainer_env("tests.settings_poison"))


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_first_signal_finishes_the_batch_then_exits_0(
    first: signal.Signals, held_lock: tuple[psycopg.Connection, int]
) -> None:
    conn, lock = held_lock
    ids = make_events(lock)
    d = drainer()
    try:
        wait_until(lambda: waiting_on(lock), timeout=60, message="the drainer busy in its first batch")
        d.send(first)
        wait_until(lambda: "finishing the current batch" in d.output(), timeout=10, message="the signal seen")
        assert waiting_on(lock), "the batch ended before the test let it: the test proves nothing"
        conn.execute("SELECT pg_advisory_unlock(%s)", [lock])
        started = time.monotonic()
        code = d.wait(30)
        elapsed = time.monotonic() - started
        output = d.output()
    finally:
        d.close()
    assert code == 0, f"exit code {code} after one {first.name}:\n{output[-3000:]}"
    assert elapsed < 15, f"took {elapsed:.1f}s to finish one batch and exit"
    assert "finishing the current batch" in output, output[-3000:]
    batch, rest = ids[:BATCH], ids[BATCH:]
    done = set(OutboxEvent.objects.filter(status="done").values_list("id", flat=True))
    assert done == set(batch), f"done after {first.name}: {sorted(done)}; expected the first batch {batch}"
    assert effects() == Counter(batch), f"effects after {first.name}: {effects()}"
    untouched = OutboxEvent.objects.filter(id__in=rest, status="pending", attempts=0, locked_by=None).count()
    assert untouched == BATCH, f"the second batch was claimed after {first.name}"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_exits_at_once_and_the_batch_comes_back(
    second: signal.Signals, held_lock: tuple[psycopg.Connection, int]
) -> None:
    conn, lock = held_lock
    ids = make_events(lock)
    d = drainer()
    rescuer: DrainerProcess | None = None
    try:
        wait_until(lambda: waiting_on(lock), timeout=60, message="the drainer busy in its first batch")
        d.send(signal.SIGTERM)
        wait_until(lambda: "finishing the current batch" in d.output(), timeout=10, message="the first signal seen")
        d.send(second)
        started = time.monotonic()
        code = d.wait(10)
        elapsed = time.monotonic() - started
        assert code == -second, f"exit code {code} after a second {second.name}, expected death by it"
        assert elapsed < 5, f"took {elapsed:.1f}s to exit after the second signal"
        assert not effects(), f"a batch cut short by the second signal left effects: {effects()}"
        # Its backend goes with it, though waiting inside a statement: the session
        # checks for its client (client_connection_check_interval). The rescue then
        # hands its events to the next drainer. The lock is released first, so the
        # next run of the handler does not wait.
        wait_until(lambda: not waiting_on(lock), timeout=10, message="the dead drainer's session gone")
        conn.execute("SELECT pg_advisory_unlock(%s)", [lock])
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
