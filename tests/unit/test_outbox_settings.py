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
        ({"MAX_ATTEMPTS": 0}, "outbox.E002", "OUTBOX['MAX_ATTEMPTS'] must be >= 1, got 0"),
        ({"BATCH_SIZE": "10"}, "outbox.E001", "OUTBOX['BATCH_SIZE'] must be a int, got '10'"),
        ({"NOTIFY": "no"}, "outbox.E008", "OUTBOX['NOTIFY'] must be true or false, got 'no'"),
        ({"LEASE": 0.5}, "outbox.E006", "OUTBOX['LEASE'] must be >= 1, got 0.5"),
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
