"""The one place that reads ``settings.OUTBOX``.

Every key is optional. Units: seconds for every duration, events for sizes. Each
value has bounds (``_RULES``): timeouts and intervals at most MAX_TIMEOUT (what
PostgreSQL accepts, ~24.8 days), delays and ages at most MAX_AGE (100 years), NaN
and infinities never.
``drain_outbox`` flags override these per process. Invalid values are reported by
the system checks (``outbox.E001`` ...) at start-up and raise ``OutboxConfigError``
when read.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

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
#: Whether drainers run their per-batch statements as server-side prepared statements
#: (planned once per session). Off behind a pooler in transaction mode (PgBouncer
#: before 1.21), which cannot keep a prepared statement on one server connection.
DEFAULT_PREPARED_STATEMENTS = True
#: Whether ``/outbox/metrics`` answers at all (off: 404, whoever asks).
DEFAULT_METRICS = False
#: Where drainers LISTEN when their database connection goes through a transaction-mode
#: pooler (PgBouncer), which cannot hold a LISTEN: a URL of the server itself, or
#: {alias: URL} with several databases. Empty: LISTEN on the drainer's own connection
#: parameters (docs/scaling.md, "Connection poolers").
DEFAULT_LISTEN_URL: str | dict[str, str] = ""

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
    "PREPARED_STATEMENTS": DEFAULT_PREPARED_STATEMENTS,
    "METRICS": DEFAULT_METRICS,
    # Who may read /outbox/metrics besides logged-in staff: networks (CIDR or
    # single addresses) and one "user:password" for HTTP basic auth; neither by default.
    "METRICS_ALLOWED_IPS": (),
    "METRICS_BASIC_AUTH": None,
    "LISTEN_URL": DEFAULT_LISTEN_URL,
}

#: The longest timeout PostgreSQL accepts, in seconds: statement_timeout, lock_timeout
#: and idle_in_transaction_session_timeout (which a drainer sets to its lease) are
#: milliseconds in a 32-bit int, 2,147,483,647 ms (about 24.8 days). Every wait of a
#: drainer is bounded by it too (epoll takes milliseconds in an int as well).
MAX_TIMEOUT = 2_147_483.0
#: The longest delay or age, in seconds (100 years): now() plus or minus it must stay
#: a timestamp that PostgreSQL and Python both hold.
MAX_AGE = 100 * 365 * 86_400.0
#: Most events or rows in one statement and transaction.
MAX_BATCH = 100_000
#: Most attempts: the backoff doubles per attempt, and 2 ** 1024 is no float.
MAX_ATTEMPTS = 1000
#: Longest last_error kept, in characters.
MAX_ERROR_LENGTH = 1_000_000
_TIMEOUT = " seconds (24.8 days, the longest timeout PostgreSQL accepts)"
_AGE = " seconds (100 years)"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Rule:
    """What one OUTBOX key may be: its type, bounds (inclusive), unit and check id."""

    kind: type
    minimum: float
    maximum: float
    check_id: str
    unit: str = ""

    def problem(self, value: Any, shown: str | None = None) -> str | None:
        """What is wrong with ``value`` ("must be ..., got ..."), or None. ``shown``: how
        to quote it (a flag's text as typed; the repr by default)."""
        got = shown if shown is not None else repr(value)
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {got}"
        ok_types: tuple[type, ...] = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            return f"must be {'a whole number' if self.kind is int else 'a number'}, got {got}"
        if not self.minimum <= value <= self.maximum:  # NaN fails both comparisons
            return f"must be from {_number(self.minimum)} to {_number(self.maximum)}{self.unit}, got {got}"
        return None


_RULES: dict[str, Rule] = {
    "BATCH_SIZE": Rule(int, 1, MAX_BATCH, "outbox.E001"),
    "MAX_ATTEMPTS": Rule(int, 1, MAX_ATTEMPTS, "outbox.E002"),
    "BACKOFF_BASE": Rule(float, 0, MAX_AGE, "outbox.E003", _AGE),
    "BACKOFF_CAP": Rule(float, 0, MAX_AGE, "outbox.E004", _AGE),
    "BACKOFF_JITTER": Rule(float, 0, 1, "outbox.E005"),
    "LEASE": Rule(float, 1, MAX_TIMEOUT, "outbox.E006", _TIMEOUT),
    "POLL_INTERVAL": Rule(float, 0.01, MAX_TIMEOUT, "outbox.E007", _TIMEOUT),
    "NOTIFY": Rule(bool, 0, 0, "outbox.E008"),
    "RETENTION": Rule(float, 0, MAX_AGE, "outbox.E009", _AGE),
    "PURGE_INTERVAL": Rule(float, 0, MAX_TIMEOUT, "outbox.E010", _TIMEOUT),
    "PURGE_CHUNK": Rule(int, 1, MAX_BATCH, "outbox.E011"),
    "RESCUE_INTERVAL": Rule(float, 0, MAX_TIMEOUT, "outbox.E012", _TIMEOUT),
    "STATEMENT_TIMEOUT": Rule(float, 0, MAX_TIMEOUT, "outbox.E013", _TIMEOUT),
    "LOCK_TIMEOUT": Rule(float, 0, MAX_TIMEOUT, "outbox.E014", _TIMEOUT),
    "ERROR_MAX_LENGTH": Rule(int, 100, MAX_ERROR_LENGTH, "outbox.E015"),
    "PREPARED_STATEMENTS": Rule(bool, 0, 0, "outbox.E016"),
    "METRICS": Rule(bool, 0, 0, "outbox.E030"),
}
#: Keys that are not numbers: each has its own check (see _structured_problem).
_STRUCTURED_IDS = {"METRICS_ALLOWED_IPS": "outbox.E031", "METRICS_BASIC_AUTH": "outbox.E032"}
UNKNOWN_KEY_ID = "outbox.E000"
#: Settings that are connection strings, not numbers: key -> check id.
_URL_RULES = {"LISTEN_URL": "outbox.E017"}


def rule(key: str) -> Rule:
    """The rule of one OUTBOX key (the drain_outbox flags that override it use it too)."""
    return _RULES[key]


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
    prepared_statements: bool = DEFAULT_PREPARED_STATEMENTS
    metrics: bool = DEFAULT_METRICS
    metrics_allowed_ips: tuple[str, ...] = ()
    metrics_basic_auth: str | None = None
    listen_url: str | dict[str, str] = DEFAULT_LISTEN_URL

    def listen_url_for(self, alias: str) -> str:
        """The direct URL to LISTEN on for database ``alias`` ("" when none is set)."""
        if isinstance(self.listen_url, dict):
            return self.listen_url.get(alias, "")
        return self.listen_url if alias == DEFAULT_DB_ALIAS else ""

    def replace(self, **changes: Any) -> OutboxSettings:
        return dataclasses.replace(self, **changes)


def validate(raw: Any) -> list[tuple[str, str]]:
    """Return ``(check_id, message)`` for every problem in a raw OUTBOX dict."""
    if not isinstance(raw, dict):
        return [(UNKNOWN_KEY_ID, f"OUTBOX must be a dict, got {type(raw).__name__} {raw!r}")]
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        if key in _STRUCTURED_IDS:
            problem = _structured_problem(key, value)
            if problem is not None:
                problems.append((_STRUCTURED_IDS[key], f"OUTBOX[{key!r}] {problem}"))
            continue
        if key in _URL_RULES:
            problems.extend((_URL_RULES[key], f"OUTBOX[{key!r}] {problem}") for problem in _url_problems(value))
            continue
        if key not in _RULES:
            known = ", ".join(sorted({*_RULES, *_STRUCTURED_IDS, *_URL_RULES}))
            problems.append((UNKNOWN_KEY_ID, f"OUTBOX[{key!r}] is not a known setting (known: {known})"))
            continue
        problem = _RULES[key].problem(value)
        if problem is not None:
            problems.append((_RULES[key].check_id, f"OUTBOX[{key!r}] {problem}"))
    if not problems:
        cap = raw.get("BACKOFF_CAP", DEFAULT_BACKOFF_CAP)
        base = raw.get("BACKOFF_BASE", DEFAULT_BACKOFF_BASE)
        if cap < base:
            problems.append(("outbox.E004", f"OUTBOX['BACKOFF_CAP'] must be >= BACKOFF_BASE ({base!r}), got {cap!r}"))
    return problems


def _structured_problem(key: str, value: Any) -> str | None:
    """What is wrong with a METRICS_* value that is not a number, or None."""
    if key == "METRICS_ALLOWED_IPS":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            return f"must be a list of networks such as ['10.0.0.0/8', '::1'], got {value!r}"
        for item in value:
            try:
                if not isinstance(item, str):  # ip_network(123) is 0.0.0.123/32, ip_network(True) 0.0.0.1/32
                    raise TypeError(item)
                ipaddress.ip_network(item, strict=False)
            except (TypeError, ValueError):
                return f"must hold IP networks or addresses such as '10.0.0.0/8' or '::1', got {item!r}"
        return None
    if value is None:
        return None
    if not isinstance(value, str) or ":" not in value or not value.split(":", 1)[0] or not value.split(":", 1)[1]:
        # Never echo the value: it is a password.
        return "must be None or 'user:password' (both parts non-empty)"
    return None


def _url_problems(value: Any) -> list[str]:
    """What is wrong with a connection-string setting (a URL, or {alias: URL}); never
    echoes the value, which may hold a password."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    urls = value if isinstance(value, dict) else {DEFAULT_DB_ALIAS: value}
    problems = []
    for alias, url in urls.items():
        where = f"[{alias!r}] " if isinstance(value, dict) else ""
        if not isinstance(url, str):
            problems.append(f"{where}must be a PostgreSQL URL (or a dict of them by alias), got {type(url).__name__}")
            continue
        try:
            port = conninfo_to_dict(url).get("port")
        except ProgrammingError as exc:
            problems.append(
                f"{where}is not a PostgreSQL URL such as postgres://user@db.internal:5432/shop "
                f"({str(exc).splitlines()[0]})"
            )
            continue
        # libpq parses any port text; a connection to it then fails, and the drainer polls.
        for part in str(port or "").split(","):
            if part and not (part.isascii() and part.isdigit() and 1 <= int(part) <= 65535):
                problems.append(f"{where}has the port {part!r}: a port is a number from 1 to 65535")
    return problems


def get_settings() -> OutboxSettings:
    """The validated OUTBOX settings, defaults filled in."""
    raw = getattr(settings, "OUTBOX", {}) or {}
    problems = validate(raw)
    if problems:
        raise OutboxConfigError("; ".join(f"{msg} ({cid})" for cid, msg in problems))
    values = {**_DEFAULTS, **raw}
    values["METRICS_ALLOWED_IPS"] = tuple(values["METRICS_ALLOWED_IPS"])
    return OutboxSettings(**{key.lower(): value for key, value in values.items()})
