"""The writers bench's quick mode, end to end, so bench/writers.py never rots.

Runs ``python bench/writers.py --quick`` against the test server: pgbench writers
with every trigger variant, the latency case with two real drainers, the WAL case
read through pg_walinspect; it creates and drops its own database. The figures are
not judged (a benchmark, not a timed test): every case ran and produced figures,
and the JSON and the report fragment were written. pgbench is required (CI
installs it: .ci/run); without it the bench says so and this test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.support import ROOT

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def writers_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out = tmp_path_factory.mktemp("writers")
    database = f"{connection.settings_dict['NAME']}_writers"[:63]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "writers.py"),
            "--quick",
            "--database",
            database,
            "--json",
            str(out / "writers.json"),
            "--markdown",
            str(out / "writers.md"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"bench/writers.py --quick failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    yield {
        "result": json.loads((out / "writers.json").read_text()),
        "page": (out / "writers.md").read_text(),
    }


def test_every_variant_ran_at_every_client_count(writers_run: dict[str, Any]) -> None:
    writers = writers_run["result"]["writers"]
    assert {"migrated", "migrated, notify off", "no trigger"} <= set(writers["variants"])
    for name, per in writers["variants"].items():
        assert set(per) == {str(c) for c in writers["clients"]}, name
        assert all(v > 0 for c in per.values() for v in c["tps"]), f"{name}: a run without inserts"
    # notify off and no trigger send nothing; the migrated trigger notifies.
    for name in ("migrated, notify off", "no trigger"):
        assert all(v == 0 for c in writers["variants"][name].values() for v in c["notifications_per_commit"])
    assert all(v > 0 for v in writers["variants"]["migrated"]["1"]["notifications_per_commit"])


def test_the_latency_case_measured_drained_events(writers_run: dict[str, Any]) -> None:
    for run in writers_run["result"]["latency"]:
        assert run["events"] > 0, run
        assert 0 <= run["p50_ms"] <= run["p99_ms"] <= run["max_ms"], run


def test_the_wal_case_counted_bytes_and_index_entries_of_each_phase(writers_run: dict[str, Any]) -> None:
    wal = writers_run["result"]["wal"]
    life = wal["fillfactors"]
    assert set(life["no trigger"]["phases"]) == {"insert"}
    for key, run in life.items():
        if key == "no trigger":
            continue
        assert set(run["phases"]) == {"insert", "claim", "ack"}, key
        assert all(p["bytes"] > 0 for p in run["phases"].values()), key
        # Each event enters the primary key at insert: the records were found and named.
        pkey = run["phases"]["insert"]["relations"]["outbox_event_pkey"]
        assert pkey.get("Btree/INSERT_LEAF", 0) >= wal["events"] * 0.9, pkey


def test_the_report_fragment_has_every_section(writers_run: dict[str, Any]) -> None:
    page = writers_run["page"]
    for heading in (
        "## Writers (issue 15)",
        "### Single-row inserts, pgbench",
        "### Event waits with writers and two drainers",
        "### Write amplification of an event's life",
    ):
        assert heading in page, heading


def test_the_report_fragment_starts_with_the_targets(writers_run: dict[str, Any]) -> None:
    page = writers_run["page"]
    assert page.index("### Targets") < page.index("### Single-row inserts, pgbench")
    assert "trigger + NOTIFY <= 1.3x no trigger" in page
    assert "index entries per event's life reduced by >= 1/3" in page
