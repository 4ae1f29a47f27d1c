"""``bench/run.py --update``: merge a later run's cases into earlier results, losing no sample.

The later run's throughput rows replace the earlier rows of the same configuration
(kind, drainers, batch) and leave the others; every other case it ran replaces that
case whole. Whatever is replaced moves to ``superseded`` with the run it came from,
so results.json keeps every run's samples. ``meta["runs"]`` lists the runs (run 0
is the first full run), each row of a later run carries ``"run"`` and
``meta["case_runs"]`` says which run each replaced case comes from: the page marks
them.
"""

from __future__ import annotations

from typing import Any


def runs_of(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs behind a results file; one (run 0, from its meta) when it was never updated."""
    if meta.get("runs"):
        return list(meta["runs"])
    first = {k: meta.get(k) for k in ("date", "command", "load_start", "load_end")}
    return [{**first, "cases": "all"}]


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["kind"], row["workers"], row["batch"])


def merge(previous: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the cases of ``later`` (a run's results, its meta included) merged in."""
    meta = dict(previous["meta"])
    runs = runs_of(meta)
    index = len(runs)
    new_meta = later["meta"]
    # A case that failed in the later run keeps its earlier samples; the run says it failed.
    failed = {case for case, data in later.items() if isinstance(data, dict) and "error" in data and case in previous}
    cases = [case for case in later if case != "meta" and case not in failed]
    runs.append(
        {
            "date": new_meta["date"],
            "command": new_meta["command"],
            "load_start": new_meta["load_start"],
            "load_end": new_meta["load_end"],
            "cases": ", ".join(cases + [f"{case} (failed: {later[case]['error']})" for case in sorted(failed)]),
        }
    )
    merged = {k: v for k, v in previous.items() if k != "meta"}
    superseded = list(previous.get("superseded", []))
    case_runs = dict(meta.get("case_runs", {}))
    loads = {case: list(values) for case, values in meta.get("loads", {}).items()}
    for case in cases:
        old, new = previous.get(case), later[case]
        new_loads = new_meta.get("loads", {}).get(case, [])
        if case == "throughput" and isinstance(old, list) and isinstance(new, list):
            fresh = {_row_key(row): {**row, "run": index} for row in new}
            rows = []
            for row in old:
                replacement = fresh.pop(_row_key(row), None)
                if replacement is None:
                    rows.append(row)
                    continue
                superseded.append({"case": case, "run": row.get("run", 0), "replaced_by": index, "data": row})
                rows.append(replacement)
            merged[case] = rows + list(fresh.values())
            loads[case] = loads.get(case, []) + new_loads
            continue
        if old is not None:
            superseded.append(
                {
                    "case": case,
                    "run": case_runs.get(case, 0),
                    "replaced_by": index,
                    "data": old,
                    "loads": loads.get(case, []),
                }
            )
        merged[case] = new
        case_runs[case] = index
        loads[case] = new_loads
    meta.update({"runs": runs, "case_runs": case_runs, "loads": loads})
    merged["superseded"] = superseded
    merged["meta"] = meta
    return merged
