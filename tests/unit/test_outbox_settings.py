"""OUTBOX settings: validated with stable check ids that name the key and the value."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from outbox.conf import OutboxSettings, get_settings, validate
from outbox.exceptions import OutboxConfigError


def test_defaults() -> None:
    with override_settings(OUTBOX={}):
        assert get_settings() == OutboxSettings()


def test_overrides_apply() -> None:
    with override_settings(OUTBOX={"BATCH_SIZE": 500, "LEASE": 30}):
        s = get_settings()
    assert (s.batch_size, s.lease) == (500, 30)


@pytest.mark.parametrize(
    ("raw", "check_id", "text"),
    [
        ({"MAX_ATTEMPTS": 0}, "outbox.E002", "OUTBOX['MAX_ATTEMPTS'] must be from 1 to 1000, got 0"),
        ({"BATCH_SIZE": "10"}, "outbox.E001", "OUTBOX['BATCH_SIZE'] must be a whole number, got '10'"),
        ({"NOTIFY": "no"}, "outbox.E008", "OUTBOX['NOTIFY'] must be true or false, got 'no'"),
        ({"LEASE": 0.5}, "outbox.E006", "OUTBOX['LEASE'] must be from 1 to 2147483 seconds"),
        # NaN compares false with every bound; infinities and huge values overflow PostgreSQL
        ({"LEASE": float("nan")}, "outbox.E006", "OUTBOX['LEASE'] must be from 1 to 2147483 seconds (24.8 days"),
        ({"POLL_INTERVAL": float("inf")}, "outbox.E007", "OUTBOX['POLL_INTERVAL'] must be from 0.01 to 2147483"),
        ({"BACKOFF_CAP": float("inf")}, "outbox.E004", "OUTBOX['BACKOFF_CAP'] must be from 0 to 3153600000 seconds"),
        ({"BACKOFF_CAP": 1e12}, "outbox.E004", "(100 years), got 1000000000000.0"),
        ({"BACKOFF_BASE": float("nan")}, "outbox.E003", "OUTBOX['BACKOFF_BASE'] must be from 0 to"),
        ({"BACKOFF_JITTER": 5}, "outbox.E005", "OUTBOX['BACKOFF_JITTER'] must be from 0 to 1, got 5"),
        ({"LEASE": 3_000_000}, "outbox.E006", "the longest timeout PostgreSQL accepts), got 3000000"),
        ({"STATEMENT_TIMEOUT": 2_200_000}, "outbox.E013", "OUTBOX['STATEMENT_TIMEOUT'] must be from 0 to 2147483"),
        ({"LOCK_TIMEOUT": float("-inf")}, "outbox.E014", "got -inf"),
        ({"RETENTION": float("inf")}, "outbox.E009", "OUTBOX['RETENTION'] must be from 0 to 3153600000"),
        ({"RESCUE_INTERVAL": 1e300}, "outbox.E012", "got 1e+300"),
        ({"PURGE_INTERVAL": float("nan")}, "outbox.E010", "got nan"),
        ({"BATCH_SIZE": 10**20}, "outbox.E001", "must be from 1 to 100000, got 100000000000000000000"),
        ({"PURGE_CHUNK": 10**12}, "outbox.E011", "must be from 1 to 100000"),
        ({"MAX_ATTEMPTS": 5000}, "outbox.E002", "must be from 1 to 1000, got 5000"),
        ({"ERROR_MAX_LENGTH": 2**31}, "outbox.E015", "must be from 100 to 1000000"),
        ({"BATCH": 5}, "outbox.E000", "OUTBOX['BATCH'] is not a known setting"),
        ({"BACKOFF_BASE": 10, "BACKOFF_CAP": 5}, "outbox.E004", "must be >= BACKOFF_BASE"),
    ],
)
def test_invalid(raw: dict[str, object], check_id: str, text: str) -> None:
    problems = validate(raw)
    assert problems and problems[0][0] == check_id and text in problems[0][1], problems
    with override_settings(OUTBOX=raw), pytest.raises(OutboxConfigError, match=check_id):
        get_settings()


def test_system_check_stops_manage_py() -> None:
    with override_settings(OUTBOX={"MAX_ATTEMPTS": 0}), pytest.raises(SystemCheckError, match="outbox.E002"):
        call_command("check")


@pytest.mark.parametrize(
    "raw",
    [{"BATCH_SIZE": "x"}, {"LEASE": float("nan")}, {"BACKOFF_CAP": float("inf")}, {"NOPE": 1}],
)
def test_help_works_whatever_the_settings(raw: dict[str, object]) -> None:
    """The parsers read OUTBOX for their defaults before the checks run: an invalid
    one must not make --help (or the check's own message) a traceback."""
    from django.core.management import load_command_class

    with override_settings(OUTBOX=raw):
        for name in ("drain_outbox", "outbox_purge"):
            parser = load_command_class("outbox", name).create_parser("manage.py", name)
            assert "--help" in parser.format_help()
