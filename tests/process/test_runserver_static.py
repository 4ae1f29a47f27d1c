"""``manage.py runserver`` with DEBUG off serves the admin's static files (WhiteNoise).

Django's runserver serves static files only with DEBUG on (or ``--insecure``);
``whitenoise.runserver_nostatic`` and the middleware make it serve them like any
production WSGI server does (tests/browser/test_static_files.py drives gunicorn).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.servers import answers, free_port
from tests.support import ROOT, drainer_env, wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def test_runserver_serves_static_files_with_debug_off(tmp_path: Path) -> None:
    """``manage.py runserver`` with DEBUG off: WhiteNoise serves what runserver would not."""
    env = drainer_env(DJANGO_STATIC_ROOT=str(tmp_path), DJANGO_DEBUG="0")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        css = f"http://127.0.0.1:{port}/static/admin/css/base.css"
        wait_until(lambda: answers(css) or process.poll() is not None, timeout=60, message="runserver answers")
        with urllib.request.urlopen(css, timeout=5) as response:  # noqa: S310 (a local test server)
            assert response.headers["content-type"].startswith("text/css")
            assert b"--body-fg" in response.read()
    finally:
        process.terminate()
        process.wait(30)
