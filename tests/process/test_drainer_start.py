"""A drainer whose handler cannot start (pricing: an auto-record config that cannot be
loaded) stops before its first claim with the error, and fails no event."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
from tests.factories import make_result
from tests.support import drainer_env, manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{broken", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (
            '{"allowed_sources": ["html_ml "]}',
            "'allowed_sources' items must not start or end with spaces, got 'html_ml ' in ['html_ml ']",
        ),
    ],
)
def test_a_config_that_cannot_be_loaded_stops_the_drainer_and_fails_no_event(
    tmp_path: Path, content: str, error: str
) -> None:
    for _ in range(5):
        make_result()
    broken = tmp_path / "auto_record.json"
    broken.write_text(content)
    # --skip-checks: the system check would stop it first; the drainer must stop on its own too.
    done = manage("drain_outbox", "--once", "--skip-checks", env=drainer_env(AUTO_RECORD_CONFIG=str(broken)))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"CommandError: the handler of {CRAWL_RESULT_CREATED} cannot start: {broken}: {error}"
    )
    events = list(OutboxEvent.objects.values_list("status", "attempts"))
    assert events == [("pending", 0)] * 5, f"events were touched: {events}"
    assert not CrawlResult.objects.exclude(history_record_status=None).exists()
