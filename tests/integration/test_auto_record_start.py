"""The auto-record config is read once per process, before the first claim (the
handler's on_start): a file broken after that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import registry
from pricing import auto_record
from pricing.models import CRAWL_RESULT_CREATED
from tests.factories import make_result

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_file_broken_after_start_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "auto_record.json"
    path.write_text(json.dumps({"min_confidence": 0.5}))
    monkeypatch.setenv("AUTO_RECORD_CONFIG", str(path))
    monkeypatch.setattr(auto_record, "_config", None)
    registry.start([CRAWL_RESULT_CREATED])  # what a drainer does before its first claim
    path.write_text("{broken")
    result = make_result(confidence=0.6)
    drainer = Drainer(DrainerConfig.from_settings())
    try:
        drainer.drain()
    finally:
        drainer.close()
    result.refresh_from_db()
    assert (result.history_record_status, result.history_record_reason) == ("recorded", "eligible"), (
        "the handler read the file again instead of the config loaded at start"
    )
