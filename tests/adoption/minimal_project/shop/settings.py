"""The least a project needs to run the outbox: PostgreSQL, pgtrigger, outbox, one app."""

import os

SECRET_KEY = "minimal-project-not-secret"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.postgres",  # the outbox's hash index
    "pgtrigger",  # the trigger as a migrated schema object
    "outbox",
    "shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["SHOP_DB_NAME"],
        "HOST": os.environ["SHOP_DB_HOST"],
        "PORT": os.environ["SHOP_DB_PORT"],
        "USER": os.environ["SHOP_DB_USER"],
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
