"""argparse ``type=`` validators shared by the outbox commands."""

from __future__ import annotations

import argparse
import datetime
import re

from django.utils import timezone

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if value < 0 or value != value:  # NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"must be a duration such as 90s, 15m, 12h, 7d or 2w, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling ``duration()`` reads back: 604800 -> ``7d``."""
    for suffix in ("d", "h", "m"):
        unit = _UNITS[suffix]
        if seconds and seconds % unit == 0:
            return f"{int(seconds // unit)}{suffix}"
    return f"{seconds:g}s"


def fraction(text: str) -> float:
    """A number from 0 to 1, e.g. ``0.2``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def non_empty(text: str) -> str:
    """A name such as a topic or a source: not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def moment(text: str) -> datetime.datetime:
    """An instant: ISO 8601 (``2026-11-01``, ``2026-11-01T12:00``, with or without an
    offset; naive means the project's TIME_ZONE) or a duration ago (``12h``, ``7d``)."""
    if _DURATION_RE.match(text):
        return timezone.now() - datetime.timedelta(seconds=duration(text))
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a date or time such as 2026-11-01 or 2026-11-01T12:00:00+00:00, "
            f"or a duration ago such as 12h or 7d, got {text!r}"
        ) from None
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value
