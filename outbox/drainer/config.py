"""One drainer's configuration: the OUTBOX settings plus its per-process choices."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from outbox.conf import OutboxSettings, get_settings
from outbox.triggers import NOTIFY_WINDOW_MS

#: How often a drainer says it is alive and rebalances the order buckets (seconds).
REBALANCE_INTERVAL = 1.0
#: How long ``drain()`` (``drain_outbox --once``) keeps retrying an unreachable
#: database before it raises DatabaseUnavailable, unless the config says otherwise.
ONCE_GIVE_UP_AFTER = 60.0
#: Reconnect backoff after a lost connection, seconds (doubling, with jitter).
RECONNECT_BACKOFF_BASE = 0.5
RECONNECT_BACKOFF_CAP = 30.0
#: Claims that find nothing, per second, that a drainer makes without pausing (a
#: token bucket, bursts of EMPTY_CLAIM_BURST): a flood of NOTIFYs from any session
#: costs at most this many empty claims a second, while every drainer woken by a
#: real event's NOTIFY (each one is) still claims at once.
EMPTY_CLAIMS_PER_SECOND = 200.0
EMPTY_CLAIM_BURST = 20.0
#: When a claim comes back empty after one that found events, the drainer lingers:
#: it claims again every BURST_END_RECLAIM (or at the next NOTIFY) for BURST_END_LINGER
#: (one notify window) before it sleeps. That takes the events of writers that skipped
#: their NOTIFY behind the notify gate and committed after that empty claim, instead of
#: leaving them to the poll (docs/guarantees.md#wake-ups); at most six empty claims.
BURST_END_RECLAIM = 0.02
BURST_END_LINGER = NOTIFY_WINDOW_MS / 1000
#: Cap of the queue-depth count in the per-batch log line, and how often it is
#: recounted (seconds); in between, the line shows the last count less what this
#: drainer finished since.
QUEUE_COUNT_CAP = 10_000
QUEUE_COUNT_EVERY = 1.0


def make_identity() -> str:
    """``outbox:<host>:<pid>:<random>``, at most 63 characters (a Postgres name)."""
    host = socket.gethostname().split(".")[0][:32]
    return f"outbox:{host}:{os.getpid()}:{secrets.token_hex(3)}"[:63]


@dataclass(frozen=True)
class DrainerConfig:
    """One drainer's settings: the OUTBOX settings plus per-process choices."""

    settings: OutboxSettings = field(default_factory=OutboxSettings)
    #: Only these topics (None: every registered topic).
    topics: tuple[str, ...] | None = None
    retry_failed_every: float | None = None
    #: Seconds without a database connection after which the drainer stops trying
    #: and raises DatabaseUnavailable. None: ``drain()`` gives up after
    #: ONCE_GIVE_UP_AFTER, ``run()`` never does (it is meant to outlive outages).
    give_up_after: float | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        topics: Sequence[str] | None = None,
        retry_failed_every: float | None = None,
        give_up_after: float | None = None,
        **overrides: Any,
    ) -> DrainerConfig:
        base = get_settings()
        changes = {key: value for key, value in overrides.items() if value is not None}
        return cls(
            settings=base.replace(**changes) if changes else base,
            topics=tuple(topics) if topics else None,
            retry_failed_every=retry_failed_every,
            give_up_after=give_up_after,
        )
