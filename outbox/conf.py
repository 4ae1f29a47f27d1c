"""The one place that reads ``settings.OUTBOX``.

Every key is optional. Units: seconds for every duration, events for sizes.
``drain_outbox`` flags override these per process. Invalid values are reported by
the system checks (``outbox.E001`` ...) at start-up and raise ``OutboxConfigError``
when read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from outbox.exceptions import OutboxConfigError

#: Order buckets per topic: ``bucket = hash(order key) mod BUCKETS``. Fixed: the
#: trigger writes it into every event, so changing it would split a key's events
#: between two buckets. It is also the most drainers an ordered topic can use.
BUCKETS = 256

#: Events claimed per batch.
DEFAULT_BATCH_SIZE = 100
#: Handler runs per event before it is ``failed``. Counted at claim time.
DEFAULT_MAX_ATTEMPTS = 3
#: First retry delay; doubles each attempt up to BACKOFF_CAP.
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_CAP = 300.0
#: Fraction of random jitter added to each delay (0.2: up to +20%).
DEFAULT_BACKOFF_JITTER = 0.2
#: How long a claim is held before another drainer may take the event back.
DEFAULT_LEASE = 60.0
#: Poll fallback when no NOTIFY arrives (and the only wake-up when NOTIFY is off).
DEFAULT_POLL_INTERVAL = 5.0
#: Whether drainers LISTEN; the trigger's NOTIFY is switched by the outbox.notify GUC.
DEFAULT_NOTIFY = True
#: How long ``done`` events are kept before the drainer's purge removes them.
DEFAULT_RETENTION = 7 * 24 * 3600.0
#: How often a drainer purges expired done events (0 disables: use outbox_purge).
DEFAULT_PURGE_INTERVAL = 300.0
#: Rows deleted per purge statement, so a purge never holds long locks.
DEFAULT_PURGE_CHUNK = 1000
#: How often a drainer looks for leases whose holder's backend is gone.
DEFAULT_RESCUE_INTERVAL = 5.0
#: Session timeouts of a drainer's connection.
DEFAULT_STATEMENT_TIMEOUT = 30.0
DEFAULT_LOCK_TIMEOUT = 10.0
#: Longest ``last_error`` kept, in characters.
DEFAULT_ERROR_MAX_LENGTH = 4000

_DEFAULTS: dict[str, Any] = {
    "BATCH_SIZE": DEFAULT_BATCH_SIZE,
    "MAX_ATTEMPTS": DEFAULT_MAX_ATTEMPTS,
    "BACKOFF_BASE": DEFAULT_BACKOFF_BASE,
    "BACKOFF_CAP": DEFAULT_BACKOFF_CAP,
    "BACKOFF_JITTER": DEFAULT_BACKOFF_JITTER,
    "LEASE": DEFAULT_LEASE,
    "POLL_INTERVAL": DEFAULT_POLL_INTERVAL,
    "NOTIFY": DEFAULT_NOTIFY,
    "RETENTION": DEFAULT_RETENTION,
    "PURGE_INTERVAL": DEFAULT_PURGE_INTERVAL,
    "PURGE_CHUNK": DEFAULT_PURGE_CHUNK,
    "RESCUE_INTERVAL": DEFAULT_RESCUE_INTERVAL,
    "STATEMENT_TIMEOUT": DEFAULT_STATEMENT_TIMEOUT,
    "LOCK_TIMEOUT": DEFAULT_LOCK_TIMEOUT,
    "ERROR_MAX_LENGTH": DEFAULT_ERROR_MAX_LENGTH,
}

# key -> (type, minimum, check id). Minimum is inclusive.
_RULES: dict[str, tuple[type, float, str]] = {
    "BATCH_SIZE": (int, 1, "outbox.E001"),
    "MAX_ATTEMPTS": (int, 1, "outbox.E002"),
    "BACKOFF_BASE": (float, 0, "outbox.E003"),
    "BACKOFF_CAP": (float, 0, "outbox.E004"),
    "BACKOFF_JITTER": (float, 0, "outbox.E005"),
    "LEASE": (float, 1, "outbox.E006"),
    "POLL_INTERVAL": (float, 0.01, "outbox.E007"),
    "NOTIFY": (bool, 0, "outbox.E008"),
    "RETENTION": (float, 0, "outbox.E009"),
    "PURGE_INTERVAL": (float, 0, "outbox.E010"),
    "PURGE_CHUNK": (int, 1, "outbox.E011"),
    "RESCUE_INTERVAL": (float, 0, "outbox.E012"),
    "STATEMENT_TIMEOUT": (float, 0, "outbox.E013"),
    "LOCK_TIMEOUT": (float, 0, "outbox.E014"),
    "ERROR_MAX_LENGTH": (int, 100, "outbox.E015"),
}
UNKNOWN_KEY_ID = "outbox.E000"


@dataclass(frozen=True)
class OutboxSettings:
    """Validated ``OUTBOX`` settings (see the module docstring for units)."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    backoff_jitter: float = DEFAULT_BACKOFF_JITTER
    lease: float = DEFAULT_LEASE
    poll_interval: float = DEFAULT_POLL_INTERVAL
    notify: bool = DEFAULT_NOTIFY
    retention: float = DEFAULT_RETENTION
    purge_interval: float = DEFAULT_PURGE_INTERVAL
    purge_chunk: int = DEFAULT_PURGE_CHUNK
    rescue_interval: float = DEFAULT_RESCUE_INTERVAL
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    error_max_length: int = DEFAULT_ERROR_MAX_LENGTH

    def replace(self, **changes: Any) -> OutboxSettings:
        return dataclasses.replace(self, **changes)


def validate(raw: Any) -> list[tuple[str, str]]:
    """Return ``(check_id, message)`` for every problem in a raw OUTBOX dict."""
    if not isinstance(raw, dict):
        return [(UNKNOWN_KEY_ID, f"OUTBOX must be a dict, got {type(raw).__name__} {raw!r}")]
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        if key not in _RULES:
            known = ", ".join(sorted(_RULES))
            problems.append((UNKNOWN_KEY_ID, f"OUTBOX[{key!r}] is not a known setting (known: {known})"))
            continue
        kind, minimum, check_id = _RULES[key]
        if kind is bool:
            if not isinstance(value, bool):
                problems.append((check_id, f"OUTBOX[{key!r}] must be true or false, got {value!r}"))
            continue
        ok_types: tuple[type, ...] = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            problems.append((check_id, f"OUTBOX[{key!r}] must be a {kind.__name__}, got {value!r}"))
        elif value < minimum:
            problems.append((check_id, f"OUTBOX[{key!r}] must be >= {minimum}, got {value!r}"))
    if not problems:
        cap = raw.get("BACKOFF_CAP", DEFAULT_BACKOFF_CAP)
        base = raw.get("BACKOFF_BASE", DEFAULT_BACKOFF_BASE)
        if cap < base:
            problems.append(("outbox.E004", f"OUTBOX['BACKOFF_CAP'] must be >= BACKOFF_BASE ({base!r}), got {cap!r}"))
    return problems


def get_settings() -> OutboxSettings:
    """The validated OUTBOX settings, defaults filled in."""
    raw = getattr(settings, "OUTBOX", {}) or {}
    problems = validate(raw)
    if problems:
        raise OutboxConfigError("; ".join(f"{msg} ({cid})" for cid, msg in problems))
    values = {**_DEFAULTS, **raw}
    return OutboxSettings(**{key.lower(): value for key, value in values.items()})
