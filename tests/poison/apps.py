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
* ``{"action": "stall"}``: on its first attempt, write the effect, then stop the
  drainer with SIGSTOP, in the middle of its processing transaction (later
  attempts just write the effect);
* ``{"action": "sleep", "seconds": s}``: on its first attempt, write the effect,
  then ``pg_sleep(s)`` in the transaction: a drainer busy inside a statement;
* ``{"action": "stall_after_claim"}``: no handler trick; the drainer that claims it
  for the first time stops itself with SIGSTOP right after the claim commits,
  before processing (see ``_stall_after_claim``); its handler writes the effect.

Every call is first appended to the file named by ``POISON_TRACE`` (when set) and
flushed to disk, so the test can count how many times a handler really ran, even on
a run whose transaction was rolled back or whose process died.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from django.apps import AppConfig
from django.db import connection

from outbox.drainer import Drainer
from outbox.handlers import Event

ClaimResult = tuple[list[Event], list[Event]]

#: The topic registered by this app.
POISON_TOPIC = "poison"
#: Exit code of a drainer killed by the ``exit`` action.
POISON_EXIT_CODE = 86
#: Environment variable naming the trace file.
TRACE_ENV = "POISON_TRACE"


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


def handle_poison(event: Event) -> str:
    action = str(event.payload.get("action", "ok"))
    _trace(event, action)
    if action == "exit":
        os._exit(POISON_EXIT_CODE)
    if action == "raise":
        raise PoisonError(f"poison event {event.id} (key {event.key}) raises on purpose")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO poison_effect (event_id, pid) VALUES (%s, %s)", [event.id, os.getpid()])
        if event.attempts == 1 and action == "sleep":
            cursor.execute("SELECT pg_sleep(%s)", [float(event.payload.get("seconds", 30))])
    if event.attempts == 1 and action == "stall":
        os.kill(os.getpid(), signal.SIGSTOP)  # resumes here on SIGCONT
    return "applied"


def _stall_after_claim(claim: Callable[[Drainer], ClaimResult]) -> Callable[[Drainer], ClaimResult]:
    """Wrap ``Drainer._claim_batch``: SIGSTOP after a first claim of a stall_after_claim event."""

    def claim_then_maybe_stop(drainer: Drainer) -> ClaimResult:
        events, suspects = claim(drainer)
        for event in events:
            if event.topic == POISON_TOPIC and event.payload.get("action") == "stall_after_claim":
                if event.attempts == 1:
                    _trace(event, "stall_after_claim")
                    os.kill(os.getpid(), signal.SIGSTOP)  # the claim has committed: we hold leases
        return events, suspects

    return claim_then_maybe_stop


class PoisonConfig(AppConfig):
    name = "tests.poison"
    label = "poison"
    verbose_name = "Poison handlers (tests only)"

    def ready(self) -> None:
        from outbox.handlers import registry

        if POISON_TOPIC not in registry:
            registry.register(POISON_TOPIC, handle_poison, log_label="Poison", outcome_names=("applied",))
        # A fault-injection point between the claim and the processing transaction;
        # test settings only (this app is never installed in the project's settings).
        if not getattr(Drainer._claim_batch, "poison_wrapped", False):
            wrapped = _stall_after_claim(Drainer._claim_batch)
            wrapped.poison_wrapped = True  # type: ignore[attr-defined]
            Drainer._claim_batch = wrapped  # type: ignore[method-assign]
