"""The benchmark suite's quick mode, end to end, so bench/ never rots.

Runs ``python bench/run.py --quick`` (one drainer count, one batch size) against
the test server: it creates and drops its own database there, starts real
``drain_outbox`` processes and writes its report. The numbers are not judged
here (they are benchmarks, not timed tests); what is checked is that every case
ran, produced figures, and that the report was written. It needs nothing beyond
requirements.txt: the chart needs matplotlib and the Redis baseline the redis
client and a local Redis (bench/requirements.txt); without them those two tests
skip, except under CI, where a skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.support import ROOT

pytestmark = pytest.mark.process


def _server_url() -> str:
    """The test server's URL (its maintenance database is irrelevant: the bench makes its own)."""
    return os.environ["DATABASE_URL"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    # A database of its own on the test server, named after this checkout's test
    # database so parallel runs do not collide; the bench drops it at the end.
    database = f"{connection.settings_dict['NAME']}_bench"[:63]
    env = {**os.environ, "DATABASE_URL": _server_url(), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--drainers",
            "1",
            "--batch-sizes",
            "100",
            "--database",
            database,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"bench/run.py --quick failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())
    yield {"results": results, "out": out, "stdout": proc.stdout}


def _finite(values: list[float]) -> bool:
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)


def test_quick_run_measures_every_case(bench_run: dict[str, Any]) -> None:
    results = bench_run["results"]
    kinds = {(row["kind"], row["workers"], row["batch"]) for row in results["throughput"]}
    assert kinds == {("project", 1, 100), ("ceiling", 1, 100)}
    assert all(_finite(row["rates"]) for row in results["throughput"])
    latency = {lat["notify"]: lat for lat in results["latency"]}
    assert set(latency) == {True, False}
    for lat in latency.values():
        assert lat["runs"] and all(run["n"] > 0 and run["p50"] <= run["p99"] for run in lat["runs"])
    trigger = results["trigger"]
    for writers in ("1", "2"):
        assert set(trigger["single"][writers]) == {
            "trigger",
            "trigger_notify_off",
            "trigger_with_ignore_check",
            "no_trigger",
        }
        assert all(_finite(v) for v in trigger["single"][writers].values())
    assert all(_finite(v) for v in trigger["bulk"].values())
    assert _finite(results["scale"]["empty"]["rates"]) and _finite(results["scale"]["done"]["rates"])
    memory = results["memory"]
    assert memory["peak_kib"] >= memory["warm_kib"] > 0
    pinned = results["pinned"]
    assert _finite(pinned["baseline"]) and pinned["pinned_rounds"] >= 1


def test_quick_run_writes_the_report(bench_run: dict[str, Any]) -> None:
    page = (bench_run["out"] / "BENCHMARKS.md").read_text()
    for heading in (
        "## Targets (issue 5)",
        "## Drain throughput against the plain-SQL ceiling",
        "## End-to-end latency",
        "## The trigger's cost for writers",
        "## Scale",
    ):
        assert heading in page, heading


def test_quick_run_draws_the_chart(bench_run: dict[str, Any]) -> None:
    page = (bench_run["out"] / "BENCHMARKS.md").read_text()
    chart = Path(bench_run["out"] / "bench_throughput.png")
    if importlib.util.find_spec("matplotlib") is None:
        assert not chart.exists() and "](bench_throughput.png)" not in page, "a chart without matplotlib?"
        pytest.skip("no chart: matplotlib is not installed (pip install -r bench/requirements.txt)")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![throughput by batch size and drainers](bench_throughput.png)" in page


def test_quick_run_measures_the_redis_baseline(bench_run: dict[str, Any]) -> None:
    redis = bench_run["results"]["redis"]
    if isinstance(redis, dict) and "skipped" in redis:
        pytest.skip(f"Redis baseline not run: {redis['skipped']}")
    assert {r["per_item"] for r in redis} == {True, False}
    assert all(_finite(r["rates"]) for r in redis)
