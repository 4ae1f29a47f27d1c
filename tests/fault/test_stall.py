"""A drainer stopped with SIGSTOP for longer than its lease, then continued.

What it proves (DESIGN invariant 2, stalled drainer): the stopped drainer's events
are taken over by another drainer once the lease runs out, and when the stopped
one wakes up it applies nothing: effects happen exactly once, by the drainer that
took over. Two places to stop: in the middle of the processing transaction (the
server ends the idle session after ``idle_in_transaction_session_timeout`` = lease,
which also frees the rows it had locked), and between the claim and the processing
transaction (no transaction open: the fenced re-lock finds the events gone).
The lease is 2 s here so the test is quick; the mechanism is the same at 60 s.
"""

from __future__ import annotations

import signal
from collections import Counter

import psutil
import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.fault.conftest import all_settled, assert_queue_settled
from tests.poison.apps import POISON_TOPIC
from tests.support import DrainerProcess, drainer_backends, drainer_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

LEASE = 2.0
EVENTS = 30
STALL_AT = 12


def is_stopped(process: DrainerProcess) -> bool:
    return psutil.Process(process.pid).status() == psutil.STATUS_STOPPED


def effects() -> Counter[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, pid FROM poison_effect")
        return Counter(row[0] for row in cursor.fetchall())


def effect_pids() -> dict[int, set[int]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, array_agg(DISTINCT pid) FROM poison_effect GROUP BY 1")
        return {event_id: set(pids) for event_id, pids in cursor.fetchall()}


def make_events(stall_action: str) -> list[int]:
    events = OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(topic=POISON_TOPIC, key=f"s{i}", payload={"action": stall_action if i == STALL_AT else "ok"})
            for i in range(EVENTS)
        ]
    )
    return [e.id for e in events]


def drainer(*extra: str) -> DrainerProcess:
    args = ["--lease", str(LEASE), "--interval", "0.2", "--batch-size", "100", *extra]
    return DrainerProcess(args, env=drainer_env("tests.settings_poison"))


def assert_applied_once_by(ids: list[int], pid: int) -> None:
    applied = effects()
    doubled = {i: n for i, n in applied.items() if n > 1}
    assert not doubled, f"events applied more than once (id: times): {doubled}"
    missing = sorted(set(ids) - set(applied))
    assert not missing, f"events never applied: {missing}"
    by_other = {i: pids for i, pids in effect_pids().items() if pids != {pid}}
    assert not by_other, f"effects applied by the stalled drainer, not the one that took over: {by_other}"


@pytest.mark.usefixtures("poison_effect")
def test_stopped_mid_transaction_past_the_lease_applies_nothing_when_it_wakes() -> None:
    ids = make_events("stall")
    stalled = drainer()
    rescuer: DrainerProcess | None = None
    try:
        # It claims the batch, applies a dozen effects in its transaction, then stops.
        wait_until(lambda: is_stopped(stalled), timeout=60, message="the first drainer stopped itself mid-batch")
        assert OutboxEvent.objects.filter(status="done").count() == 0, "nothing may commit before the stall"
        rescuer = drainer()
        # The server ends the stalled session after the lease (idle in transaction),
        # rolling its effects back; the lease runs out; the rescuer takes over.
        wait_until(all_settled, timeout=60, message="the rescuer finished the stalled drainer's batch")
        assert is_stopped(stalled), "the stalled drainer woke up early: the test proves nothing"
        assert_applied_once_by(ids, rescuer.pid)
        stalled.send(signal.SIGCONT)
        # Awake, its next statement finds the session gone: it reconnects and goes on.
        wait_until(
            lambda: "reconnected after" in stalled.output(),
            timeout=30,
            message="the woken drainer noticed its lost session and reconnected",
        )
        assert stalled.stop(30) == 0, f"the woken drainer did not stop cleanly:\n{stalled.output()[-3000:]}"
        assert rescuer.stop(30) == 0, f"the rescuer did not stop cleanly:\n{rescuer.output()[-3000:]}"
        assert_applied_once_by(ids, rescuer.pid)
        assert_queue_settled()
        assert "Traceback" not in stalled.output(), stalled.output()[-3000:]
    finally:
        stalled.send(signal.SIGCONT)
        stalled.close()
        if rescuer is not None:
            rescuer.close()


@pytest.mark.usefixtures("poison_effect")
def test_stopped_between_claim_and_processing_past_the_lease_applies_nothing_when_it_wakes() -> None:
    ids = make_events("stall_after_claim")
    stalled = drainer()
    rescuer: DrainerProcess | None = None
    try:
        wait_until(lambda: is_stopped(stalled), timeout=60, message="the first drainer stopped right after its claim")
        # Stopped outside any transaction: its session stays, idle, and keeps its name,
        # so only the lease (not the dead-holder rescue) hands its events over.
        holders = set(OutboxEvent.objects.filter(status="pending").values_list("locked_by", flat=True))
        assert len(holders) == 1 and None not in holders, f"the batch should be leased by one drainer: {holders}"
        assert holders <= set(drainer_backends()), "the stalled drainer's session should still be connected"
        rescuer = drainer()
        wait_until(all_settled, timeout=60, message="the rescuer processed the batch after the lease ran out")
        assert is_stopped(stalled), "the stalled drainer woke up early: the test proves nothing"
        stalled.send(signal.SIGCONT)
        wait_until(
            lambda: "lease lost on" in stalled.output(),
            timeout=30,
            message="the woken drainer found its leases lost and applied nothing",
        )
        assert stalled.stop(30) == 0, f"the woken drainer did not stop cleanly:\n{stalled.output()[-3000:]}"
        assert rescuer.stop(30) == 0, f"the rescuer did not stop cleanly:\n{rescuer.output()[-3000:]}"
        assert_applied_once_by(ids, rescuer.pid)
        assert_queue_settled()
    finally:
        stalled.send(signal.SIGCONT)
        stalled.close()
        if rescuer is not None:
            rescuer.close()
