"""The outbox admin in a real headless Chromium against a live test server.

The browser comes from tests/browser/conftest.py (Debian's ``chromium``, driven by
Playwright; skipped without one, except under CI, where that is a failure).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from outbox.models import OutboxEvent
from tests.factories import make_event, make_result

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"  # noqa: S105 (a test user's)


def log_in(browser: Browser, live_server: LiveServer, username: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/outbox/outboxevent/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#outbox-summary")).to_be_visible()
    return page


def summary_count(page: Page, status: str) -> str:
    return page.locator(f"#outbox-summary-{status} .outbox-count").inner_text()


def make_outbox() -> None:
    for i in range(3):
        make_event(
            "pricing.crawl_result.created" if i < 2 else "stock.level.counted",
            f"failed-{i}",
            status="failed",
            attempts=3,
            last_error=f"builtins.LookupError: CrawlResult failed-{i} does not exist",
            processed_at=timezone.now(),
        )
    for i in range(2):
        make_event("pricing.crawl_result.created", f"pending-{i}")
    make_event("pricing.crawl_result.created", "done-0", status="done", processed_at=timezone.now())


def test_superuser_filters_failed_events_and_retries_them(
    browser: Browser, live_server: LiveServer, tmp_path: Path
) -> None:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    make_outbox()
    page = log_in(browser, live_server, "root")
    assert (summary_count(page, "pending"), summary_count(page, "failed"), summary_count(page, "done")) == (
        "2",
        "3",
        "1",
    )

    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("does not exist")
    page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)

    page.check("#action-toggle")
    page.select_option("select[name=action]", "retry_events")
    page.get_by_role("button", name="Go").first.click()

    expect(page.locator("ul.messagelist li.success")).to_have_text("Retried 3 event(s).")
    expect(page.locator("#outbox-summary-failed .outbox-count")).to_have_text("0")
    expect(page.locator("#outbox-summary-pending .outbox-count")).to_have_text("5")
    expect(rows).to_have_count(0)
    page.screenshot(path=str(tmp_path / "retried.png"), full_page=True)
    assert not OutboxEvent.objects.filter(status="failed").exists()
    assert set(OutboxEvent.objects.filter(key__startswith="failed-").values_list("attempts", flat=True)) == {0}


def test_read_only_staff_sees_the_outbox_but_no_action(browser: Browser, live_server: LiveServer) -> None:
    viewer = User.objects.create_user("viewer", "viewer@example.com", PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="outbox", codename="view_outboxevent"))
    make_outbox()
    page = log_in(browser, live_server, "viewer")
    assert summary_count(page, "failed") == "3"
    expect(page.locator("#result_list tbody tr")).to_have_count(6)
    expect(page.locator("select[name=action]")).to_have_count(0)
    expect(page.locator("#action-toggle")).to_have_count(0)

    page.locator("#result_list tbody tr").filter(has_text="failed-0").get_by_role("link").first.click()
    expect(page.locator("pre.outbox-error")).to_contain_text("CrawlResult failed-0 does not exist")
    expect(page.locator("#outbox-object-actions")).to_have_count(0)
    expect(page.locator("input[name=_save]")).to_have_count(0)


def test_the_event_list_fits_1280_pixels_with_the_error_and_links_to_its_row(
    browser: Browser, live_server: LiveServer
) -> None:
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    result = make_result()  # its trigger wrote a pending event; fail it with a long error
    error = "builtins.LookupError: " + "the price page moved, " * 20 + "giving up"
    OutboxEvent.objects.filter(key=str(result.pk)).update(
        status="failed", attempts=3, last_error=error, processed_at=timezone.now()
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/outbox/outboxevent/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#outbox-summary")).to_be_visible()

    results = page.locator("#changelist .results")
    scroll, client = results.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert scroll <= client, f"the list scrolls sideways at 1280 px ({scroll} > {client})"
    cell = page.locator("#result_list tbody tr").first.locator("td.field-short_error")
    box = cell.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280 and box["width"] >= 150, box
    expect(cell).to_contain_text("LookupError: the price page moved")
    assert cell.locator("span").get_attribute("title") == error, "the full error on hover"

    page.locator("#result_list tbody tr").first.get_by_role("link").first.click()
    expect(page.locator("pre.outbox-error")).to_have_text(error)
    page.locator("#outbox-row-link").click()
    expect(page).to_have_url(f"{live_server.url}/admin/pricing/crawlresult/{result.pk}/change/")
