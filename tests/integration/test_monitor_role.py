"""The read-only role of docs/monitoring.sql, created on the real server and connected as:
it runs every query of that file, sees drainers, open transactions and lock waits, and
reads no other session's query text, no table, no other database's sessions."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.factories import make_event
from tests.support import ROOT, current_database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = ROOT / "docs" / "monitoring.sql"
HOUR = dt.timedelta(hours=1)
#: What the role may read: the outbox's monitoring views, nothing else.
VIEWS = {
    "outbox_stats",
    "outbox_failures",
    "outbox_throughput",
    "outbox_throughput_day",
    "outbox_leases",
    "outbox_retention",
    "outbox_drainers",
    "outbox_sessions",
}


def docs_statements(path: Path = DOCS) -> list[str]:
    """The statements of docs/monitoring.sql, whole-line comments left out."""
    code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def grants_for(role: str, dbname: str, schema: str) -> list[sql.Composed]:
    """The GRANTs of docs/monitoring.sql for this role, database and schema."""
    composed = []
    for statement in docs_statements():
        if not statement.startswith("GRANT"):
            continue
        template = re.sub(r"\boutbox_monitor\b", "{role}", statement)
        template = re.sub(r"\bDATABASE shop\b", "DATABASE {db}", template)
        template = re.sub(r"\bSCHEMA public\b", "SCHEMA {schema}", template)
        composed.append(
            sql.SQL(template).format(
                role=sql.Identifier(role), db=sql.Identifier(dbname), schema=sql.Identifier(schema)
            )
        )
    return composed


def app_session(
    application_name: str = "",
    dbname: str | None = None,
    *,
    autocommit: bool = False,
    isolation_level: psycopg.IsolationLevel | None = None,
) -> psycopg.Connection:
    """A session of the application's role (the one that migrated), like the admin's or a drainer's."""
    url = current_database_url()
    if dbname is not None:
        url = url.rsplit("/", 1)[0] + f"/{dbname}"
    conn = psycopg.connect(url, application_name=application_name, autocommit=autocommit)
    conn.isolation_level = isolation_level
    return conn


@pytest.fixture
def monitor() -> Iterator[psycopg.Connection]:
    """A login role with exactly the GRANTs of docs/monitoring.sql, and a session as it."""
    role = f"outbox_monitor_{uuid.uuid4().hex[:10]}"  # roles are server-wide: one per run
    password = secrets.token_hex(16)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_schema()")
        dbname, schema = cursor.fetchone()
    admin = app_session(autocommit=True)
    session = None
    try:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        for grant in grants_for(role, dbname, schema):
            admin.execute(grant)
        session = psycopg.connect(make_conninfo(current_database_url(), user=role, password=password), autocommit=True)
        assert session.execute("SELECT current_user").fetchone() == (role,)
        yield session
    finally:
        if session is not None:
            session.close()
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def test_the_docs_grant_what_the_views_need_and_nothing_more() -> None:
    grants = " ".join(s for s in docs_statements() if s.startswith("GRANT"))
    assert "pg_read_all_stats" not in grants, grants
    assert not re.search(r"\bON outbox_event\b", grants), "a grant on the table itself"
    views = set(re.findall(r"\b(outbox_[a-z_]+)\b", grants)) - {"outbox_monitor"}
    assert views >= VIEWS, VIEWS - views


def test_every_query_of_the_docs_runs_as_the_role(monitor: psycopg.Connection) -> None:
    make_event("t", "k", status="failed", last_error="boom")
    queries = [s for s in docs_statements() if s.startswith(("SELECT", "WITH"))]
    assert len(queries) >= 15, queries
    for query in queries:
        try:
            monitor.execute(query).fetchall()
        except psycopg.Error as exc:
            pytest.fail(f"as the monitoring role, {query[:80]!r}... failed: {exc}")


def test_the_role_reads_no_table_and_no_other_view(monitor: psycopg.Connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname, c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"
        )
        relations = cursor.fetchall()
    names = {name for _, name in relations}
    assert {"auth_user", "django_session", "outbox_event", "pricing_crawlresult"} <= names
    assert VIEWS <= names
    for schema, name in relations:
        query = sql.SQL("SELECT * FROM {}.{} LIMIT 1").format(sql.Identifier(schema), sql.Identifier(name))
        if name in VIEWS:
            monitor.execute(query).fetchall()
            continue
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            monitor.execute(query)


def test_no_query_text_no_other_database_and_what_it_does_see(monitor: psycopg.Connection) -> None:
    event = make_event("t", "k")
    secret = f"session-key-{secrets.token_hex(8)}"
    # The admin's session: its last statement, with a literal value in it, in a
    # transaction that holds a snapshot (what pins dead rows).
    admin = app_session("gunicorn", isolation_level=psycopg.IsolationLevel.REPEATABLE_READ)
    drainer = app_session("outbox:testhost:4242:abcdef")
    elsewhere = app_session("outbox:otherdb:1:000000", dbname="postgres")
    holder = app_session("holder")
    waiter = app_session("outbox:testhost:4343:fedcba", autocommit=True)
    try:
        admin.execute(f"SELECT '{secret}' AS session_key, count(*) FROM outbox_event")  # noqa: S608
        drainer.execute(f"SELECT '{secret}'")  # noqa: S608
        elsewhere.execute(f"SELECT '{secret}'")  # noqa: S608
        holder.execute("SELECT id FROM outbox_event WHERE id = %s FOR UPDATE", [event.pk])
        blocked = threading.Thread(
            target=lambda: waiter.execute("UPDATE outbox_event SET attempts = attempts WHERE id = %s", [event.pk])
        )
        blocked.start()
        pids = {
            name: conn.info.backend_pid
            for name, conn in [("admin", admin), ("drainer", drainer), ("holder", holder), ("waiter", waiter)]
        }

        def waiting() -> list[tuple[object, ...]]:
            return monitor.execute(
                "SELECT pid, blocked_by FROM outbox_sessions WHERE wait_event_type = 'Lock'"
            ).fetchall()

        assert wait_until(waiting, timeout=30, message="the waiter seen waiting") == [
            (pids["waiter"], [pids["holder"]])
        ]

        # pg_stat_activity itself: other sessions' text is '<insufficient privilege>' or NULL.
        everything = [row[0] for row in monitor.execute("SELECT a::text FROM pg_stat_activity AS a").fetchall()]
        assert everything and not any(secret in row for row in everything), "a session's query text leaked"
        sessions = monitor.execute("SELECT s::text, s.pid, s.xmin_age FROM outbox_sessions AS s").fetchall()
        assert not any(secret in row[0] for row in sessions)
        xmin = {pid: age for _, pid, age in sessions}
        assert pids["admin"] in xmin and xmin[pids["admin"]] is not None, "the snapshot that pins dead rows"
        assert {pids["drainer"], pids["holder"], pids["waiter"]} <= set(xmin)

        drainers = {row[0]: row for row in monitor.execute("SELECT d.drainer, d::text FROM outbox_drainers AS d")}
        assert set(drainers) == {"outbox:testhost:4242:abcdef", "outbox:testhost:4343:fedcba"}, (
            "exactly this database's drainers"
        )
        assert not any(secret in row[1] for row in drainers.values())
        states = monitor.execute(
            "SELECT drainer, states, transaction_age_seconds IS NOT NULL, waiting_for_lock FROM outbox_drainers "
            "ORDER BY drainer"
        ).fetchall()
        assert states == [
            ("outbox:testhost:4242:abcdef", "idle in transaction", True, False),
            ("outbox:testhost:4343:fedcba", "active", True, True),
        ]
    finally:
        holder.rollback()
        blocked.join(30)
        for conn in (admin, drainer, elsewhere, holder, waiter):
            conn.close()


def test_a_temporary_table_cannot_stand_in_for_what_the_functions_read(monitor: psycopg.Connection) -> None:
    make_event("real.topic", "k")
    # Any role may create temporary tables; a SECURITY DEFINER function that looked its
    # tables up through the caller's search_path would read these instead.
    monitor.execute(
        "CREATE TEMP TABLE outbox_event AS SELECT 'hijacked'::text AS topic, 'pending'::text AS status, "
        "NULL::text AS locked_by, NULL::timestamptz AS locked_until, now() AS created_at, 0 AS attempts"
    )
    monitor.execute(
        "CREATE TEMP TABLE pg_stat_activity AS SELECT 'outbox:fake:1:1'::text AS application_name, "
        "current_database() AS datname"
    )
    monitor.execute("SET search_path = pg_temp, public")
    topics = {row[0] for row in monitor.execute("SELECT topic FROM public.outbox_stats")}
    assert topics == {"real.topic"}
    assert monitor.execute("SELECT drainer FROM public.outbox_drainers").fetchall() == []


def test_the_functions_are_not_callable_by_everyone() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, p.prosecdef, p.proconfig, has_function_privilege('public', p.oid, 'EXECUTE') "
            "FROM pg_proc AS p WHERE p.proname IN ('outbox_stats_by_topic', 'outbox_drainer_sessions', "
            "'outbox_session_rows', 'outbox_throughput_rows') ORDER BY 1"
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    assert [name for name, *_ in rows] == [
        "outbox_drainer_sessions",
        "outbox_session_rows",
        "outbox_stats_by_topic",
        "outbox_throughput_rows",
    ]
    for name, definer, config, public in rows:
        assert definer, f"{name} is not SECURITY DEFINER"
        assert f"search_path={schema}, pg_temp" in (config or []), (name, config)
        assert not public, f"PUBLIC may call {name}"


def test_a_role_that_read_outbox_throughput_before_0006_still_reads_it() -> None:
    """0006 put outbox_throughput over a function: a role granted only the view keeps it."""
    from importlib import import_module

    role = f"outbox_old_monitor_{uuid.uuid4().hex[:10]}"
    password = secrets.token_hex(16)
    admin = app_session(autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        admin.execute(sql.SQL("GRANT SELECT ON outbox_throughput TO {}").format(sql.Identifier(role)))
        with admin.transaction():
            admin.execute(import_module("outbox.migrations.0005_monitoring").monitoring_sql())  # as 0006 runs it
        with psycopg.connect(make_conninfo(current_database_url(), user=role, password=password)) as old:
            assert len(old.execute("SELECT * FROM outbox_throughput").fetchall()) == 60
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def test_leases_and_retention_read_their_partial_indexes() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO outbox_event (topic, key, status, attempts, processed_at) "
            "SELECT 't', g::text, 'done', 1, now() - interval '1 day' + g * interval '1 second' "
            "FROM generate_series(1, 20000) g"
        )
        cursor.execute("SELECT set_config('application_name', 'outbox:here:1:aaaaaa', false)")
        live = make_event("t", "live", locked_by="outbox:here:1:aaaaaa", locked_until=timezone.now() + HOUR)
        gone = make_event("t", "gone", locked_by="outbox:gone:1:bbbbbb", locked_until=timezone.now() + HOUR)
        expired = make_event("t", "expired", locked_by="outbox:gone:1:bbbbbb", locked_until=timezone.now() - HOUR)
        cursor.execute("ANALYZE outbox_event")
        cursor.execute("SELECT id, expired, holder_connected FROM outbox_leases ORDER BY id")
        assert cursor.fetchall() == [(live.pk, False, True), (gone.pk, False, False), (expired.pk, True, False)]
        cursor.execute("SELECT oldest_done_at, oldest_done_age_seconds FROM outbox_retention")
        _, age = cursor.fetchone()
        assert 86_000 < age < 86_400, age
        plans = {"outbox_leases": "outbox_event_claim_idx", "outbox_retention": "outbox_event_done_idx"}
        for view, index in plans.items():
            cursor.execute(f"EXPLAIN SELECT * FROM {view}")  # noqa: S608 (a constant)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert index in plan and "Seq Scan on outbox_event" not in plan, plan
        cursor.execute("SELECT set_config('application_name', '', false)")
