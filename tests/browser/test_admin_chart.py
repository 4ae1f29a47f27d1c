"""The admin's throughput and lag chart in a real headless Chromium, after a real drain.

Screenshots of the chart in the light and the dark theme are kept as CI artifacts
under ``artifacts/browser/`` at the project root (``OUTBOX_ARTIFACTS`` moves it),
a folder git ignores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, expect
from pytest_django.live_server_helper import LiveServer

from outbox.drainer import DrainerConfig, drain
from outbox.models import OutboxEvent
from tests.browser.test_admin_browser import PASSWORD, log_in
from tests.factories import make_product, make_results_sql
from tests.support import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("OUTBOX_ARTIFACTS", ROOT / "artifacts")) / "browser"
RESULTS = 120


def test_chart_shows_the_drained_events_in_both_themes(browser: Browser, live_server: LiveServer) -> None:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    products = [make_product().id for _ in range(4)]
    make_results_sql(products, RESULTS)
    result = drain(DrainerConfig.from_settings(batch_size=50))
    assert result.done == RESULTS, f"the drain left events behind: {result}"
    assert OutboxEvent.objects.filter(status="done").count() == RESULTS

    page = log_in(browser, live_server, "root")
    chart = page.locator("#outbox-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("svg")).to_be_visible()
    expect(page.locator("#outbox-chart-title")).to_have_text("Throughput and lag, last hour")
    points = chart.locator("g.outbox-chart-point")
    expect(points).to_have_count(60)
    drawn = chart.locator("g.outbox-chart-point:has(rect.outbox-chart-done)")
    assert drawn.count() >= 1, "no bar drawn for the events just drained"
    done = sum(int(drawn.nth(i).get_attribute("data-done") or 0) for i in range(drawn.count()))
    assert done == RESULTS, f"the bars add up to {done} done events, {RESULTS} were drained"
    bar = drawn.first.locator("rect.outbox-chart-done")
    assert float(bar.get_attribute("height") or 0) > 0
    expect(chart.locator("circle.outbox-chart-wait-point").first).to_be_attached()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    chart.screenshot(path=str(ARTIFACTS / "outbox-chart-light.png"))
    page.screenshot(path=str(ARTIFACTS / "outbox-changelist-light.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    page.reload()
    expect(chart).to_be_visible()
    background = page.evaluate("getComputedStyle(document.querySelector('#outbox-chart')).backgroundColor")
    assert background != "rgb(255, 255, 255)", "the chart stayed white in the dark theme"
    chart.screenshot(path=str(ARTIFACTS / "outbox-chart-dark.png"))

    page.click("#outbox-chart-other")
    expect(page.locator("#outbox-chart-title")).to_have_text("Throughput and lag, last 24 hours")
    expect(chart.locator("g.outbox-chart-point")).to_have_count(96)
    expect(page.locator("#result_list tbody tr")).to_have_count(RESULTS if RESULTS <= 100 else 100)
    chart.screenshot(path=str(ARTIFACTS / "outbox-chart-24h-dark.png"))
