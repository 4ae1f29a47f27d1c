"""The writers' pages are what bench/writers.py makes of their recorded figures (issue 16,
point 7, for bench/writers.py): docs/writers.md from bench/writers.json and
docs/writers-pg18.md from bench/writers-pg18.json, byte for byte, without a database."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bench import writers
from tests.support import ROOT

PAGES = [("bench/writers.json", "docs/writers.md"), ("bench/writers-pg18.json", "docs/writers-pg18.md")]


@pytest.mark.parametrize(("figures", "page"), PAGES, ids=["pg15", "pg18"])
def test_the_committed_writers_page_is_its_figures_rendered(figures: str, page: str) -> None:
    result = json.loads((ROOT / figures).read_text(encoding="utf-8"))
    assert writers.markdown(result) == (ROOT / page).read_text(encoding="utf-8"), (
        f"{page} is not what {figures} gives: render it with bench.writers.markdown"
    )


def _cost_row(result: dict[str, Any], clients: int) -> str:
    return next(line for line in writers.targets(result) if line.startswith(f"| {clients} writer(s)"))


def test_a_cost_below_1x_is_not_judged() -> None:
    result = json.loads((ROOT / "bench/writers.json").read_text(encoding="utf-8"))
    assert _cost_row(result, 8).endswith("| **met** |")
    noisy = copy.deepcopy(result)
    noisy["writers"]["variants"]["no trigger"]["8"]["tps"] = [1.0] * 6
    assert _cost_row(noisy, 8).endswith("| n/a: cost below 1x, noise |")
