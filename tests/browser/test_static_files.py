"""The admin is styled when served the way production serves it.

pytest-django's ``live_server`` serves static files itself, so it cannot show
whether the project does. Here the project's own WSGI application runs under
gunicorn, a production WSGI server, with ``DEBUG`` off, in a process of its own:
once straight from a checkout (no ``collectstatic``: WhiteNoise serves the apps'
files under their plain names) and once after ``collectstatic`` (hashed,
compressed copies with far-future cache headers). The browser logs in, opens
/admin/ and reads the computed style of the page.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from playwright.sync_api import Browser, expect

from tests.servers import answers, free_port
from tests.support import ROOT, drainer_env, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"  # noqa: S105 (a test user's)


def manage(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture(params=["checkout", "collectstatic"])
def production_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """gunicorn serving project.wsgi with DEBUG off, before or after collectstatic."""
    static_root = tmp_path / "static"
    static_root.mkdir()
    env = drainer_env(DJANGO_STATIC_ROOT=str(static_root), DJANGO_DEBUG="0")
    if request.param == "collectstatic":
        manage(env, "collectstatic", "--noinput", "--verbosity", "0")
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "project.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: answers(f"{url}/admin/login/") or process.poll() is not None,
            timeout=60,
            message="gunicorn answers",
        )
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield {"url": url, "collected": request.param == "collectstatic"}
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_admin_is_styled_under_a_production_wsgi_server(browser: Browser, production_server: dict[str, Any]) -> None:
    # Hashed the way the production settings check it (the test settings hash with MD5).
    password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    User.objects.create(username="root", password=password, is_staff=True, is_superuser=True)
    url = production_server["url"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    stylesheets: dict[str, Any] = {}
    page.on("response", lambda r: stylesheets.__setitem__(r.url, r) if "/static/admin/css/" in r.url else None)
    page.goto(f"{url}/admin/login/?next=/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{url}/admin/")
    expect(page.locator("#user-tools")).to_contain_text("root")

    base = [u for u in stylesheets if "/static/admin/css/base" in u]
    assert base, f"the admin page linked no base stylesheet: {sorted(stylesheets)}"
    response = stylesheets[base[-1]]
    assert response.status == 200 and response.headers["content-type"].startswith("text/css"), (
        response.status,
        response.headers,
    )
    if production_server["collected"]:
        # The hashed copy, cacheable for good (WhiteNoise marks hashed names immutable).
        assert base[-1].rsplit("/", 1)[1] != "base.css", base
        assert "immutable" in response.headers["cache-control"], response.headers
    else:
        assert base[-1].endswith("/static/admin/css/base.css"), base

    # The stylesheet applied: the header has the admin's background, the body its font.
    header_bg = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    assert header_bg not in {"rgba(0, 0, 0, 0)", "transparent"}, f"the header is unstyled: {header_bg}"
    rules = page.evaluate(
        "[...document.styleSheets].filter(s => s.href && s.href.includes('/static/admin/css/base'))"
        ".map(s => s.cssRules.length)"
    )
    assert rules and all(n > 50 for n in rules), f"base stylesheet rules: {rules}"
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "Times" not in font, f"the body has the browser's default font: {font}"
