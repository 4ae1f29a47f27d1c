"""Documented drainer knobs, each run by a real drain_outbox process and shown to do
what docs/operations.md and docs/guarantees.md say (issue 16 point 9):

* ``--no-notify``: no LISTEN session; events written after the start are still
  taken, by the poll;
* ``--retry-failed-every``: failed events go back to pending on the timer, while the
  drainer runs (not only at its start), attempts reset;
* ``RESCUE_INTERVAL = 0``: no rescue: a dead drainer's unordered events come back
  when their lease runs out, not before, and its ``outbox_drainer`` row stays; its
  order buckets are taken over all the same.

STATEMENT_TIMEOUT and LOCK_TIMEOUT: tests/integration/test_drainer_timeouts.py; a
first SIGINT: test_shutdown.py.
"""

from __future__ import annotations

import signal

import psycopg
import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.poison.apps import POISON_TOPIC, RESCUE_INTERVAL_ENV
from tests.support import DrainerProcess, drainer_env, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("poison_effect"),
    pytest.mark.process,
    pytest.mark.fault,
]


def identity_of(process: DrainerProcess) -> str | None:
    """The drainer identity (application_name) of a drainer process, once it is connected."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM outbox_drainer WHERE name LIKE %s", [f"outbox:%:{process.pid}:%"])
        row = cursor.fetchone()
    return row[0] if row else None


def sessions(identity: str) -> list[str]:
    """The last statement of each session of this drainer."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE application_name = %s", [identity])
        return [row[0] for row in cursor.fetchall()]


def poison(key: str, action: str, **payload: object) -> OutboxEvent:
    return OutboxEvent.objects.create(topic=POISON_TOPIC, key=key, payload={"action": action, **payload})


def status(event: OutboxEvent) -> tuple[str, int]:
    event.refresh_from_db()
    return event.status, event.attempts


def test_no_notify_listens_nowhere_and_polls() -> None:
    d = DrainerProcess(["--no-notify", "--interval", "0.3"], env=drainer_env("tests.settings_poison"))
    try:
        wait_until(d.started, timeout=60, message="the drainer started")
        identity = wait_until(lambda: identity_of(d), timeout=10, message="the drainer's identity")
        event = poison("late", "ok")  # written after the start: only the poll can find it
        wait_until(lambda: status(event)[0] == "done", timeout=10, message="the event taken by the poll")
        queries = sessions(identity)
        assert d.stop(30) == 0, d.output()[-3000:]
    finally:
        d.close()
    assert len(queries) == 1 and not queries[0].startswith("LISTEN"), (
        f"a --no-notify drainer has sessions {queries}: it should have one, and no LISTEN"
    )


def test_retry_failed_every_puts_failed_events_back_while_running() -> None:
    args = ["--retry-failed-every", "1", "--max-attempts", "1", "--interval", "0.2"]
    d = DrainerProcess(args, env=drainer_env("tests.settings_poison"))
    try:
        wait_until(d.started, timeout=60, message="the drainer started")
        event = poison("flaky", "raise")  # fails after the drainer's first retry pass
        wait_until(lambda: status(event) == ("failed", 1), timeout=10, message="the event failed")
        # The operator fixes the cause; the next pass of the timer puts it back, attempts reset.
        OutboxEvent.objects.filter(pk=event.pk).update(payload={"action": "ok"})
        wait_until(lambda: status(event)[0] == "done", timeout=10, message="the failed event retried and done")
        assert d.stop(30) == 0, d.output()[-3000:]
    finally:
        d.close()
    assert status(event) == ("done", 1), status(event)


def test_rescue_interval_0_leaves_a_dead_drainers_events_to_their_lease(
    held_lock: tuple[psycopg.Connection, int],
) -> None:
    conn, lock = held_lock
    env = drainer_env("tests.settings_poison", **{RESCUE_INTERVAL_ENV: "0"})
    # The lease: longer than the rebalance that hands the dead drainer's buckets over,
    # short enough for a quick test.
    args = ["--lease", "6", "--interval", "0.2"]
    drainers = [DrainerProcess(args, env=env), DrainerProcess(args, env=env)]
    try:
        for d in drainers:
            wait_until(d.started, timeout=60, message="the drainers started")
        event = poison("held", "wait_for_lock", lock=lock)
        wait_until(lambda: status(event)[0] == "pending" and event.locked_by, timeout=10, message="the claim")
        dead = str(event.locked_by)
        victim = next(d for d in drainers if f":{d.pid}:" in dead)
        survivor = next(d for d in drainers if d is not victim)
        victim.send(signal.SIGKILL)
        victim.wait(10)
        conn.execute("SELECT pg_advisory_unlock(%s)", [lock])  # the next run must not wait
        wait_until(lambda: not owns_buckets(dead), timeout=10, message="the dead drainer's buckets taken over")
        event.refresh_from_db()
        lease_end = event.locked_until
        assert (event.status, event.locked_by) == ("pending", dead), "the event was taken before its lease ran out"
        wait_until(lambda: status(event)[0] == "done", timeout=15, message="the event taken after its lease")
        still_known = known(dead)
        assert survivor.stop(30) == 0, survivor.output()[-3000:]
        output = survivor.output()
    finally:
        for d in drainers:
            d.close()
    assert lease_end is not None and event.processed_at >= lease_end, (
        f"taken at {event.processed_at}, before its lease ended at {lease_end}: something rescued it"
    )
    assert still_known, "the dead drainer's row was deleted: a rescue ran with RESCUE_INTERVAL = 0"
    assert "rescued" not in output, output[-3000:]


def owns_buckets(identity: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM outbox_bucket WHERE owner = %s LIMIT 1", [identity])
        return cursor.fetchone() is not None


def known(identity: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM outbox_drainer WHERE name = %s", [identity])
        return cursor.fetchone() is not None
