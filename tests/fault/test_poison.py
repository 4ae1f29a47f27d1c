"""Poison events: a handler that always raises, and one that kills its process.

What it proves (DESIGN invariant 3): both kinds end ``failed`` after max_attempts
(the handler ran exactly max_attempts times, counted from a trace written before
each run, even by runs whose process died), the drainers survive them (a killed
drainer is restarted by the supervisor, as systemd would), every other event is
``done`` with its effect applied exactly once, and the process-killing event never
takes its neighbours' attempts with it: after the first crash it runs alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.fault.conftest import all_settled, assert_queue_settled
from tests.poison.apps import POISON_EXIT_CODE, POISON_TOPIC, TRACE_ENV
from tests.support import DrainerPool, Supervisor, drainer_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

EVENTS = 300
BATCH = 50
MAX_ATTEMPTS = 3
RAISING = (10, 60, 260)  # positions of the events whose handler always raises
EXITING = 175  # position of the event whose handler calls os._exit


def read_trace(path: Path) -> dict[int, list[tuple[str, int, int]]]:
    """event id -> [(action, attempt, pid)] for every handler run, in order."""
    runs: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        event_id, action, attempt, pid = line.split()
        runs[int(event_id)].append((action, int(attempt), int(pid)))
    return runs


@pytest.mark.usefixtures("poison_effect")
def test_raising_and_process_killing_events_fail_after_max_attempts_and_block_nothing(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.touch()

    def action(position: int) -> str:
        if position == EXITING:
            return "exit"
        return "raise" if position in RAISING else "ok"

    events = OutboxEvent.objects.bulk_create(
        [OutboxEvent(topic=POISON_TOPIC, key=f"k{i}", payload={"action": action(i)}) for i in range(EVENTS)]
    )
    ids = [e.id for e in events]
    exiting = ids[EXITING]
    raising = {ids[i] for i in RAISING}
    ok = set(ids) - raising - {exiting}

    env = drainer_env("tests.settings_poison", **{TRACE_ENV: str(trace)})
    args = ["--batch-size", str(BATCH), "--max-attempts", str(MAX_ATTEMPTS), "--interval", "0.2"]
    pool = DrainerPool(2, args, env=env)
    supervisor = Supervisor(pool)  # restarts a drainer that died, as systemd would
    try:
        supervisor.start()
        wait_until(all_settled, timeout=90, message="every poison test event done or failed")
        supervisor.stop()
        codes = pool.stop()
    except BaseException:
        supervisor.stop()
        print(pool.output())
        raise
    finally:
        logs = pool.output(1200)
        pool.close()

    assert codes == [0, 0], f"the surviving drainers exited with {codes}:\n{logs}"
    assert supervisor.deaths == [POISON_EXIT_CODE] * MAX_ATTEMPTS, (
        f"drainers died with {supervisor.deaths}, expected the poison to kill one on each of its "
        f"{MAX_ATTEMPTS} attempts and no more:\n{logs}"
    )
    assert_queue_settled(allow_failed=True)
    rows = {e.id: e for e in OutboxEvent.objects.filter(id__in=ids)}
    runs = read_trace(trace)

    # The process-killing event: failed, after exactly max_attempts runs, each in its own process.
    poison = rows[exiting]
    assert poison.status == "failed", f"the os._exit event ended {poison.status!r} ({poison.last_error!r})"
    assert poison.attempts == MAX_ATTEMPTS, f"the os._exit event was counted {poison.attempts} times"
    assert "AbandonedEvent" in poison.last_error and "died or stalled" in poison.last_error, poison.last_error
    assert [attempt for _, attempt, _ in runs[exiting]] == list(range(1, MAX_ATTEMPTS + 1)), (
        f"the os._exit handler ran on attempts {[a for _, a, _ in runs[exiting]]}"
    )
    assert len({pid for _, _, pid in runs[exiting]}) == MAX_ATTEMPTS, "each run of it should kill a drainer"

    # The raising events: failed after max_attempts runs, with the handler's error kept.
    for event_id in sorted(raising):
        event = rows[event_id]
        assert event.status == "failed", f"raising event {event_id} ended {event.status!r}"
        assert event.attempts == MAX_ATTEMPTS, f"raising event {event_id} was counted {event.attempts} times"
        assert "PoisonError: poison event" in event.last_error, event.last_error
        attempts_run = sorted({attempt for _, attempt, _ in runs[event_id]})
        assert attempts_run == list(range(1, MAX_ATTEMPTS + 1)), (
            f"raising event {event_id} ran on attempts {attempts_run}, expected 1..{MAX_ATTEMPTS}"
        )

    # Every other event: done, its effect applied exactly once.
    not_done = sorted(i for i in ok if rows[i].status != "done")
    assert not not_done, f"{len(not_done)} good events not done, e.g. {[(i, rows[i].status) for i in not_done[:5]]}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, count(*) FROM poison_effect GROUP BY 1")
        applied = Counter(dict(cursor.fetchall()))
    doubled = {i: n for i, n in applied.items() if n > 1}
    assert not doubled, f"{len(doubled)} good events applied more than once: {sorted(doubled.items())[:5]}"
    missing = sorted(ok - set(applied))
    assert not missing, f"{len(missing)} good events never applied: {missing[:10]}"
    assert set(applied) == ok, f"effects of events that should have none: {sorted(set(applied) - ok)[:5]}"

    # Its neighbours paid for the first crash only (one claim each), never for the later ones.
    attempts = Counter(rows[i].attempts for i in ok)
    assert max(attempts) <= 2, f"good events' attempts: {dict(attempts)} (a good event paid for a later crash)"
    assert attempts[2] < BATCH, f"{attempts[2]} good events were charged a crash, more than one batch ({BATCH})"
