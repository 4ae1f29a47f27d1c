"""Settings read from the environment, checked where they are read.

A wrong value raises ``SettingsError``, whose message names the variable, its value
and what is allowed; ``manage.py`` prints it as one line and exits 1 (Django would
show a traceback from the settings import, or take the command for an unknown one).
"""

from __future__ import annotations

import re

#: The levels LOG_LEVEL may name (any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PASSWORD_RE = re.compile(r"^([^:/]*://[^:@/]*:)[^@]*@")


class SettingsError(Exception):
    """A setting taken from the environment is wrong."""


def redacted(url: str) -> str:
    """A URL fit for an error message: its password replaced by ***."""
    return _PASSWORD_RE.sub(r"\1***@", url)


def log_level(value: str) -> str:
    """LOG_LEVEL, upper-cased; SettingsError unless it is one of LOG_LEVELS."""
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


#: DJANGO_DEBUG's spellings; anything else is refused, not read as off.
_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def switch(name: str, value: str) -> bool:
    """An on/off variable (1/0, true/false, yes/no, on/off); SettingsError otherwise."""
    try:
        return _SWITCH[value.strip().lower()]
    except KeyError:
        raise SettingsError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), got {value!r}") from None


def host_list(name: str, value: str) -> list[str]:
    """Comma-separated host names (blanks around them dropped); SettingsError for none."""
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    if not hosts:
        raise SettingsError(f"{name} names no host: use e.g. shop.example.com,localhost (or * for any), got {value!r}")
    return hosts
