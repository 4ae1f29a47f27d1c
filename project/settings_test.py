"""Settings for the test suite: the base settings on a test database server.

The server: ``DATABASE_URL`` when set, else a testcontainers PostgreSQL when a
Docker engine answers, else the embedded PostgreSQL (see project/database.py).
pytest-django creates ``test_<name>`` on it and drops it afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from project.database import test_database_url

_BASE_DIR = Path(__file__).resolve().parent.parent
_url, _note = test_database_url(Path(os.environ.get("EMBEDDED_PGDATA", _BASE_DIR / ".pgdata")))
os.environ["DATABASE_URL"] = _url

from project.settings import *  # noqa: E402,F403

DATABASE_NOTE = _note
# A second outbox topic, to test that adding one needs no change to outbox (tests/stockapp).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.stockapp"]  # noqa: F405
# Django's Tasks framework on the outbox (outbox.tasks), with the test tasks of tests/taskapp.
from tests.taskapp.config import TASK_APPS, TASKS  # noqa: E402,F401

INSTALLED_APPS = [*INSTALLED_APPS, *TASK_APPS]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# A second database on the same server, for the several-databases tests
# (tests/integration/test_databases.py); pytest-django creates its test database only
# when a test asks for it. Handlers' ORM writes follow the alias being drained.
DATABASES["other"] = {**DATABASES["default"], "NAME": f"{DATABASES['default']['NAME']}_other"}  # noqa: F405
DATABASE_ROUTERS = ["outbox.databases.DrainedDatabaseRouter"]
