"""The benchmark page holds only recorded figures (issue 16, point 7), without a database.

The committed docs/BENCHMARKS.md is what ``bench/run.py --report-only`` makes of the
committed bench/results.json, byte for byte; the hand-written analysis quotes figures
only through placeholders filled from the results; a ratio never divides rows of
different backlogs; every target judged met or not met names its samples; and an
``--update`` keeps the samples it replaces and says which rows it measured.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import figures, merge, report, targets
from bench.samples import NOT_RECORDED
from tests.support import ROOT

RESULTS = ROOT / "bench" / "results.json"
ANALYSIS = ROOT / "bench" / "analysis.md"


#: The results of one recorded run (2026-11-29, before the new drainer), frozen here: the
#: tests below reason about what that run did and did not record, whatever a later run
#: commits to bench/results.json (which the tests of the committed page read).
RECORDED = Path(__file__).parent / "data" / "bench_results_2026-11-29.json"


def committed() -> dict[str, Any]:
    return json.loads(RECORDED.read_text(encoding="utf-8"))


def test_report_only_rewrites_the_committed_page_byte_for_byte(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--report-only", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "BENCHMARKS.md").read_bytes()
    assert page == (ROOT / "docs" / "BENCHMARKS.md").read_bytes(), (
        "docs/BENCHMARKS.md is not what bench/results.json gives: run python bench/run.py --report-only"
    )


#: A measured-looking figure: a decimal, a thousands comma, or a number with a unit.
FIGURE = re.compile(
    r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+|\d+\s*(?:%|x\b|ms\b|µs\b|us\b|s\b|MiB\b|MB\b|GiB\b|events/s|results/s)"
)


def test_the_analysis_quotes_figures_only_through_placeholders() -> None:
    template = ANALYSIS.read_text(encoding="utf-8")
    prose = figures.PLACEHOLDER.sub("", template)
    prose = re.sub(r"`[^`]*`", "", prose)  # settings and file names in code spans are configuration
    assert FIGURE.findall(prose) == [], "bench/analysis.md types figures by hand: use a placeholder"
    names = set(figures.PLACEHOLDER.findall(template))
    assert names and names <= set(figures.FIGURES)


def test_the_figure_pattern_catches_typed_figures() -> None:
    for typed in ("3,625 after", "about 128 us per event", "load 1.2 to 3", "27%", "1.45x", "25 ms"):
        assert FIGURE.search(typed), typed


def test_an_unknown_figure_is_a_clear_error() -> None:
    with pytest.raises(figures.UnknownFigure, match=r"unknown figure\(s\) headline_speed; known: cores"):
        figures.render("{{ headline_speed }}", committed())


def test_figures_a_run_did_not_record_say_so() -> None:
    results = committed()
    results["throughput"] = [r for r in results["throughput"] if r["workers"] != 2]
    values = figures.figures(results)
    assert values["headline_rate"] == NOT_RECORDED
    assert values["trivial_fraction"] == NOT_RECORDED
    assert values["batch1_1_fraction"] == "9%"
    assert figures.render("{{trivial_rate}}", results) == NOT_RECORDED


def test_a_ratio_of_different_backlogs_is_not_judged() -> None:
    results = committed()
    # The committed run compared the Redis baseline (5,000 results) with the headline (100,000).
    redis = [t for t in targets.targets(results) if "old design" in t.text]
    assert len(redis) == 2
    assert all(t.met is None and t.measured.startswith("not comparable") for t in redis)
    headline = next(r for r in results["throughput"] if (r["kind"], r["workers"], r["batch"]) == ("ceiling", 2, 500))
    headline["events"] = 50_000
    pricing = targets.targets(results)[0]
    assert pricing.text.startswith("2 drainers, batch 500, pricing handler") and pricing.met is None


def test_every_judged_target_names_its_samples() -> None:
    live = json.loads(RESULTS.read_text(encoding="utf-8"))  # the results the committed page is made of
    judged = [t for t in targets.targets(live) if t.met is not None]
    assert judged and all(re.match(r"n=\d", t.n) for t in judged)
    page = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    for t in judged:
        assert f"| {t.measured} | {t.n} | {'**met**' if t.met else '**not met**'} |" in page


def test_issue_10_targets_are_on_the_page_even_unrecorded() -> None:
    issue10 = [t for t in targets.targets(committed()) if t.issue == 10]
    assert len(issue10) == 7
    for unrecorded in ("trivial", "round trips"):
        target = next(t for t in issue10 if unrecorded in t.text)
        assert target.measured == NOT_RECORDED and target.met is None


def test_load_per_case_is_min_median_max_of_every_sample() -> None:
    results = committed()
    results["meta"]["loads"] = {"latency": ["9.00 1 1", "1.00 1 1", "2.00 1 1", "0.50 1 1"]}
    page = report.markdown(results, None, "")
    assert "- latency: 0.50 / 1.50 / 9.00 (n=4)" in page


def _later_run(results: dict[str, Any]) -> dict[str, Any]:
    later = {
        "throughput": [
            {"kind": "project", "workers": 1, "batch": 1, "events": 2000, "rates": [100.0]},
            {"kind": "project", "workers": 9, "batch": 1, "events": 2000, "rates": [7.0]},
        ],
        "trigger": copy.deepcopy(results["trigger"]),
        "latency": copy.deepcopy(results["latency"]),
        "meta": {
            "date": "2030-01-01 00:00 UTC",
            "command": "python bench/run.py --update --cases throughput,trigger",
            "load_start": "1.00 1.00 1.00",
            "load_end": "2.00 2.00 2.00",
            "loads": {"throughput": ["1.00 1 1"], "trigger": ["3.00 1 1"]},
        },
    }
    later["trigger"]["single"]["1"]["trigger"] = [1.0, 2.0, 3.0]
    return later


def test_update_keeps_the_samples_it_replaces_and_marks_its_rows() -> None:
    results = committed()
    before = copy.deepcopy(results)
    merged = merge.merge(results, _later_run(results))
    rows = {(r["kind"], r["workers"], r["batch"]): r for r in merged["throughput"]}
    assert rows[("project", 1, 1)]["rates"] == [100.0] and rows[("project", 1, 1)]["run"] == 1
    assert rows[("project", 9, 1)]["run"] == 1
    assert rows[("ceiling", 1, 1)] == next(r for r in before["throughput"] if r["kind"] == "ceiling")
    assert len(merged["throughput"]) == len(before["throughput"]) + 1
    superseded = {(e["case"], e["run"], e["replaced_by"]) for e in merged["superseded"]}
    assert superseded == {("throughput", 0, 1), ("trigger", 0, 1), ("latency", 0, 1)}
    old_row = next(e["data"] for e in merged["superseded"] if e["case"] == "throughput")
    assert old_row == next(
        r for r in before["throughput"] if (r["kind"], r["workers"], r["batch"]) == ("project", 1, 1)
    )
    assert next(e["data"] for e in merged["superseded"] if e["case"] == "trigger") == before["trigger"]
    assert merged["meta"]["case_runs"] == {"trigger": 1, "latency": 1}
    assert merged["meta"]["loads"]["throughput"] == [*before["meta"]["loads"]["throughput"], "1.00 1 1"]
    assert merged["meta"]["loads"]["trigger"] == ["3.00 1 1"]

    again = merge.merge(merged, _later_run(results))
    assert [e["run"] for e in again["superseded"] if e["case"] == "trigger"] == [0, 1]
    assert len(again["meta"]["runs"]) == 3

    page = report.markdown(merged, None, "")
    assert "| 1 | 1 (run 1) | 100 |" in page
    assert "- run 1: `python bench/run.py --update --cases throughput,trigger` on 2030-01-01 00:00 UTC" in page
    assert "n = 3 repetition(s) per variant (run 1)." in page
    assert "## End-to-end latency (run 1)\n" in page and "## Scale\n" in page
    assert (
        "- throughput project x1 batch 1: 78 (69–88) events/s over 2,000 (n=2); from run 0, replaced by run 1" in page
    )


def test_the_page_links_the_writers_benchmark_once_its_script_exists() -> None:
    assert ("Writers' benchmark", "writers.md", "bench/writers.py") in report.LINKED_PAGES
    page = report.markdown(committed(), None, "", report.LINKED_PAGES)
    assert "## Writers' benchmark\n\nOn its own page: [writers.md](writers.md) (`python bench/writers.py`)." in page
    assert "## Writers' benchmark" not in report.markdown(committed(), None, "")


def test_a_case_that_fails_in_an_update_keeps_its_earlier_samples() -> None:
    results = committed()
    later = _later_run(results)
    later["trigger"] = {"error": "AssertionError: boom"}
    merged = merge.merge(results, later)
    assert merged["trigger"] == results["trigger"]
    assert merged["meta"]["runs"][1]["cases"] == "throughput, latency, trigger (failed: AssertionError: boom)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--report-only", "--results", "/nonexistent/results.json"], "--report-only needs earlier results: no file"),
        (["--update", "--report-only"], "--update measures and --report-only does not: choose one"),
        (["--quick", "--update"], "--update with --quick needs --out or --results"),
    ],
)
def test_run_refuses_update_and_report_only_misuse(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import run

    with pytest.raises(SystemExit) as exc:
        run.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_report_only_refuses_a_file_that_is_no_results_file(tmp_path: Path) -> None:
    from bench import run

    path = tmp_path / "results.json"
    path.write_text("{}")
    with pytest.raises(SystemExit, match=r"results.json is not a bench/run.py results file \(no 'meta'\)"):
        run.read_results(path)
