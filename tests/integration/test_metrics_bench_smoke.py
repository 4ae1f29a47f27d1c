"""bench/metrics_bench.py at a small scale, end to end, so the scrape-cost bench never rots.

It builds its own database on the test server (named after this run's test
database), times a scrape and the chart's two series, and drops it. The figures
are not judged (a benchmark, not a timed test): what is checked is that every
statement of a scrape was measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.support import ROOT

pytestmark = pytest.mark.process


def test_the_scrape_cost_bench_runs(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    database = f"{connection.settings_dict['NAME']}_mbench"[:63]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, str(ROOT / "bench" / "metrics_bench.py"), "--events", "20000", "--repeats", "2"]
    done = subprocess.run(
        [*command, "--database", database, "--json", str(out), "--drop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["events"] == 20000 + 3000 + 500
    scrape, hour, day = results["measurements"]
    assert {"stats_by_topic_status", "metrics_lag_by_topic", "drainer_live_by_topic", "doctor_table_health"} <= set(
        scrape["statements"]
    ), scrape["statements"]
    assert set(hour["statements"]) == {"chart_last_hour"} and set(day["statements"]) == {"chart_last_day"}
    for measurement in (scrape, hour, day):
        assert 0 < measurement["median_ms"] <= measurement["max_ms"], measurement
    assert "database time, all statements" in done.stdout
