"""The demo of the main job: a realistic crawl, real drainers, and what they did.

``manage.py outbox_demo`` is the project's "first ten minutes": it writes a crawl
the way a crawler would (set-based inserts, the outbox trigger writing one event
per row in the same transaction), starts real ``manage.py drain_outbox``
processes, shows them drain it, stops them with SIGTERM and reads back from the
database what happened. Nothing here is simulated except the crawler itself.

The crawl comes from a seeded RNG, so a seed always writes the same results:
mostly ``html_ml`` above the confidence threshold, some other sources, some low
confidence, prices that often repeat unchanged, a few invalid prices, and a
handful of results deleted right after they were written (their events stay, as
an outbox guarantees, and fail with "does not exist" after their retries). Which
results end ``recorded``, ``duplicate`` (unchanged price) or ``skipped``/``stale``
also depends on how the drainers interleave, so those counts can vary a little
between runs of one seed; the criteria outcomes (source, confidence, price) never do.

The demo owns the products whose sku starts with ``DEMO-`` and everything hanging
off them; it deletes those (and nothing else) before a run unless ``--keep``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import dj_database_url
from django.conf import settings
from django.db import connection, transaction

from outbox import fleet
from outbox.sql import Queries
from pricing.auto_record import AutoRecordConfig, get_config, should_auto_record
from pricing.models import CRAWL_RESULT_CREATED

queries = Queries(Path(__file__).with_name("sql") / "demo.sql")

#: The demo's products are the ones whose sku starts with this; it touches nothing else.
SKU_PREFIX = "DEMO-"

DEFAULT_RESULTS = 50_000
DEFAULT_PRODUCTS = 300
DEFAULT_DRAINERS = 2
DEFAULT_SEED = 42
MIN_RESULTS = 100
MAX_RESULTS = 2_000_000
MAX_PRODUCTS = 100_000
MAX_DRAINERS = 32

#: Rows per INSERT statement (and per crawl transaction).
CHUNK_SIZE = 2_000
#: Flags of the drainers the demo starts: a short poll so that retries whose
#: backoff has passed are picked up at once (NOTIFY only announces new events);
#: a 10 s lease instead of 60 s, still far above a batch's time, so that events
#: whose lease is lost come back within the demo; and three attempts, so the
#: deleted results reach ``failed`` in a few seconds (backoff 1 s, then 2 s, with
#: OUTBOX's default BACKOFF_BASE). The summary quotes the attempts from here.
DRAINER_ARGS = ("--interval", "0.2", "--lease", "10", "--max-attempts", "3")
#: How long the drainers get to connect, to stop after SIGTERM, and to show progress.
CONNECT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
STALL_TIMEOUT = 120.0
#: Seconds between two progress reads (each counts this run's events).
PROGRESS_EVERY = 0.2
#: Seconds between two plain progress lines when stdout is not a terminal.
PLAIN_PROGRESS_EVERY = 2.0

# The crawl's mix. Shares of all results unless said otherwise.
TRUSTED_SOURCE = "html_ml"
OTHER_SOURCES = ("json_ld", "microdata", "ocr_screenshot")
SHARE_TRUSTED_SOURCE = 0.85
SHARE_LOW_CONFIDENCE = 0.10  # of html_ml results
SHARE_PRICE_CHANGE = 0.30  # of all results: the price moved since the last crawl
SHARE_INVALID_PRICE = 0.01
CURRENCIES = (("EUR", 0.6), ("USD", 0.3), ("GBP", 0.1))

_BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Stark", "Wonka", "Tyrell")
_ITEMS = (
    "espresso machine",
    "running shoes",
    "desk lamp",
    "noise-cancelling headphones",
    "hiking backpack",
    "blender",
    '27" monitor',
    "office chair",
    "electric kettle",
    "cordless drill",
    "air fryer",
    "mechanical keyboard",
)


class DemoError(Exception):
    """The demo could not run to its summary (the message says why and what to do)."""


@dataclass(frozen=True)
class DemoOptions:
    results: int = DEFAULT_RESULTS
    products: int = DEFAULT_PRODUCTS
    drainers: int = DEFAULT_DRAINERS
    seed: int = DEFAULT_SEED
    keep: bool = False


def doomed_count(results: int) -> int:
    """How many results the demo deletes after writing them: a handful."""
    return max(2, min(10, results // 500))


# ---------------------------------------------------------------------- the crawl


class ProductSpec(NamedTuple):
    sku: str
    name: str
    url: str


def product_specs(count: int, rng: random.Random) -> list[ProductSpec]:
    specs = []
    for n in range(1, count + 1):
        brand = rng.choice(_BRANDS)
        item = rng.choice(_ITEMS)
        model = rng.randint(100, 999)
        sku = f"{SKU_PREFIX}{n:06d}"
        specs.append(ProductSpec(sku, f"{brand} {item} {model}", f"https://shop.example/p/{sku.lower()}"))
    return specs


@dataclass
class CrawlPlan:
    """What the demo wrote and, from the criteria alone, what it expects."""

    written: int = 0
    deleted: int = 0
    #: Criteria outcome of every written result that was not deleted: eligible or a skip reason.
    criteria: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    #: Eligible results whose price equals the product's previous eligible price.
    repeats: int = 0


class _Chunk(NamedTuple):
    ids: list[uuid.UUID]
    product_ids: list[int]
    sources: list[str]
    prices: list[Decimal | None]
    currencies: list[str]
    confidences: list[float]
    crawled_ats: list[dt.datetime]
    deleted: list[uuid.UUID]


class _Row(NamedTuple):
    source: str
    price: Decimal | None
    confidence: float


class CrawlGenerator:
    """The crawl, chunk by chunk, from one seeded RNG (memory stays flat)."""

    def __init__(
        self,
        *,
        results: int,
        product_ids: Sequence[int],
        seed: int,
        config: AutoRecordConfig,
        end: dt.datetime,
    ) -> None:
        self.results = results
        self.product_ids = list(product_ids)
        self.config = config
        # Demo data, not secrets: a seeded PRNG is the point (a seed replays a crawl).
        self.rng = random.Random(seed)  # noqa: S311
        rng = self.rng
        self.currency = {
            pid: rng.choices([c for c, _ in CURRENCIES], weights=[w for _, w in CURRENCIES])[0]
            for pid in self.product_ids
        }
        self.price = {pid: Decimal(str(round(rng.uniform(5, 900), 2))) for pid in self.product_ids}
        self.last_eligible: dict[int, Decimal] = {}
        self.doomed = set(rng.sample(range(results), doomed_count(results)))
        # One hour of crawling that ends now, in order: crawled_at grows with the id.
        self.start = end - dt.timedelta(hours=1)
        self.step = dt.timedelta(hours=1) / results
        self.plan = CrawlPlan()

    def _next_price(self, pid: int) -> Decimal:
        rng = self.rng
        price = self.price[pid]
        if rng.random() < SHARE_PRICE_CHANGE:
            moved = (price * Decimal(str(rng.uniform(0.9, 1.1)))).quantize(Decimal("0.01"))
            if moved == price or moved <= 0:
                moved = price + Decimal("0.50")
            self.price[pid] = price = moved
        return price

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[_Chunk]:
        rng = self.rng
        for start in range(0, self.results, size):
            chunk = _Chunk([], [], [], [], [], [], [], [])
            for i in range(start, min(start + size, self.results)):
                pid = rng.choice(self.product_ids)
                price: Decimal | None = self._next_price(pid)
                doomed = i in self.doomed
                if doomed:
                    source, confidence = TRUSTED_SOURCE, round(rng.uniform(0.9, 0.99), 3)
                elif rng.random() < SHARE_TRUSTED_SOURCE:
                    source = TRUSTED_SOURCE
                    if rng.random() < SHARE_LOW_CONFIDENCE:
                        confidence = round(rng.uniform(0.30, 0.84), 3)
                    else:
                        confidence = round(rng.uniform(0.86, 0.99), 3)
                else:
                    source = rng.choice(OTHER_SOURCES)
                    confidence = round(rng.uniform(0.50, 0.99), 3)
                if not doomed and rng.random() < SHARE_INVALID_PRICE:
                    # What extractors get wrong: nothing found, a zero, a minus sign kept.
                    price = rng.choice([None, Decimal("0.00"), -(price or Decimal(1))])
                result_id = uuid.uuid4()
                chunk.ids.append(result_id)
                chunk.product_ids.append(pid)
                chunk.sources.append(source)
                chunk.prices.append(price)
                chunk.currencies.append(self.currency[pid])
                chunk.confidences.append(confidence)
                chunk.crawled_ats.append(self.start + self.step * (i + 1))
                self.plan.written += 1
                if doomed:
                    chunk.deleted.append(result_id)
                    self.plan.deleted += 1
                    continue
                self.plan.sources[source] += 1
                decision = should_auto_record(_Row(source, price, confidence), self.config)
                self.plan.criteria[decision.reason] += 1
                if decision.record and price is not None:
                    if self.last_eligible.get(pid) == price:
                        self.plan.repeats += 1
                    self.last_eligible[pid] = price
            yield chunk


def write_chunk(chunk: _Chunk) -> None:
    """One crawl transaction: insert the chunk, delete the doomed results, commit."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            queries.demo_crawl_insert,
            {
                "ids": chunk.ids,
                "product_ids": chunk.product_ids,
                "sources": chunk.sources,
                "prices": chunk.prices,
                "currencies": chunk.currencies,
                "confidences": chunk.confidences,
                "crawled_ats": chunk.crawled_ats,
            },
        )
        if chunk.deleted:
            cursor.execute(queries.demo_crawl_delete, {"ids": chunk.deleted})


# ---------------------------------------------------------------------- demo data


@dataclass(frozen=True)
class ResetCounts:
    products: int = 0
    results: int = 0
    history: int = 0
    events: int = 0


def demo_product_ids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(queries.demo_product_ids, {"prefix": SKU_PREFIX})
        return [row[0] for row in cursor.fetchall()]


def reset_demo_data() -> ResetCounts:
    """Delete the demo's products and their results, history and events; nothing else."""
    with transaction.atomic(), connection.cursor() as cursor:
        ids = demo_product_ids()
        if not ids:
            return ResetCounts()
        text_ids = [str(i) for i in ids]
        cursor.execute(queries.demo_reset_events, {"topic": CRAWL_RESULT_CREATED, "product_ids": text_ids})
        events = cursor.rowcount
        cursor.execute(queries.demo_reset_history, {"product_ids": ids})
        history = cursor.rowcount
        cursor.execute(queries.demo_reset_results, {"product_ids": ids})
        results = cursor.rowcount
        cursor.execute(queries.demo_reset_products, {"product_ids": ids})
        return ResetCounts(products=cursor.rowcount, results=results, history=history, events=events)


def ensure_products(specs: Sequence[ProductSpec]) -> list[int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            queries.demo_product_upsert,
            {"skus": [s.sku for s in specs], "names": [s.name for s in specs], "urls": [s.url for s in specs]},
        )
        by_sku = {sku: pid for pid, sku in cursor.fetchall()}
    return [by_sku[s.sku] for s in specs]


def event_watermark() -> int:
    with connection.cursor() as cursor:
        cursor.execute(queries.demo_event_watermark)
        row = cursor.fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------- drainers


def database_url_for_children() -> str:
    """The URL of the database this process is connected to, for the drainers.

    The configured ``DATABASE_URL`` when it names that database (it keeps any
    query options such as sslmode); otherwise one rebuilt from the connection
    settings (under pytest the connection points at the ``test_`` database).
    """
    s = connection.settings_dict
    configured = str(getattr(settings, "DATABASE_URL", "") or "")
    if configured:
        parsed = dj_database_url.parse(configured)
        if (parsed.get("NAME"), parsed.get("HOST") or "", str(parsed.get("PORT") or "")) == (
            s.get("NAME"),
            s.get("HOST") or "",
            str(s.get("PORT") or ""),
        ):
            return configured
    user = quote(str(s.get("USER") or ""), safe="")
    password = str(s.get("PASSWORD") or "")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = quote(str(s.get("HOST") or "localhost"), safe="")
    return f"postgres://{auth}{host}:{s.get('PORT') or 5432}/{quote(str(s['NAME']), safe='')}"


#: Log lines the demo causes on purpose: the deleted results' retries and failures.
EXPECTED_LOG_PATTERNS = ("does not exist (deleted after its event was written?)",)


@dataclass
class LogFindings:
    warnings: int = 0
    errors: int = 0
    #: WARNING/ERROR lines that the demo's design does not explain.
    unexpected: list[str] = field(default_factory=list)


class DemoFleet(fleet.DrainerFleet):
    """The demo's drainers (outbox.fleet), each logging to its own file in ``log_dir``."""

    def __init__(self, count: int, *, database_url: str, log_dir: Path) -> None:
        manage_py = Path(settings.BASE_DIR) / "manage.py"
        if not manage_py.is_file():
            raise DemoError(f"cannot start drainers: {manage_py} does not exist")
        env = fleet.drainer_env(database_url, os.environ.get("DJANGO_SETTINGS_MODULE", "project.settings"))
        super().__init__(count, DRAINER_ARGS, env=env, manage_py=manage_py, log_dir=log_dir)

    def tail(self, index: int, lines: int = 15) -> str:
        return self.live[index].tail(lines)

    def log_findings(self) -> LogFindings:
        """WARNING and ERROR lines of the drainers' logs, the unexpected ones apart."""
        findings = LogFindings()
        for process in self.history:
            for line in process.output().splitlines():
                if " WARNING " in line:
                    findings.warnings += 1
                elif " ERROR " in line:
                    findings.errors += 1
                else:
                    continue
                if not any(pattern in line for pattern in EXPECTED_LOG_PATTERNS):
                    findings.unexpected.append(f"{process.log.name}: {line}")
        return findings

    def start_all(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Until every drainer is connected and owns its share (or the first one that died)."""
        try:
            self.wait_started(timeout)
        except fleet.FleetError as exc:
            raise DemoError(f"{exc}; see the drainer logs in {self.log_dir}") from exc

    def check_running(self) -> None:
        try:
            self.check_alive()
        except fleet.FleetError as exc:
            raise DemoError(f"{exc}\n(the crawl was not drained; its log is in {self.log_dir})") from exc


# ---------------------------------------------------------------------- progress


@dataclass
class Progress:
    written: int = 0
    done: int = 0
    failed: int = 0
    retrying: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed


def read_progress(after: int, product_ids: Sequence[str]) -> Progress:
    with connection.cursor() as cursor:
        cursor.execute(
            queries.demo_run_progress, {"after": after, "topic": CRAWL_RESULT_CREATED, "product_ids": product_ids}
        )
        row = cursor.fetchone()
    done, failed, retrying, written = (int(v or 0) for v in row) if row else (0, 0, 0, 0)
    return Progress(written=written, done=done, failed=failed, retrying=retrying)


class RateMeter:
    """Events finished per second over the last few seconds."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, finished: int) -> float:
        now = time.monotonic()
        self.samples.append((now, finished))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, f0 = self.samples[0]
        return (finished - f0) / (now - t0) if now > t0 else 0.0


ProgressCallback = Callable[[Progress, float, float], None]


# ---------------------------------------------------------------------- the run


@dataclass
class DemoReport:
    options: DemoOptions
    database: str
    reset: ResetCounts
    plan: CrawlPlan
    config: AutoRecordConfig
    watermark: int
    product_ids: list[int]
    log_dir: Path
    write_seconds: float = 0.0
    total_seconds: float = 0.0
    progress: Progress = field(default_factory=Progress)
    outcomes: list[tuple[str, str, int]] = field(default_factory=list)
    failed_events: list[tuple[int, str, int, str]] = field(default_factory=list)
    done: int = 0
    first_created: dt.datetime | None = None
    last_processed: dt.datetime | None = None
    latency: tuple[float, float, float, float] | None = None  # p50, p95, p99, max (seconds)
    by_drainer: list[tuple[str, int]] = field(default_factory=list)
    stats_from_view: bool = False
    stats_columns: list[str] = field(default_factory=list)
    stats_rows: list[tuple[Any, ...]] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    drainer_tails: dict[int, str] = field(default_factory=dict)
    log_findings: LogFindings = field(default_factory=LogFindings)

    @property
    def throughput(self) -> float | None:
        """Done events per second, from the first event written to the last one done."""
        if not self.done or self.first_created is None or self.last_processed is None:
            return None
        seconds = (self.last_processed - self.first_created).total_seconds()
        return self.done / seconds if seconds > 0 else None


def database_description() -> str:
    s = connection.settings_dict
    where = f"{s.get('HOST') or 'localhost'}:{s.get('PORT') or 5432}/{s.get('NAME')}"
    pgdata = str(getattr(settings, "EMBEDDED_PGDATA", "") or "")
    return f"{where} (the embedded PostgreSQL in {pgdata})" if pgdata else f"{where} (DATABASE_URL)"


def reclaim_wal() -> None:
    """A CHECKPOINT, so that the embedded server drops the WAL the demo wrote at once."""
    with connection.cursor() as cursor:
        cursor.execute(queries.demo_checkpoint)


def run_demo(
    options: DemoOptions,
    *,
    on_progress: ProgressCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> DemoReport:
    """Reset (unless keep), write the crawl, drain it with real drainers, read back the result."""

    def stage(text: str) -> None:
        if on_stage is not None:
            on_stage(text)

    config = get_config()
    reset = ResetCounts() if options.keep else reset_demo_data()
    if reset.products:
        stage(
            f"reset the previous demo: {reset.products:,} products, {reset.results:,} results, "
            f"{reset.history:,} history rows, {reset.events:,} events deleted"
        )
    # The products' names come from their own RNG stream so that --products does
    # not shift the crawl of a given seed more than it has to.
    specs = product_specs(options.products, random.Random(f"products-{options.seed}"))  # noqa: S311
    product_ids = ensure_products(specs)
    text_ids = [str(pid) for pid in product_ids]
    watermark = event_watermark()
    generator = CrawlGenerator(
        results=options.results,
        product_ids=product_ids,
        seed=options.seed,
        config=config,
        end=dt.datetime.now(dt.UTC),
    )
    log_dir = Path(tempfile.mkdtemp(prefix="outbox-demo-"))
    report = DemoReport(
        options=options,
        database=database_description(),
        reset=reset,
        plan=generator.plan,
        config=config,
        watermark=watermark,
        product_ids=product_ids,
        log_dir=log_dir,
    )
    drainers = DemoFleet(options.drainers, database_url=database_url_for_children(), log_dir=log_dir)
    stage(f"starting {options.drainers} drain_outbox process(es) {' '.join(DRAINER_ARGS)}; logs in {log_dir}")
    try:
        drainers.start_all()
        stage(f"{options.drainers} drainer(s) connected; writing the crawl in chunks of {CHUNK_SIZE:,} results")
        started = time.monotonic()
        meter = RateMeter()
        progress = Progress()

        last_tick = 0.0

        def tick() -> None:
            nonlocal progress, last_tick
            last_tick = time.monotonic()
            progress = read_progress(watermark, text_ids)
            if on_progress is not None:
                on_progress(progress, meter.add(progress.finished), last_tick - started)

        for chunk in generator.chunks():
            write_chunk(chunk)
            if time.monotonic() - last_tick >= PROGRESS_EVERY:
                tick()
        tick()
        report.write_seconds = time.monotonic() - started
        last_change, last_finished = time.monotonic(), progress.finished
        while progress.finished < options.results:
            drainers.check_running()
            time.sleep(PROGRESS_EVERY)
            tick()
            if progress.finished != last_finished:
                last_change, last_finished = time.monotonic(), progress.finished
            elif time.monotonic() - last_change > STALL_TIMEOUT:
                raise DemoError(
                    f"no event finished for {STALL_TIMEOUT:.0f}s with {options.results - progress.finished:,} "
                    f"left; see the drainer logs in {log_dir} and `python manage.py outbox_status`"
                )
        report.total_seconds = time.monotonic() - started
        report.progress = progress
    finally:
        codes = drainers.stop(STOP_TIMEOUT)
        report.exit_codes = codes
        report.drainer_tails = {i: drainers.tail(i) for i, code in enumerate(codes) if code != 0}
        report.log_findings = drainers.log_findings()
    stage("all events finished; drainers stopped with SIGTERM")
    read_back(report)
    return report


def read_back(report: DemoReport) -> None:
    """Fill the report from the database: outcomes, failures, timing, outbox_stats."""
    params: dict[str, Any] = {
        "after": report.watermark,
        "topic": CRAWL_RESULT_CREATED,
        "product_ids": [str(pid) for pid in report.product_ids],
    }
    with connection.cursor() as cursor:
        cursor.execute(queries.demo_run_outcomes, params)
        report.outcomes = [(status, reason, int(n)) for status, reason, n in cursor.fetchall()]
        cursor.execute(queries.demo_run_failed, {**params, "limit": 5})
        report.failed_events = [(int(i), key, int(a), err) for i, key, a, err in cursor.fetchall()]
        cursor.execute(queries.demo_run_timing, params)
        row = cursor.fetchone()
        if row and row[0]:
            report.done = int(row[0])
            report.first_created, report.last_processed = row[1], row[2]
            p50, p95, p99 = (float(v) for v in row[3])
            report.latency = (p50, p95, p99, float(row[4]))
        cursor.execute(queries.demo_run_by_drainer, params)
        report.by_drainer = [(name, int(n)) for name, n in cursor.fetchall()]
        cursor.execute(queries.demo_stats_view_exists)
        exists = cursor.fetchone()
        report.stats_from_view = bool(exists and exists[0])
        cursor.execute(queries.demo_stats_view if report.stats_from_view else queries.demo_counts_by_status)
        report.stats_columns = [col.name for col in cursor.description or ()]
        report.stats_rows = [tuple(r) for r in cursor.fetchall()]
