"""``manage.py drain_outbox``: parse the flags, build a Drainer, run it."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from outbox.databases import draining
from outbox.drainer import ONCE_GIVE_UP_AFTER, DatabaseUnavailable, Drainer, DrainerConfig
from outbox.exceptions import HandlerStartFailed, OutboxConfigError
from outbox.management.commands._args import interval, listen_address, positive_float, setting, settings_or_defaults
from outbox.management.commands._database import add_database_argument
from outbox.management.commands._preflight import preflight

_VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


class Command(BaseCommand):
    help = (
        "Drain the transactional outbox: claim pending events with FOR UPDATE SKIP LOCKED, "
        "run their topic's handler and ack them. Runs until SIGTERM/SIGINT (the first "
        "finishes the current batch, a second exits at once); --once drains what is "
        "available now and exits. Start as many as you like, on any hosts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        s = settings_or_defaults()
        parser.add_argument("--once", action="store_true", help="Drain every event available now, then exit 0.")
        parser.add_argument(
            "--batch-size",
            type=setting("BATCH_SIZE"),
            default=s.batch_size,
            help="Events claimed per batch (default: %(default)r).",
        )
        parser.add_argument(
            "--max-attempts",
            type=setting("MAX_ATTEMPTS"),
            default=s.max_attempts,
            help="Handler runs before an event is failed (docs/guarantees.md#attempts) (default: %(default)r).",
        )
        parser.add_argument(
            "--interval",
            type=setting("POLL_INTERVAL"),
            default=s.poll_interval,
            help="Seconds between polls when no NOTIFY arrives (default: %(default)r).",
        )
        parser.add_argument(
            "--lease",
            type=setting("LEASE"),
            default=s.lease,
            help="Seconds a claim is held before another drainer may take it back (default: %(default)r).",
        )
        parser.add_argument(
            "--topic",
            action="append",
            dest="topics",
            metavar="TOPIC",
            help="Only drain this topic; repeat for several (default: all topics).",
        )
        parser.add_argument(
            "--retry-failed-every",
            type=interval,
            default=None,
            metavar="SECONDS",
            help="Put failed events back to pending every SECONDS (1 or more), attempts reset (default: never).",
        )
        parser.add_argument(
            "--no-notify",
            action="store_true",
            help="Do not LISTEN for NOTIFY; poll every --interval only.",
        )
        parser.add_argument(
            "--give-up-after",
            type=positive_float,
            default=None,
            metavar="SECONDS",
            help=(
                "Stop retrying an unreachable database after SECONDS and exit 1 "
                f"(default: {ONCE_GIVE_UP_AFTER:g} with --once; without --once, never: keep retrying)."
            ),
        )
        add_database_argument(parser, "outbox to drain; each database has its own")

        parser.add_argument(
            "--metrics-port",
            type=listen_address,
            default=None,
            metavar="[ADDR:]PORT",
            help=(
                "Serve this drainer's Prometheus metrics on http://ADDR:PORT/metrics "
                "(ADDR defaults to every interface; docs/metrics.md) (default: off)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        level = _VERBOSITY_LEVELS.get(options["verbosity"], logging.INFO)
        logging.getLogger("outbox").setLevel(level)
        logging.getLogger("pricing").setLevel(level)
        try:
            config = DrainerConfig.from_settings(
                topics=options["topics"],
                retry_failed_every=options["retry_failed_every"],
                give_up_after=options["give_up_after"],
                batch_size=options["batch_size"],
                max_attempts=options["max_attempts"],
                poll_interval=options["interval"],
                lease=options["lease"],
                notify=False if options["no_notify"] else None,
            )
        except OutboxConfigError as exc:
            raise CommandError(str(exc)) from exc
        if options["topics"]:
            for topic in options["topics"]:
                if not topic.strip():
                    raise CommandError("--topic must not be empty")
        alias = options["database"]
        if options["once"]:
            # Run mode waits for a database that is down or not migrated yet; --once says so.
            preflight(None, using=alias, unreachable_ok=True)
            connections.close_all()  # the drainer names and sets up its session when it connects
        try:
            drainer = Drainer(config, using=alias)
        except OutboxConfigError as exc:
            raise CommandError(str(exc)) from exc
        if options["metrics_port"] is not None:
            self._serve_metrics(*options["metrics_port"], drainer)
        try:
            with drainer.signals_handled(), draining(alias):
                result = drainer.drain() if options["once"] else drainer.run()
        except (DatabaseUnavailable, HandlerStartFailed) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            drainer.close()
            if options["metrics_port"] is not None:
                from outbox.metrics.drainer import stop_serving

                stop_serving()
        if options["once"]:
            self.stdout.write(
                f"drained claimed={result.claimed} done={result.done} retried={result.retried} "
                f"failed={result.failed} lost={result.lost} released={result.released}"
            )

    @staticmethod
    def _serve_metrics(addr: str, port: int, drainer: Drainer) -> None:
        try:
            from outbox.metrics.drainer import serve
        except ImportError as exc:
            drainer.close()
            raise CommandError(
                f"--metrics-port needs prometheus_client ({exc}): pip install 'django-pg-outbox[metrics]'"
            ) from exc
        try:
            host, bound = serve(port, addr)
        except OSError as exc:
            drainer.close()
            raise CommandError(f"--metrics-port: cannot listen on {addr}:{port}: {exc.strerror or exc}") from exc
        logging.getLogger("outbox.drainer").info(
            "drainer=%s metrics on http://%s:%d/metrics", drainer.identity, host, bound
        )
