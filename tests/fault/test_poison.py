"""Poison events: a handler that always raises, and one that kills its process.

What it proves (DESIGN invariant 3): both kinds end ``failed`` after max_attempts,
the drainers survive them (a killed drainer is restarted by the supervisor, as
systemd would), every other event is ``done`` with its effect applied exactly once
and charged exactly one attempt. Runs are counted from a trace written before each
one, even by runs whose process died: a raising event runs max_attempts times; a
process-killing one runs once in its batch (that crash charges nobody: every event
of the batch becomes a suspect), then max_attempts times alone, each solo run
counted just before it starts (docs/guarantees.md#attempts).

Recovery is timed: the poison topic is unordered, so a dead drainer's events come
back through the rescue of a live drainer (RESCUE_INTERVAL, set to 1 s here),
never by expiry (the lease is 300 s). From each death the
supervisor sees to the moment none of the dead drainer's events is under a lease and
it owns no bucket: within RECOVERY_BOUND.

The two kinds run in separate tests: a raising event waits out its retry backoff
and comes back in a later batch, which could be the killer's first batch; its last
attempt would then end as "abandoned", not with its own error.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from django.db import connection

from outbox.drainer.config import REBALANCE_INTERVAL
from outbox.models import OutboxEvent
from tests.fault.conftest import RecoveryWatch, all_settled, assert_prompt_recovery, assert_queue_settled
from tests.poison.apps import POISON_EXIT_CODE, POISON_TOPIC, RESCUE_INTERVAL_ENV
from tests.support import DrainerPool, Supervisor, current_database_url, drainer_env, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("poison_effect"),
    pytest.mark.process,
    pytest.mark.fault,
]

EVENTS = 200
BATCH = 50
MAX_ATTEMPTS = 3
RESCUE_INTERVAL = 1.0
# The next rescue (or, for the pricing buckets these drainers own too, the next
# rebalance), plus a margin for a loaded two-core machine.
RECOVERY_BOUND = max(RESCUE_INTERVAL, REBALANCE_INTERVAL) + 3.0


def read_trace(path: Path) -> dict[int, list[tuple[str, int, int]]]:
    """event id -> [(action, attempt, pid)] for every handler run, in order."""
    runs: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        event_id, action, attempt, pid = line.split()
        runs[int(event_id)].append((action, int(attempt), int(pid)))
    return runs


def make_events(poison: dict[int, str]) -> list[int]:
    """EVENTS poison-topic events; ``poison`` maps positions to their action, the rest are "ok"."""
    events = OutboxEvent.objects.bulk_create(
        [OutboxEvent(topic=POISON_TOPIC, key=f"k{i}", payload={"action": poison.get(i, "ok")}) for i in range(EVENTS)]
    )
    return [e.id for e in events]


def drain(trace: Path) -> Supervisor:
    """Two drainers, kept alive by a supervisor, until every event settled; returns the supervisor."""
    env = drainer_env("tests.settings_poison", **{RESCUE_INTERVAL_ENV: str(RESCUE_INTERVAL)})
    # A lease far longer than the test: crashed claims come back through the
    # dead-holder rescue, not by expiry.
    args = ["--batch-size", str(BATCH), "--max-attempts", str(MAX_ATTEMPTS), "--interval", "0.2", "--lease", "300"]
    pool = DrainerPool(2, args, env=env)
    supervisor = Supervisor(pool)  # restarts a drainer that died, as systemd would
    watch = RecoveryWatch(supervisor, current_database_url())
    try:
        supervisor.start()
        watch.start()
        wait_until(all_settled, timeout=60, message="every poison test event done or failed")
        supervisor.stop()
        recovered = watch.stop(RECOVERY_BOUND)
        codes = pool.stop()
    except BaseException:
        supervisor.stop()
        watch.stop()
        print(pool.output())
        raise
    finally:
        logs = pool.output(1200)
        pool.close()
    assert codes == [0, 0], f"the surviving drainers exited with {codes}:\n{logs}"
    print(f"recovery after each death (s): {sorted(round(s, 2) for s in recovered.values())}")
    assert_prompt_recovery(supervisor, recovered, RECOVERY_BOUND)
    supervisor.logs = logs  # type: ignore[attr-defined]
    return supervisor


def assert_applied_once(ok: set[int]) -> None:
    rows = dict(OutboxEvent.objects.filter(id__in=ok).values_list("id", "status"))
    not_done = sorted(i for i in ok if rows[i] != "done")
    assert not not_done, f"{len(not_done)} good events not done, e.g. {[(i, rows[i]) for i in not_done[:5]]}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, count(*) FROM poison_effect GROUP BY 1")
        applied = Counter(dict(cursor.fetchall()))
    doubled = {i: n for i, n in applied.items() if n > 1}
    assert not doubled, f"{len(doubled)} good events applied more than once: {sorted(doubled.items())[:5]}"
    missing = sorted(ok - set(applied))
    assert not missing, f"{len(missing)} good events never applied: {missing[:10]}"
    assert set(applied) == ok, f"effects of events that should have none: {sorted(set(applied) - ok)[:5]}"


def test_raising_events_fail_after_max_attempts_with_their_error(poison_effect: Path) -> None:
    trace = poison_effect
    positions = (10, 60, 61, 160)
    ids = make_events(dict.fromkeys(positions, "raise"))
    raising = {ids[i] for i in positions}
    supervisor = drain(trace)

    assert supervisor.deaths == [], f"drainers died: {supervisor.deaths}"
    assert_queue_settled(allow_failed=True)
    runs = read_trace(trace)
    for event in OutboxEvent.objects.filter(id__in=raising):
        assert event.status == "failed", f"raising event {event.id} ended {event.status!r}"
        assert event.attempts == MAX_ATTEMPTS, f"raising event {event.id} was counted {event.attempts} times"
        assert "PoisonError: poison event" in event.last_error, event.last_error
        attempts_run = sorted({attempt for _, attempt, _ in runs[event.id]})
        assert attempts_run == list(range(1, MAX_ATTEMPTS + 1)), (
            f"raising event {event.id} ran on attempts {attempts_run}, expected 1..{MAX_ATTEMPTS}"
        )
    assert_applied_once(set(ids) - raising)
    charged = OutboxEvent.objects.exclude(id__in=raising).exclude(attempts=1).count()
    assert charged == 0, f"{charged} good events were charged more than one attempt by the raising ones"


def test_process_killing_event_fails_after_max_attempts_alone(poison_effect: Path) -> None:
    trace = poison_effect
    position = 75
    ids = make_events({position: "exit"})
    exiting = ids[position]
    supervisor = drain(trace)

    assert supervisor.deaths == [POISON_EXIT_CODE] * (MAX_ATTEMPTS + 1), (
        f"drainers died with {supervisor.deaths}, expected the poison to kill one in its batch, then on each "
        f"of its {MAX_ATTEMPTS} solo runs, and no more:\n{supervisor.logs}"  # type: ignore[attr-defined]
    )
    assert_queue_settled(allow_failed=True)
    poison = OutboxEvent.objects.get(id=exiting)
    assert poison.status == "failed", f"the os._exit event ended {poison.status!r} ({poison.last_error!r})"
    assert poison.attempts == MAX_ATTEMPTS, f"the os._exit event was counted {poison.attempts} times"
    assert "AbandonedEvent" in poison.last_error and "never finished" in poison.last_error, poison.last_error
    runs = read_trace(trace)[exiting]
    # Its batch run (attempt 1, never counted: it died), then its solo runs 1..max.
    assert [attempt for _, attempt, _ in runs] == [1, *range(1, MAX_ATTEMPTS + 1)], (
        f"the os._exit handler ran on attempts {[a for _, a, _ in runs]}"
    )
    assert len({pid for _, _, pid in runs}) == MAX_ATTEMPTS + 1, "each run of it should have killed its drainer"

    ok = set(ids) - {exiting}
    assert_applied_once(ok)
    # Its neighbours paid nothing for any crash: each ran once and was counted once.
    attempts = Counter(OutboxEvent.objects.filter(id__in=ok).values_list("attempts", flat=True))
    assert dict(attempts) == {1: len(ok)}, f"good events' attempts: {dict(attempts)} (a crash charged a neighbour)"
