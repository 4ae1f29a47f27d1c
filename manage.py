#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    from project.environment import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as exc:  # a wrong environment variable: one line, no traceback
        sys.exit(f"manage.py: {exc}")


if __name__ == "__main__":
    main()
