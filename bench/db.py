"""The benchmark's own database: where it lives, how it is built, how it is filled.

The bench never touches a product database. It creates ``--database`` (default
``bench``) on the server of ``DATABASE_URL`` or, when that is unset, on the
embedded PostgreSQL the project starts in ``.pgdata/``; drops it first when it
exists, then runs the project's migrations into it. Everything the bench changes
in the schema (a disabled trigger, a latency probe) happens in that database only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from outbox.sql import Queries  # noqa: E402
from outbox.sql import queries as outbox_queries  # noqa: E402

queries = Queries(Path(__file__).with_name("queries.sql"))
outbox = outbox_queries

#: event_claim_batch's largest payload (outbox.handlers.MAX_PAYLOAD_BYTES).
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


def claim_all_buckets(me: str, topic: str, buckets: int, batch: int, lease: float = 60.0) -> dict[str, Any]:
    """``event_claim_batch``'s parameters for a session that owns every bucket of ``topic``:
    outbox.drainer.store.claim_params without Django (tests/unit/test_bench_claim.py
    holds the two to the same keys and values)."""
    return {
        "ordered": [topic],
        "masks": ["ff" * (buckets // 8)],
        "unordered": [],
        "batch": batch,
        "lease": lease,
        "me": me,
        "max_payload": MAX_PAYLOAD_BYTES,
    }


#: Products the bench's results are spread over (so concurrent batches rarely share one).
PRODUCTS = 10_000


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server reached by URL; ``url(db)`` points at one of its databases."""

    base_url: str
    note: str

    def url(self, dbname: str) -> str:
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path="/" + dbname))


def resolve_server() -> Server:
    """``DATABASE_URL``'s server when set, else the embedded PostgreSQL (started if needed)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return Server(url, "DATABASE_URL")
    from project.database import embedded_database_url

    pgdata = Path(os.environ.get("EMBEDDED_PGDATA", ROOT / ".pgdata"))
    return Server(embedded_database_url(pgdata, "postgres"), f"embedded PostgreSQL in {pgdata}")


def connect(url: str, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=autocommit, **kwargs)


def recreate_database(server: Server, dbname: str) -> str:
    """Drop ``dbname`` (disconnecting its sessions: it is the bench's own) and create it."""
    if dbname in {"postgres", "template0", "template1"}:
        raise ValueError(f"refusing to use the server's {dbname!r} database for benchmarks")
    with connect(server.url("postgres")) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return server.url(dbname)


def drop_database(server: Server, dbname: str) -> None:
    with connect(server.url("postgres")) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def migrate(url: str) -> None:
    """Run the project's migrations into the bench database (a real ``manage.py migrate``)."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"}
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def seed_products(conn: psycopg.Connection[Any]) -> int:
    """Insert the bench's products once; returns the first product id."""
    conn.execute(queries.product_seed, {"products": PRODUCTS})
    row = conn.execute(queries.product_first_id).fetchone()
    assert row is not None
    return int(row[0])


def first_product(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(queries.product_first_id).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute(queries.tables_reset)


def seed_results(conn: psycopg.Connection[Any], n: int, *, offset: int = 0, chunk: int = 100_000) -> None:
    """Insert ``n`` crawl results (and, through the trigger, their events) in chunks."""
    first = first_product(conn)
    done = 0
    while done < n:
        size = min(chunk, n - done)
        conn.execute(
            queries.crawl_result_seed,
            {"n": size, "offset": offset + done, "first_product": first, "products": PRODUCTS},
        )
        done += size


def analyze(conn: psycopg.Connection[Any]) -> None:
    """Fresh planner statistics, as autovacuum's analyze would leave them after a load.

    Without them a freshly truncated and refilled table is planned as nearly empty
    (nested loops over sequential scans), which measures the planner, not the design.
    ANALYZE may run inside the loading transaction and counts its own new rows.
    """
    conn.execute(queries.tables_analyze)


def pending_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(queries.event_pending_exists).fetchone()
    return bool(row and row[0])


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.01, what: str = "a condition") -> Any:
    """Poll ``predicate`` until truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_drained(conn: psycopg.Connection[Any], *, timeout: float, interval: float = 0.01) -> float:
    """Wait until no event is pending; return the wall-clock time it was first seen so."""
    wait_for(lambda: not pending_exists(conn), timeout=timeout, interval=interval, what="the backlog to drain")
    return time.time()


def check_all_processed(conn: psycopg.Connection[Any], expected: int, *, results: bool = True) -> None:
    """Every event done, and (for the real handler) every result has its outcome."""
    counts = dict(conn.execute(queries.event_count_by_status).fetchall())
    if counts.get("done", 0) != expected or len(counts) != 1:
        raise AssertionError(f"expected {expected} done events, found {counts}")
    if results:
        row = conn.execute(queries.crawl_result_count_unprocessed).fetchone()
        if row and row[0]:
            raise AssertionError(f"{row[0]} crawl results have no outcome after the drain")


def check_trivial_effects(conn: psycopg.Connection[Any], expected: int) -> None:
    """The trivial handler's table has one row per event, no more."""
    row = conn.execute(queries.trivial_effect_count).fetchone()
    if row is None or tuple(row) != (expected, expected):
        raise AssertionError(f"expected {expected} trivial effects of {expected} events, found {row}")


def crawl_result_trigger(conn: psycopg.Connection[Any]) -> str:
    rows = conn.execute(queries.crawl_result_user_triggers).fetchall()
    names = [r[0] for r in rows if r[0].startswith("pgtrigger_outbox")]
    if len(names) != 1:
        raise RuntimeError(f"expected one outbox trigger on pricing_crawlresult, found {names}")
    return str(names[0])


def set_trigger_enabled(conn: psycopg.Connection[Any], name: str, enabled: bool) -> None:
    verb = sql.SQL("ENABLE") if enabled else sql.SQL("DISABLE")
    conn.execute(sql.SQL("ALTER TABLE pricing_crawlresult {} TRIGGER {}").format(verb, sql.Identifier(name)))


def trigger_function(conn: psycopg.Connection[Any], name: str) -> tuple[str, str]:
    row = conn.execute(queries.trigger_function_source, {"name": name}).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def replace_trigger_function(conn: psycopg.Connection[Any], signature: str, body: str) -> None:
    """Swap the trigger function's body (bench database only, for the cost breakdown)."""
    conn.execute(
        sql.SQL("CREATE OR REPLACE FUNCTION {} RETURNS trigger LANGUAGE plpgsql AS {}").format(
            sql.SQL(signature), sql.Literal(body)
        )
    )


def with_ignore_check(body: str) -> str:
    """The trigger function body with an ignore check like pgtrigger's in front.

    pgtrigger's own trigger template starts every trigger function with a call to
    a PL/pgSQL function that reads a setting inside an ``EXCEPTION`` block (a
    subtransaction on each call); the outbox trigger is compiled without it
    (outbox.triggers.OutboxTriggerSql). The bench puts an equivalent check back
    (bench_should_ignore, created by ``ignore_check_create``) to show what leaving
    it out saves a writer, in the same run.
    """
    marker = "BEGIN"
    at = body.find(marker)
    if at < 0:
        raise RuntimeError("the trigger function has no BEGIN to put an ignore check after")
    check = "\n    IF (bench_should_ignore(TG_NAME) IS TRUE) THEN RETURN NULL; END IF;"
    return body[: at + len(marker)] + check + body[at + len(marker) :]


def server_settings(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {name: f"{setting}{unit}" for name, setting, unit in conn.execute(queries.server_settings).fetchall()}
