"""The adoption path: the wheel, a throwaway venv, a project of a few files, drained.

``python -m build`` makes the django-pg-outbox wheel from this checkout; it is
installed into a fresh virtualenv with nothing else of this repository (no
project/, no pricing/, no requirements.txt), next to the minimal project in
tests/adoption/minimal_project: one model with ``outbox_trigger``, one handler.
Then what docs/adopting.md tells a team to do: ``makemigrations`` (which must make
the trigger's migration depend on outbox), ``migrate``, insert rows by every kind
of writer, ``drain_outbox --once``, and every row has its effect exactly once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from tests.support import ROOT

pytestmark = [pytest.mark.adoption, pytest.mark.django_db, pytest.mark.timeout(900)]

MINIMAL_PROJECT = Path(__file__).with_name("minimal_project")
ORDERS = 300


@pytest.fixture
def shop_database() -> Iterator[dict[str, str]]:
    """A database of its own on the test server, for the minimal project."""
    s = connection.settings_dict
    name = f"{s['NAME']}_shop"[:63]
    params = {"host": s["HOST"] or "localhost", "port": str(s["PORT"] or 5432), "user": s["USER"] or "postgres"}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield {
            "SHOP_DB_NAME": name,
            "SHOP_DB_HOST": params["host"],
            "SHOP_DB_PORT": params["port"],
            "SHOP_DB_USER": params["user"],
        }
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr}"
    return done.stdout


def test_wheel_installs_into_a_fresh_venv_and_a_minimal_project_drains(
    tmp_path: Path, shop_database: dict[str, str]
) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp_path)
    timings["build"] = time.monotonic() - started
    wheels = list(dist.glob("django_pg_outbox-*-py3-none-any.whl"))
    assert len(wheels) == 1 and list(dist.glob("django_pg_outbox-*.tar.gz")), sorted(p.name for p in dist.iterdir())
    names = run([sys.executable, "-m", "zipfile", "-l", str(wheels[0])], cwd=tmp_path)
    for part in ("outbox/sql/queries.sql", "outbox/sql/views.sql", "outbox/templates/admin/outbox/", "migrations/"):
        assert part in names, f"{part} is not in the wheel"
    assert "pricing/" not in names and "project/" not in names, "the wheel carries the crawl project"

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / "bin" / "python")
    started = time.monotonic()
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, f"{wheels[0]}[binary]"], cwd=tmp_path)
    timings["install"] = time.monotonic() - started

    project = tmp_path / "project"
    shutil.copytree(MINIMAL_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "PYTHONPATH"))}
    env.update(shop_database, PYTHONUNBUFFERED="1")

    def manage(*args: str) -> str:
        return run([python, "manage.py", *args], cwd=project, env=env)

    where = manage("shell", "-c", "import outbox; print(outbox.__file__, outbox.__version__)")
    assert str(venv) in where and str(ROOT) not in where, f"outbox not imported from the wheel: {where}"

    manage("makemigrations", "shop")
    migration = (project / "shop" / "migrations" / "0001_initial.py").read_text()
    assert re.search(r"\('outbox', '\d{4}_\w+'\)", migration), f"no dependency on outbox:\n{migration}"
    assert "pgtrigger.migrations.AddTrigger" in migration
    manage("migrate", "--verbosity", "0")

    # Three kinds of writer: save(), bulk_create(), and plain SQL from outside Django.
    manage(
        "shell",
        "-c",
        "from decimal import Decimal; from shop.models import Order; "
        "Order.objects.create(customer='one', total=Decimal('1.00')); "
        f"Order.objects.bulk_create([Order(customer=f'bulk-{{i}}', total=Decimal(i)) for i in range({ORDERS - 2})])",
    )
    with psycopg.connect(
        dbname=shop_database["SHOP_DB_NAME"],
        host=shop_database["SHOP_DB_HOST"],
        port=shop_database["SHOP_DB_PORT"],
        user=shop_database["SHOP_DB_USER"],
        autocommit=True,
    ) as conn:
        conn.execute("INSERT INTO shop_order (customer, total) VALUES ('sql', 9.99)")
        drained = manage("drain_outbox", "--once", "--batch-size", "50")
        assert f"claimed={ORDERS} done={ORDERS} retried=0 failed=0" in drained, drained
        receipts = conn.execute(
            "SELECT count(*), count(DISTINCT order_id), sum(r.total) = sum(o.total) "
            "FROM shop_receipt AS r JOIN shop_order AS o ON o.id = r.order_id"
        ).fetchone()
    assert receipts == (ORDERS, ORDERS, True), f"orders {ORDERS}, receipts (count, distinct, totals equal) {receipts}"

    status: dict[str, Any] = json.loads(manage("outbox_status", "--json"))
    assert (status["pending"], status["done"], status["failed"]) == (0, ORDERS, 0), status
    # docs/adopting.md's catch-up backfill: every order has its receipt, nothing to enqueue.
    left = manage("outbox_backfill", "shop.Order", "--filter", "receipt__isnull=true", "--dry-run")
    assert "for up to 0 row(s)" in left, left
    print("wheel:", ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
