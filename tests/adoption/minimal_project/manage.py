#!/usr/bin/env python
"""A Django project of a few files that adopts the outbox from its wheel (docs/adopting.md)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
