"""``manage.py outbox_doctor``: the health that counts alone do not show.

Each check is one row, ``ok`` / ``warn`` / ``fail``, with a short explanation and
what to do (``outbox.services.doctor``). Exits 1 when a check fails (with
``--strict``, also on a warning), so it can run from cron or a monitoring probe.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.table import Table
from rich.text import Text

from outbox import services
from outbox.management.commands._args import duration, format_duration, fraction
from outbox.management.commands._database import add_database_argument
from outbox.management.commands._preflight import preflight
from outbox.management.commands.outbox_status import console_for

_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}


class Command(BaseCommand):
    help = (
        "Check the outbox's health: the claim's plan uses the partial index, no idle-in-transaction "
        "session, old snapshot, prepared transaction or replication slot pins dead rows, dead rows and "
        "autovacuum of outbox_event, leases held by drainers that are gone, drainers connected, the "
        "retention purge keeping up, and every outbox trigger installed and enabled. Exits 1 when a "
        "check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        limits = services.DoctorLimits()
        parser.add_argument(
            "--max-transaction-age",
            type=duration,
            default=format_duration(limits.max_transaction_age),
            metavar="AGE",
            help="A transaction open longer than this (90s, 5m, 1h) pins dead rows: fail (default: %(default)r).",
        )
        parser.add_argument(
            "--max-dead-ratio",
            type=fraction,
            default=limits.max_dead_ratio,
            metavar="RATIO",
            help="Warn when dead row versions are more than this fraction of outbox_event (default: %(default)r).",
        )
        parser.add_argument("--json", action="store_true", help="Print the checks as a JSON list.")
        parser.add_argument("--strict", action="store_true", help="Exit 1 on a warning too.")
        add_database_argument(parser, "outbox to check")

    def handle(self, *args: Any, **options: Any) -> None:
        # The settings and the connection; the schema is the doctor's first check.
        preflight((), using=options["database"])
        limits = services.DoctorLimits(
            max_transaction_age=options["max_transaction_age"],
            max_dead_ratio=options["max_dead_ratio"],
        )
        report = services.doctor(limits, using=options["database"])
        if options["json"]:
            self.stdout.write(json.dumps([asdict(check) for check in report.checks], indent=2))
        else:
            console = console_for(self.stdout)
            table = Table(header_style="bold", show_lines=True)
            table.add_column("check", no_wrap=True)
            table.add_column("state", no_wrap=True)
            table.add_column("explanation")
            for check in report.checks:
                explanation = Text(check.summary)
                for detail in check.details:
                    explanation.append(f"\n  {detail}", style="dim")
                table.add_row(check.name, Text(check.state, style=_STYLES[check.state]), explanation)
            console.print(table)
        if not report.ok(strict=options["strict"]):
            bad = report.failed + (report.warnings if options["strict"] else [])
            raise CommandError(
                f"{len(bad)} check(s) not ok: {', '.join(check.name for check in bad)}",
                returncode=1,
            )
