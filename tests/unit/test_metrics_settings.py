"""The METRICS settings, the --metrics-port flag and the chart's geometry (no database needed)."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest
from django.core import checks
from django.test import override_settings

from outbox.chart import Point, chart_context
from outbox.checks import check_outbox_metrics
from outbox.conf import get_settings, validate
from outbox.management.commands._args import listen_address


def test_metrics_are_off_and_closed_by_default() -> None:
    with override_settings(OUTBOX={}):
        s = get_settings()
    assert (s.metrics, s.metrics_allowed_ips, s.metrics_basic_auth) == (False, (), None)


def test_metrics_settings_are_read() -> None:
    raw = {"METRICS": True, "METRICS_ALLOWED_IPS": ["10.0.0.0/8", "::1"], "METRICS_BASIC_AUTH": "p:secret"}
    with override_settings(OUTBOX=raw):
        s = get_settings()
    assert (s.metrics, s.metrics_allowed_ips, s.metrics_basic_auth) == (True, ("10.0.0.0/8", "::1"), "p:secret")


@pytest.mark.parametrize(
    ("raw", "check_id", "text"),
    [
        ({"METRICS": "yes"}, "outbox.E030", "OUTBOX['METRICS'] must be true or false, got 'yes'"),
        ({"METRICS_ALLOWED_IPS": "10.0.0.0/8"}, "outbox.E031", "must be a list of networks"),
        ({"METRICS_ALLOWED_IPS": ["10.0.0.0/33"]}, "outbox.E031", "got '10.0.0.0/33'"),
        ({"METRICS_ALLOWED_IPS": ["localhost"]}, "outbox.E031", "got 'localhost'"),
        ({"METRICS_ALLOWED_IPS": [123]}, "outbox.E031", "got 123"),  # ip_network(123) would be 0.0.0.123/32
        ({"METRICS_ALLOWED_IPS": [True]}, "outbox.E031", "got True"),
        ({"METRICS_BASIC_AUTH": "no-colon-secret"}, "outbox.E032", "must be None or 'user:password'"),
        ({"METRICS_BASIC_AUTH": ":secret"}, "outbox.E032", "(both parts non-empty)"),
        ({"METRICS_BASIC_AUTH": ("u", "secret")}, "outbox.E032", "must be None or 'user:password'"),
    ],
)
def test_bad_metrics_settings_are_named(raw: dict[str, object], check_id: str, text: str) -> None:
    problems = validate(raw)
    assert [cid for cid, _ in problems] == [check_id], problems
    assert text in problems[0][1]
    assert "secret" not in problems[0][1], "a password was echoed"


def test_metrics_on_without_a_way_in_for_a_scraper_is_a_warning() -> None:
    with override_settings(OUTBOX={"METRICS": True}):
        found = check_outbox_metrics()
    assert [(type(m), m.id) for m in found] == [(checks.Warning, "outbox.W030")]
    with override_settings(OUTBOX={"METRICS": True, "METRICS_ALLOWED_IPS": ["10.0.0.1"]}):
        assert check_outbox_metrics() == []
    with override_settings(OUTBOX={}):
        assert check_outbox_metrics() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9808", ("0.0.0.0", 9808)),  # noqa: S104 (the default: every interface)
        ("127.0.0.1:9808", ("127.0.0.1", 9808)),
        ("[::1]:0", ("::1", 0)),
        ("worker-1.internal:9100", ("worker-1.internal", 9100)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert listen_address(text) == expected


@pytest.mark.parametrize("text", ["", "http", "70000", "127.0.0.1:", "1.2.3.4:-1", "a b:80", "9808.5"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="PORT"):
        listen_address(text)


def _points(done: list[int], waits: list[float | None], step: int = 1) -> list[Point]:
    start = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    return [
        Point(start + dt.timedelta(minutes=i * step), d, 0, w) for i, (d, w) in enumerate(zip(done, waits, strict=True))
    ]


def test_chart_bars_scale_to_the_busiest_minute_and_the_line_skips_empty_minutes() -> None:
    done = [0] * 58 + [50, 100]
    waits: list[float | None] = [None] * 58 + [2.0, 4.0]
    context = chart_context("1h", _points(done, waits))
    assert len(context["bars"]) == 60 and context["done_total"] == 150
    tallest = max(context["bars"], key=lambda b: b["done_h"])
    assert tallest["done"] == 100 and context["bottom_y"] - tallest["done_y"] == pytest.approx(tallest["done_h"])
    assert context["bars"][58]["done_h"] == pytest.approx(tallest["done_h"] / 2)
    assert [p["seconds"] for p in context["line"]] == [2.0, 4.0]
    assert context["line"][1]["y"] < context["line"][0]["y"], "a longer wait is drawn higher"
    assert context["other_span"] == "24h" and context["points_with_data"] == 2
    assert (
        context["grid"][-1]["rate"] == "100" and context["grid"][-1]["wait"] == "5s"
    )  # 4 s rounded up to a round axis


def test_the_day_chart_shows_rates_per_minute() -> None:
    context = chart_context("24h", _points([150] + [0] * 95, [30.0] + [None] * 95, step=15))
    assert len(context["bars"]) == 96 and context["grid"][-1]["rate"] == "10"  # 150 in 15 minutes
    assert "150 done, 0 failed in 15 minutes" in context["bars"][0]["title"]
