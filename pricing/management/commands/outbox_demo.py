"""``manage.py outbox_demo``: the main job end to end, in a minute, on any machine.

It migrates, writes a realistic crawl, drains it with real ``drain_outbox``
processes while a progress bar runs, stops them with SIGTERM and prints what
happened. The work lives in ``pricing.demo``; this command parses and prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from outbox.models import OutboxEvent
from pricing import demo
from pricing.demo_output import ProgressDisplay, make_console, render_summary


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}, got {value:,}")
        return value

    return parse


class Command(BaseCommand):
    help = (
        "Run the main job end to end: migrate, write a realistic crawl of CrawlResults (the outbox trigger "
        "writes one event each), drain it with real drain_outbox processes under a live progress bar, stop "
        "them with SIGTERM and summarise outcomes, throughput and latency. Uses the embedded PostgreSQL when "
        "DATABASE_URL is unset. It owns the products whose sku starts with DEMO- and deletes them (with their "
        "results, history and events, nothing else) before each run unless --keep."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--results",
            type=_int_in(demo.MIN_RESULTS, demo.MAX_RESULTS),
            default=demo.DEFAULT_RESULTS,
            help="Crawl results to write (default: %(default)r).",
        )
        parser.add_argument(
            "--products",
            type=_int_in(1, demo.MAX_PRODUCTS),
            default=demo.DEFAULT_PRODUCTS,
            help="Products the results are spread over; at most --results (default: %(default)r).",
        )
        parser.add_argument(
            "--drainers",
            type=_int_in(1, demo.MAX_DRAINERS),
            default=demo.DEFAULT_DRAINERS,
            help="drain_outbox processes to start (default: %(default)r).",
        )
        parser.add_argument(
            "--seed",
            type=_int_in(0, 2**63 - 1),
            default=demo.DEFAULT_SEED,
            help="Seed of the crawl's random generator: one seed, one crawl (default: %(default)r).",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="Do not delete the previous demo's data first; add this crawl to it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["products"] > options["results"]:
            raise CommandError(
                f"--products ({options['products']:,}) must not exceed --results ({options['results']:,})"
            )
        run = demo.DemoOptions(
            results=options["results"],
            products=options["products"],
            drainers=options["drainers"],
            seed=options["seed"],
            keep=options["keep"],
        )
        console = make_console(getattr(self.stdout, "_out", self.stdout))
        console.print(f"outbox_demo: on {demo.database_description()}; migrating")
        try:
            call_command("migrate", interactive=False, verbosity=0)
        except DatabaseError as exc:
            raise CommandError(f"cannot migrate the database: {exc}") from exc
        display = ProgressDisplay(console, run.results)
        try:
            with display:
                report = demo.run_demo(run, on_progress=display.update, on_stage=display.stage)
        except demo.DemoError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError("interrupted: the drainers were stopped; run the demo again to start over") from None
        render_summary(
            report,
            console,
            commands=set(get_commands()),
            admin_registered=admin.site.is_registered(OutboxEvent),
            base_dir=Path(settings.BASE_DIR),
        )
        if getattr(settings, "EMBEDDED_PGDATA", ""):
            demo.reclaim_wal()
            console.print(
                f"The embedded PostgreSQL in {settings.EMBEDDED_PGDATA} keeps running for the next command "
                "(a checkpoint dropped the WAL this run wrote); stop it with: python manage.py embedded_postgres stop"
            )
