"""Hostile command-line values: refused by the parser with a message that names the flag
and what is allowed, before anything runs (these need no database)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from outbox.management.commands._args import duration, moment

TIMEOUT = "seconds (24.8 days, the longest timeout PostgreSQL accepts)"


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        (
            "drain_outbox",
            ["--interval", "inf"],
            f"--interval: must be from 0.01 to 2147483 {TIMEOUT}, got inf",
        ),
        ("drain_outbox", ["--interval", "1e300"], "argument --interval: must be from 0.01 to 2147483"),
        ("drain_outbox", ["--interval", "nan"], "argument --interval: must be from 0.01 to 2147483"),
        ("drain_outbox", ["--interval", "1e-300"], "argument --interval: must be from 0.01 to 2147483"),
        ("drain_outbox", ["--lease", "inf"], f"argument --lease: must be from 1 to 2147483 {TIMEOUT}, got inf"),
        ("drain_outbox", ["--lease", "3000000"], "argument --lease: must be from 1 to 2147483"),
        ("drain_outbox", ["--batch-size", str(2**63)], f"argument --batch-size: must be from 1 to 100000, got {2**63}"),
        ("drain_outbox", ["--max-attempts", "100000"], "argument --max-attempts: must be from 1 to 1000"),
        ("drain_outbox", ["--give-up-after", "inf"], "argument --give-up-after: must be a finite number of seconds"),
        ("drain_outbox", ["--retry-failed-every", "nan"], "argument --retry-failed-every: must be a finite number"),
        ("outbox_retry", ["--id", str(2**63)], f"argument --id: must be from 1 to {2**63 - 1} (bigint), got {2**63}"),
        ("outbox_retry", ["--limit", "1e3"], "argument --limit: must be a whole number, got '1e3'"),
        ("outbox_retry", ["--chunk-size", str(10**9)], "argument --chunk-size: must be from 1 to 100000"),
        ("outbox_purge", ["--older-than", "1000000000d"], "argument --older-than: must be at most 36500d (100 years)"),
        (
            "outbox_purge",
            ["--older-than", "7"],
            "--older-than: must be a duration such as 90s, 15m, 12h, 7d or 2w, with its unit, got '7'"[:80],
        ),
        ("outbox_purge", ["--chunk-size", str(2**63)], "argument --chunk-size: must be from 1 to 100000"),
        ("outbox_doctor", ["--max-transaction-age", "1" + "0" * 20 + "d"], "must be at most 36500d (100 years)"),
        ("outbox_status", ["--fail-if-lag-over", "99999999999w"], "must be at most 36500d (100 years)"),
        (
            "outbox_backfill",
            ["pricing.CrawlResult", "--filter", "crawled_at__gte=99999999999d"],
            "--filter crawled_at__gte: must be at most 36500d (100 years)",
        ),
        (
            "outbox_backfill",
            ["pricing.CrawlResult", "--filter", "crawled_at__gte=9999-12-31T23:59:59-23:59"],
            "--filter crawled_at__gte: must be an instant from 0001-01-01 to 9999-12-31 in UTC, "
            "got '9999-12-31T23:59:59-23:59'",
        ),
        (
            "outbox_backfill",
            ["pricing.CrawlResult", "--filter", "crawled_at__lt=0001-01-01T00:00:00+01:00"],
            "must be an instant from 0001-01-01",
        ),
        ("outbox_backfill", ["--chunk-size", "0"], "argument --chunk-size: must be from 1 to 100000, got 0"),
    ],
)
def test_refused_with_what_is_allowed(command: str, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command(command, *args)
    assert message in str(excinfo.value), excinfo.value
    assert "\n" not in str(excinfo.value)


def test_durations_and_moments_that_are_fine() -> None:
    assert duration("7") == 7 and duration("2w") == 14 * 86400 and duration("36500d") == 36500 * 86400
    # An offset PostgreSQL refuses (beyond 15:59) is fine once in UTC.
    assert moment("2026-01-01T00:00:00-23:59") == dt.datetime(2026, 1, 1, 23, 59, tzinfo=dt.UTC)
    assert moment("2026-11-01").tzinfo is not None
