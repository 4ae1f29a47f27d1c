"""A test-only Django app: outbox topics whose handler fails on chosen events.

The fault tests start real ``drain_outbox`` processes with
``DJANGO_SETTINGS_MODULE=tests.settings_poison``, which adds this app. It registers
the topic ``poison`` with a per-event handler that reads what to do from the event
payload, so each test picks its poison events when it writes them:

* ``{"action": "ok"}`` (or no action): write one row into ``poison_effect`` (a table
  the test creates), in the drainer's transaction: the effect, counted exactly once;
* ``{"action": "raise"}``: raise ``PoisonError``, always;
* ``{"action": "exit"}``: kill the drainer process with ``os._exit`` (no cleanup, no
  rollback message, like a segfault or the OOM killer);
* ``{"action": "stall"}``: on its first run, write the effect, then stop the
  drainer with SIGSTOP, in the middle of its processing transaction (later runs
  just write the effect);
* ``{"action": "sleep", "seconds": s}``: on its first run, write the effect, then
  ``pg_sleep(s)`` in the transaction: a drainer busy inside a statement;
* ``{"action": "wait_for_lock", "lock": n}``: write the effect, then wait in the
  transaction for the advisory lock ``n``, which the test holds and releases when
  it wants the handler to return;
* ``{"action": "stall_after_claim"}``: no handler trick; the drainer that claims it
  for the first time stops itself with SIGSTOP right after the claim commits,
  before processing (a receiver of the drainer's ``batch_claimed`` signal); its
  handler writes the effect.
* ``{"action": "exit_before_commit"}``: the handler writes the effect; on its first
  attempt the drainer then dies (``os._exit``) after every handler of the batch
  returned and before the acks and COMMIT (a receiver of ``batch_handled``).

One more fault-injection point, for any topic (the SIGKILL storm's pricing events):
while the file named by ``POISON_KILL_ARM`` exists, the first drainer to reach
``batch_handled`` (every handler of its batch returned, the acks and COMMIT not yet
sent) renames it to ``<name>.<pid>`` and SIGKILLs itself: one kill at exactly that
instant per arming, and the renamed file says who took it.

Every call is first appended to the file named by ``POISON_TRACE`` (the fault
tests' ``poison_effect`` fixture sets it) and flushed to disk, so the test can count
how many times a handler really ran, even on a run whose transaction was rolled
back or whose process died; "first run" means the first one in that file.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from django.apps import AppConfig
from django.db import connection

from outbox.handlers import Event

#: The topic registered by this app.
POISON_TOPIC = "poison"
#: Exit code of a drainer killed by the ``exit`` action.
POISON_EXIT_CODE = 86
#: Environment variable naming the trace file.
TRACE_ENV = "POISON_TRACE"
#: Environment variable that sets RESCUE_INTERVAL in tests.settings_poison.
RESCUE_INTERVAL_ENV = "POISON_RESCUE_INTERVAL"
#: Environment variable naming the file that arms the before-COMMIT SIGKILL.
KILL_ARM_ENV = "POISON_KILL_ARM"


class PoisonError(RuntimeError):
    """The poison handler was told to fail on this event."""


def _trace(event: Event, action: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = f"{event.id} {action} {event.attempts} {os.getpid()}\n"
    with open(path, "a", encoding="ascii") as trace:
        trace.write(line)
        trace.flush()
        os.fsync(trace.fileno())


def _first_run(event: Event, action: str) -> bool:
    """Has no handler run of this event been traced yet (by any drainer process)?"""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return event.attempts == 1
    prefix = f"{event.id} {action} "
    with open(path, encoding="ascii") as trace:
        return not any(line.startswith(prefix) for line in trace)


def handle_poison(event: Event) -> str:
    action = str(event.payload.get("action", "ok"))
    first = _first_run(event, action)
    _trace(event, action)
    if action == "exit":
        os._exit(POISON_EXIT_CODE)
    if action == "raise":
        raise PoisonError(f"poison event {event.id} (key {event.key}) raises on purpose")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO poison_effect (event_id, pid) VALUES (%s, %s)", [event.id, os.getpid()])
        if first and action == "sleep":
            cursor.execute("SELECT pg_sleep(%s)", [float(event.payload.get("seconds", 30))])
        if action == "wait_for_lock":
            # Blocks until the test releases its advisory lock on this key.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(event.payload["lock"])])
    if first and action == "stall":
        os.kill(os.getpid(), signal.SIGSTOP)  # resumes here on SIGCONT
    return "applied"


def _stall_after_claim(sender: object, events: Sequence[Event], **kwargs: object) -> None:
    """``batch_claimed``: SIGSTOP after a first claim of a stall_after_claim event."""
    for event in events:
        if event.topic == POISON_TOPIC and event.payload.get("action") == "stall_after_claim":
            if not _first_run(event, "stall_after_claim"):
                continue
            _trace(event, "stall_after_claim")
            os.kill(os.getpid(), signal.SIGSTOP)  # the claim has committed: we hold leases


def _exit_before_commit(sender: object, events: Sequence[Event], **kwargs: object) -> None:
    """``batch_handled``: die between the handlers and the COMMIT, on a first attempt."""
    for event in events:
        if event.topic == POISON_TOPIC and event.payload.get("action") == "exit_before_commit":
            if not _first_run(event, "exit_before_commit"):
                continue
            _trace(event, "exit_before_commit")
            os._exit(POISON_EXIT_CODE)


def _kill_when_armed(sender: object, events: Sequence[Event], **kwargs: object) -> None:
    """``batch_handled``: SIGKILL this drainer between its handlers and its COMMIT, once per arming."""
    armed = os.environ.get(KILL_ARM_ENV)
    if not armed or not events:
        return
    try:
        os.rename(armed, f"{armed}.{os.getpid()}")  # atomic: one drainer takes each arming
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class PoisonConfig(AppConfig):
    name = "tests.poison"
    label = "poison"
    verbose_name = "Poison handlers (tests only)"

    def ready(self) -> None:
        from outbox.handlers import registry
        from outbox.signals import batch_claimed, batch_handled

        if POISON_TOPIC not in registry:
            registry.register(POISON_TOPIC, handle_poison, log_label="Poison", outcome_names=("applied",))
        # Fault-injection points of the drainer's loop, through its signals; test
        # settings only (this app is never installed in the project's settings).
        batch_claimed.connect(_stall_after_claim, dispatch_uid="poison-stall-after-claim")
        batch_handled.connect(_exit_before_commit, dispatch_uid="poison-exit-before-commit")
        batch_handled.connect(_kill_when_armed, dispatch_uid="poison-kill-when-armed")
