"""Settings for the crawl-results outbox project.

Database: ``DATABASE_URL`` when set, else an embedded PostgreSQL in ``.pgdata/``
(see ``project/database.py``). The outbox is tuned through the ``OUTBOX`` dict,
read only by ``outbox/conf.py`` and validated by its system checks.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from project.database import database_settings, embedded_database_url
from project.environment import host_list, log_level, switch

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret-change-me-in-production")  # noqa: S105
DEBUG = switch("DJANGO_DEBUG", os.environ.get("DJANGO_DEBUG", "0"))
ALLOWED_HOSTS = host_list("DJANGO_ALLOWED_HOSTS", os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",  # runserver serves static files through WhiteNoise too
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # outbox's HashIndex needs it (postgres.E005 on Django 6.1)
    "pgtrigger",
    "project",
    "outbox",
    "pricing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, DEBUG on or off (project/staticfiles.py)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
#: The embedded server's data directory when it is the database in use, else "".
EMBEDDED_PGDATA = ""
#: Said once per process at start-up (project/apps.py) when not empty.
DATABASE_NOTE = ""
if not DATABASE_URL:
    _pgdata = Path(os.environ.get("EMBEDDED_PGDATA", BASE_DIR / ".pgdata"))
    EMBEDDED_PGDATA = str(_pgdata)
    # Said by the command that starts the server; the next ones reuse it without a word.
    _starting = not (_pgdata / "postmaster.pid").exists()
    DATABASE_URL = embedded_database_url(_pgdata, os.environ.get("EMBEDDED_DB_NAME", "outbox"))
    if _starting:
        DATABASE_NOTE = (
            f"DATABASE_URL is unset: started the embedded PostgreSQL in {_pgdata}; it keeps running "
            "for the next commands (python manage.py embedded_postgres stop)"
        )

DATABASES = {"default": database_settings(DATABASE_URL)}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes (DJANGO_STATIC_ROOT, default staticfiles/ in the checkout).
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "project.staticfiles.StaticFilesStorage"},
}
# Before collectstatic, WhiteNoise serves the apps' files in place (plain names);
# after it, the hashed, compressed copies in STATIC_ROOT.
WHITENOISE_USE_FINDERS = True
# ...so an empty STATIC_ROOT is expected, not worth WhiteNoise's warning on every start.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

# The outbox. Every key is optional; defaults live in outbox/conf.py, and the
# drain_outbox flags override them per process.
OUTBOX: dict[str, object] = {}

# Behind a transaction-mode pooler (PgBouncer): DATABASE_URL names the pooler and
# DATABASE_LISTEN_URL the server itself, used only for the drainers' LISTEN, which a
# pooled connection cannot hold; prepared statements and server-side cursors do not
# outlive a pooled transaction either (docs/scaling.md, "Connection poolers").
DATABASE_LISTEN_URL = os.environ.get("DATABASE_LISTEN_URL", "").strip()
if DATABASE_LISTEN_URL:
    OUTBOX["LISTEN_URL"] = DATABASE_LISTEN_URL
    OUTBOX["PREPARED_STATEMENTS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

LOG_LEVEL = log_level(os.environ.get("LOG_LEVEL", "INFO"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "outbox": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "pricing": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "project": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
    },
}
