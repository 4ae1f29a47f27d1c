"""outbox_status, outbox_retry and outbox_purge through call_command, and one real process."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from outbox.models import OutboxEvent
from tests.factories import make_event
from tests.support import ROOT, drainer_env

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def ago(**kwargs: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kwargs)


def make_mix() -> None:
    make_event("pricing.crawl_result.created", "p1")
    make_event("pricing.crawl_result.created", "p2", locked_by="outbox:h:1:x", locked_until=ago(seconds=-60))
    make_event("stock.level.counted", "f1", status="failed", attempts=3, last_error="boom", processed_at=ago(hours=1))
    make_event("stock.level.counted", "d1", status="done", attempts=1, processed_at=ago(minutes=5))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE outbox_event SET created_at = now() - interval '10 minutes', "
            "available_at = now() - interval '10 minutes' WHERE key = 'p1'"
        )


def test_status_prints_a_table_of_counts_and_the_lag() -> None:
    make_mix()
    out = run("outbox_status")
    assert "Outbox: 2 pending (1 processing, 1 queued), 1 failed, 1 done" in out
    assert "Lag: 10m 0s (the oldest event claimable now has waited that long)" in out
    for text in ("pricing.crawl_result.created", "stock.level.counted", "pending", "failed", "done"):
        assert text in out, out
    assert "~" not in out, "nothing here is an estimate"


def test_status_json_keeps_the_old_keys() -> None:
    make_mix()
    data = json.loads(run("outbox_status", "--json"))
    assert {k: data[k] for k in ("pending", "done", "failed")} == {"pending": 2, "done": 1, "failed": 1}
    assert (data["queue_size"], data["processing_size"], data["failed_size"]) == (1, 1, 1)
    assert 600 <= data["oldest_pending_age_seconds"] < 700
    assert data["estimated"] == []
    only = json.loads(run("outbox_status", "--json", "--topic", "stock.level.counted"))
    assert (only["pending"], only["failed"], only["oldest_pending_age_seconds"]) == (0, 1, None)


def test_status_fail_if_lag_over_exits_2_only_when_over() -> None:
    make_mix()
    assert "Outbox:" in run("outbox_status", "--fail-if-lag-over", "1h")
    with pytest.raises(CommandError, match=r"has waited longer than --fail-if-lag-over 5m") as info:
        run("outbox_status", "--fail-if-lag-over", "300")
    assert info.value.returncode == 2


def test_retried_old_failures_do_not_trip_the_lag_probe() -> None:
    """The lag counts from when an event became claimable: a retry of day-old failures is not lag."""
    for i in range(3):
        make_event("t", f"old-{i}", status="failed", attempts=3, processed_at=ago(days=1))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE outbox_event SET created_at = now() - interval '2 days'")
    assert run("outbox_retry") == "Retried 3 failed event(s).\n"
    data = json.loads(run("outbox_status", "--json", "--fail-if-lag-over", "5m"))  # exits 0: no CommandError
    assert data["lag_seconds"] < 60 and data["oldest_pending_age_seconds"] >= 2 * 86400, data


def test_status_fail_if_lag_over_in_a_real_process() -> None:
    """The exit status a cron job or a probe sees."""
    make_mix()
    command = [sys.executable, str(ROOT / "manage.py"), "outbox_status", "--json", "--fail-if-lag-over", "60"]
    proc = subprocess.run(command, cwd=ROOT, env=drainer_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["queue_size"] == 1, "the JSON is printed before exiting 2"
    assert "--fail-if-lag-over 1m" in proc.stderr
    ok = subprocess.run(command[:-1] + ["3600"], cwd=ROOT, env=drainer_env(), capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_retry_command() -> None:
    failed = [make_event("a", str(i), status="failed", attempts=3) for i in range(3)]
    other = make_event("b", "x", status="failed", attempts=3)
    assert run("outbox_retry", "--dry-run") == "Would retry 4 failed event(s).\n"
    assert run("outbox_retry", "--topic", "a", "--limit", "2") == "Retried 2 failed event(s).\n"
    out = run("outbox_retry", "--id", str(failed[0].pk), "--id", str(other.pk))
    assert out == (
        "Retried 1 failed event(s).\n1 of the given id(s) are not failed (or are locked right now): left alone.\n"
    )
    assert OutboxEvent.objects.filter(status="failed").count() == 1
    assert run("outbox_retry") == "Retried 1 failed event(s).\n"


def test_purge_command() -> None:
    make_event("t", "old", status="done", processed_at=ago(days=10))
    make_event("t", "new", status="done", processed_at=ago(hours=1))
    make_event("t", "oldfail", status="failed", processed_at=ago(days=10))
    assert run("outbox_purge", "--dry-run") == "Would purge 1 done event(s) finished more than 7d ago.\n"
    assert run("outbox_purge", "--older-than", "30m") == "Purged 2 done event(s) finished more than 30m ago.\n"
    with pytest.raises(CommandError, match="add --yes to confirm"):
        run("outbox_purge", "--status", "failed")
    assert OutboxEvent.objects.filter(status="failed").count() == 1, "refused means nothing deleted"
    assert run("outbox_purge", "--status", "failed", "--dry-run") == (
        "Would purge 1 failed event(s) finished more than 7d ago.\n"
    )
    assert run("outbox_purge", "--status", "failed", "--yes", "--chunk-size", "1") == (
        "Purged 1 failed event(s) finished more than 7d ago.\n"
    )
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["outbox_status", "--fail-if-lag-over", "soon"], "--fail-if-lag-over: must be a duration such as 90s"),
        (["outbox_status", "--topic", " "], "--topic: must not be empty"),
        (["outbox_retry", "--limit", "0"], "--limit: must be from 1 to 9223372036854775807 (bigint), got 0"),
        (["outbox_retry", "--id", "x"], "--id: must be a whole number, got 'x'"),
        (["outbox_retry", "--chunk-size", "-3"], "--chunk-size: must be from 1 to 100000, got -3"),
        (["outbox_purge", "--older-than", "7 days"], "--older-than: must be a duration such as 90s"),
        (["outbox_purge", "--status", "pending"], "--status: invalid choice: 'pending'"),
        (["outbox_doctor", "--max-dead-ratio", "2"], "--max-dead-ratio: must be from 0 to 1, got 2"),
        (["outbox_doctor", "--max-transaction-age", "x"], "--max-transaction-age: must be a duration"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(args: list[str], text: str) -> None:
    with pytest.raises(CommandError, match=text.replace("(", r"\(").replace(")", r"\)")):
        run(*args)


@pytest.mark.parametrize("command", ["outbox_status", "outbox_retry", "outbox_purge", "outbox_doctor"])
def test_every_option_says_its_default(command: str) -> None:
    from django.core.management import load_command_class
    from django.core.management.base import CommandParser

    parser = CommandParser(prog=command)
    load_command_class("outbox", command).add_arguments(parser)
    for action in parser._actions:
        if action.dest == "help" or action.default in (None, False):
            continue
        assert action.help and action.help.endswith("(default: %(default)r)."), (command, action.dest, action.help)


def test_status_names_pending_topics_no_live_drainer_handles() -> None:
    make_mix()
    with connection.cursor() as cursor:  # a drainer seen just now, through a pooler (no session to check)
        cursor.execute(
            "INSERT INTO outbox_drainer (name, topics, host, pid, direct) "
            "VALUES ('outbox:h:9:abc', ARRAY['stock.level.counted'], 'h', 9, false)"
        )
    out = run("outbox_status")
    assert "Drainers alive: 1" in out
    assert "2 pending event(s) of pricing.crawl_result.created wait for a drainer that handles it" in out
    data = json.loads(run("outbox_status", "--json"))
    assert (data["drainers"], data["unhandled"]) == (1, {"pricing.crawl_result.created": 2})
    with connection.cursor() as cursor:  # long unseen: not alive
        cursor.execute("UPDATE outbox_drainer SET seen_at = now() - interval '1 day'")
    assert json.loads(run("outbox_status", "--json"))["drainers"] == 0
