"""argparse ``type=`` validators shared by the outbox commands.

Each refuses what the command could not use, with a message naming what is allowed:
numbers beyond what PostgreSQL holds (bigint ids and limits), NaN and infinities,
durations so long that now() minus them is no timestamp, and instants outside the
years 1 to 9999 in UTC.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from outbox.conf import MAX_AGE, MAX_BATCH, OutboxSettings, get_settings, rule
from outbox.exceptions import OutboxConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.ASCII)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The largest bigint: ids and limits beyond it are refused by PostgreSQL.
BIGINT_MAX = 2**63 - 1


def settings_or_defaults() -> OutboxSettings:
    """The OUTBOX settings for the flags' defaults, or the built-in ones when OUTBOX is
    invalid: a parser is built before the system checks run (for --help too), and the
    checks (or the command, under --skip-checks) then say what is wrong."""
    try:
        return get_settings()
    except OutboxConfigError:
        return OutboxSettings()


#: What a person types as a number: ASCII digits only (int() and float() also take
#: "5_0", "٥" and other scripts' digits, which no flag means).
_WHOLE_RE = re.compile(r"^\s*[+-]?\d+\s*$", re.ASCII)
_DECIMAL_RE = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$", re.ASCII)


def _whole(text: str) -> int:
    if not _WHOLE_RE.match(text):
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
    return int(text)


def _decimal(text: str, what: str) -> float:
    """A decimal number (123, 0.5, 1e3; also nan and inf, for the caller to refuse by name)."""
    if not _DECIMAL_RE.match(text) and text.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity"):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return float(text)


def positive_int(text: str) -> int:
    """An id or a limit: from 1 to the largest bigint."""
    value = _whole(text)
    if not 1 <= value <= BIGINT_MAX:
        raise argparse.ArgumentTypeError(f"must be from 1 to {BIGINT_MAX} (bigint), got {text}")
    return value


def chunk_size(text: str) -> int:
    """Rows per statement and transaction."""
    value = _whole(text)
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_BATCH}, got {text}")
    return value


def setting(key: str) -> Callable[[str], Any]:
    """The type of a flag that overrides ``OUTBOX[key]``: the setting's own rule."""
    check = rule(key)

    def parse(text: str) -> Any:
        if check.kind is int:
            value: Any = _whole(text)
        else:
            value = _decimal(text, "a number of seconds" if check.unit else "a number")
        problem = check.problem(value, shown=text)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = key.lower()  # argparse names the type in "invalid <name> value"
    return parse


def non_negative_float(text: str) -> float:
    value = _decimal(text, "a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def interval(text: str) -> float:
    """How often a duty runs, in seconds: from 1 (more often is a busy loop) to 100 years."""
    value = non_negative_float(text)
    if not 1 <= value <= MAX_AGE:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_AGE:.0f} seconds (100 years), got {text}")
    return value


def _duration(text: str, *, unit_required: bool) -> float:
    match = _DURATION_RE.match(text)
    if not match or (unit_required and not match.group(2)):
        unit = ", with its unit" if unit_required else ""
        raise argparse.ArgumentTypeError(f"must be a duration such as 90s, 15m, 12h, 7d or 2w{unit}, got {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_AGE:
        raise argparse.ArgumentTypeError(f"must be at most {format_duration(MAX_AGE)} (100 years), got {text!r}")
    return seconds


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds (at most 100 years)."""
    return _duration(text, unit_required=False)


def duration_with_unit(text: str) -> float:
    """Like ``duration``, but a bare number is refused: for destructive commands, where
    ``7`` meant as days and taken as seconds would delete a week of events."""
    return _duration(text, unit_required=True)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling ``duration()`` reads back: 604800 -> ``7d``."""
    for suffix in ("d", "h", "m"):
        unit = _UNITS[suffix]
        if seconds and seconds % unit == 0:
            return f"{int(seconds // unit)}{suffix}"
    return f"{seconds:g}s"


def fraction(text: str) -> float:
    """A number from 0 to 1, e.g. ``0.2``."""
    value = _decimal(text, "a number from 0 to 1")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def non_empty(text: str) -> str:
    """A name such as a topic or a source: not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def moment(text: str) -> datetime.datetime:
    """An instant, in UTC: ISO 8601 (``2026-11-01``, ``2026-11-01T12:00``, with or without
    an offset; naive means the project's TIME_ZONE) or a duration ago (``12h``, ``7d``).

    In UTC because PostgreSQL refuses offsets beyond 15:59 that Python accepts; an
    instant whose UTC time is outside the years 1 to 9999 is refused.
    """
    if _DURATION_RE.match(text):
        return timezone.now() - datetime.timedelta(seconds=duration(text))
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a date or time such as 2026-11-01 or 2026-11-01T12:00:00+00:00, "
            f"or a duration ago such as 12h or 7d, got {text!r}"
        ) from None
    try:
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value.astimezone(datetime.UTC)
    except (OverflowError, ValueError):
        raise argparse.ArgumentTypeError(
            f"must be an instant from 0001-01-01 to 9999-12-31 in UTC, got {text!r}"
        ) from None


def listen_address(text: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` for a metrics endpoint: ``9808``, ``127.0.0.1:9808``, ``[::1]:9808``.

    Without an address, every interface (Prometheus scrapes from another host).
    Port 0 takes any free port (the drainer logs which).
    """
    addr, sep, port_text = text.strip().rpartition(":")
    if not sep:
        addr = "0.0.0.0"  # noqa: S104 (Prometheus scrapes from elsewhere; an address narrows it)
    port = _whole(port_text) if port_text.strip().isdigit() else None
    if port is None or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be PORT or ADDRESS:PORT with a port from 0 to 65535, got {text!r}")
    addr = addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]+", addr):
            raise argparse.ArgumentTypeError(f"must be PORT or ADDRESS:PORT, got an address {addr!r}") from None
    return addr, port
