"""should_auto_record: every decision and its reason, no database."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from pricing.auto_record import AutoRecordConfig, Decision, should_auto_record

CONFIG = AutoRecordConfig()


@dataclass
class Result:
    source: str = "html_ml"
    price: Decimal | None = Decimal("9.99")
    confidence: Any = 0.9


@pytest.mark.parametrize(
    ("result", "config", "expected"),
    [
        (Result(), CONFIG, Decision(True, "eligible")),
        (Result(), AutoRecordConfig(enabled=False), Decision(False, "disabled")),
        (Result(source="html_regex"), CONFIG, Decision(False, "source_not_allowed")),
        (Result(confidence=0.849), CONFIG, Decision(False, "low_confidence")),
        (Result(confidence=0.85), CONFIG, Decision(True, "eligible")),  # the threshold itself passes
        (Result(price=None), CONFIG, Decision(False, "invalid_price")),
        (Result(price=Decimal("0")), CONFIG, Decision(False, "invalid_price")),
        (Result(price=Decimal("-1")), CONFIG, Decision(False, "invalid_price")),
        # confidence that is not a number from 0 to 1 is never "high enough"
        (Result(confidence=float("nan")), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=float("inf")), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=float("-inf")), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=1.7), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=-0.1), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=None), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=True), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence="0.9"), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=Decimal("NaN")), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=1), CONFIG, Decision(True, "eligible")),
        (Result(confidence=0.0), AutoRecordConfig(min_confidence=0), Decision(True, "eligible")),
        (Result(confidence=float("nan")), AutoRecordConfig(min_confidence=0), Decision(False, "invalid_confidence")),
        # a price that is not a number above 0
        (Result(price=Decimal("NaN")), CONFIG, Decision(False, "invalid_price")),
        (Result(price=Decimal("sNaN")), CONFIG, Decision(False, "invalid_price")),
        (Result(price=Decimal("Infinity")), CONFIG, Decision(False, "invalid_price")),
        (Result(price=float("nan")), CONFIG, Decision(False, "invalid_price")),
        (Result(price=Decimal("0.01")), CONFIG, Decision(True, "eligible")),
        # order: a disabled config wins over everything, the source over confidence
        (Result(source="x", confidence=0.1, price=None), AutoRecordConfig(enabled=False), Decision(False, "disabled")),
        (Result(source="x", confidence=0.1), CONFIG, Decision(False, "source_not_allowed")),
        (Result(confidence=float("nan"), price=None), CONFIG, Decision(False, "invalid_confidence")),
        (Result(confidence=0.1, price=Decimal("NaN")), CONFIG, Decision(False, "low_confidence")),
    ],
)
def test_decisions(result: Result, config: AutoRecordConfig, expected: Decision) -> None:
    assert should_auto_record(result, config) == expected


def test_decision_unpacks() -> None:
    record, reason = should_auto_record(Result(), CONFIG)
    assert record is True and reason == "eligible"
