"""Values a crawl result must not carry: refused by CHECK constraints, skipped by the
criteria, failed readably by the handler and shown by the admin when a row from
before the constraints still holds one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.urls import reverse

from outbox.drainer import Drainer, DrainerConfig
from outbox.models import OutboxEvent
from pricing.models import CrawlResult, PriceHistory
from tests.factories import make_product

pytestmark = pytest.mark.django_db(transaction=True)

#: column -> values that are not a usable crawl result (PostgreSQL input syntax).
BAD_VALUES = {
    "confidence": ["'NaN'", "1.7", "-0.1", "'Infinity'", "'-Infinity'"],
    "price": ["'NaN'"],
    "crawled_at": ["'infinity'", "'-infinity'", "'20000-01-01'"],
}
CASES = [(column, value) for column, values in BAD_VALUES.items() for value in values]
CONSTRAINTS = ("pricing_cr_confidence_0_1", "pricing_cr_price_not_nan", "pricing_cr_crawled_at_finite")


def insert(product_id: int, **values: str) -> str:
    """A result written with plain SQL, as another program would; returns its id."""
    row = {"source": "'html_ml'", "price": "10", "currency": "'EUR'", "confidence": "0.95", "crawled_at": "now()"}
    row.update(values)
    columns = ", ".join(row)
    literals = ", ".join(row.values())  # the test's own constants: PostgreSQL literals on purpose
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO pricing_crawlresult (product_id, {columns}) VALUES (%s, {literals}) RETURNING id",  # noqa: S608
            [product_id],
        )
        return str(cursor.fetchone()[0])


def delete_all() -> None:
    """In SQL: the ORM's delete loads the rows first, and Python cannot hold some of them."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pricing_crawlresult")


def drain() -> None:
    drainer = Drainer(DrainerConfig.from_settings(max_attempts=1))
    try:
        drainer.drain()
    finally:
        drainer.close()


@pytest.mark.parametrize(("column", "value"), CASES)
def test_the_constraints_refuse_the_value(column: str, value: str) -> None:
    product = make_product()
    with pytest.raises(IntegrityError, match="violates check constraint"):
        insert(product.pk, **{column: value})
    assert not CrawlResult.objects.exists()


def test_the_constraints_are_validated_after_migrate() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'pricing_crawlresult'::regclass "
            "AND conname = ANY(%s)",
            [list(CONSTRAINTS)],
        )
        assert dict(cursor.fetchall()) == dict.fromkeys(CONSTRAINTS, True)


def _constraints_migration() -> tuple[str, str]:
    """(the pricing migration that adds the constraints NOT VALID, the one before it), whatever their numbers."""
    loader = MigrationLoader(connection)
    for (app, name), migration in loader.disk_migrations.items():
        added = {getattr(getattr(op, "constraint", None), "name", "") for op in migration.operations}
        if app == "pricing" and CONSTRAINTS[0] in added:
            return name, next(dep for dep_app, dep in migration.dependencies if dep_app == "pricing")
    raise AssertionError("no pricing migration adds the value constraints")


@pytest.fixture
def rows_from_before() -> Iterator[dict[tuple[str, str], str]]:
    """Bad rows written before the constraints existed (migrated back before them);
    the schema is migrated forward again afterwards."""
    _, before = _constraints_migration()
    call_command("migrate", "pricing", before, verbosity=0)
    try:
        product = make_product()
        yield {(column, value): insert(product.pk, **{column: value}) for column, value in CASES}
    finally:
        delete_all()
        call_command("migrate", "pricing", verbosity=0)


def failed_errors() -> dict[str, str]:
    return {event.key: event.last_error for event in OutboxEvent.objects.filter(status="failed")}


def test_without_the_constraints_the_criteria_skip_the_values(rows_from_before: dict[tuple[str, str], str]) -> None:
    drain()
    assert PriceHistory.objects.count() == 0, "an unusable value was recorded as trusted"
    outcomes = {str(pk): reason for pk, reason in CrawlResult.objects.values_list("id", "history_record_reason")}
    errors = failed_errors()
    for (column, value), result_id in rows_from_before.items():
        if column == "confidence":
            assert outcomes[result_id] == "invalid_confidence", (value, outcomes[result_id])
        elif column == "price":
            assert outcomes[result_id] == "invalid_price", (value, outcomes[result_id])
        else:  # Python has no datetime for it: the event fails, saying which row and why
            assert f"CrawlResult {result_id} cannot be judged: its crawled_at " in errors[result_id], errors[result_id]
            assert "is outside the years 1 to 9999" in errors[result_id]
            assert "fix or delete the row" in errors[result_id]


def test_while_not_valid_the_rows_fail_readably_and_the_admin_lists_them(
    rows_from_before: dict[tuple[str, str], str], admin_client: Client
) -> None:
    adding, _ = _constraints_migration()
    call_command("migrate", "pricing", adding, verbosity=0)  # the constraints, NOT VALID
    drain()
    assert PriceHistory.objects.count() == 0
    errors = failed_errors()
    assert set(errors) == set(rows_from_before.values()), "every row the handler cannot use fails its event"
    for (column, _value), result_id in rows_from_before.items():
        error = errors[result_id]
        if column == "crawled_at":
            assert f"CrawlResult {result_id} cannot be judged: its crawled_at " in error, error
        else:
            constraint = "pricing_cr_confidence_0_1" if column == "confidence" else "pricing_cr_price_not_nan"
            assert f"CrawlResult {result_id} cannot be updated with its outcome" in error, error
            assert f"the constraint {constraint} refuses" in error, error
        assert "fix or delete the row" in error and "Failing row contains" not in error, error
        assert "\n" not in error and "InvalidOperation" not in error, error

    response = admin_client.get(reverse("admin:pricing_crawlresult_changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == len(CASES)
    html = response.content.decode()
    assert "infinity" in html and "NaN" in html, "the unreadable values are shown as PostgreSQL prints them"
    for result_id in rows_from_before.values():
        detail = admin_client.get(reverse("admin:pricing_crawlresult_change", args=[result_id]))
        assert detail.status_code == 200


def test_validating_with_rows_from_before_says_how_to_find_them(
    rows_from_before: dict[tuple[str, str], str],
) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command("migrate", "pricing", verbosity=0)
    message = str(excinfo.value)
    assert "break the constraint pricing_cr_confidence_0_1" in message
    assert "SELECT * FROM pricing_crawlresult WHERE NOT (" in message and "run migrate again" in message
    # The query it gives lists the offending rows, and once they are gone migrate completes.
    query = message.split("List them with ")[1].split(";")[0]
    with connection.cursor() as cursor:
        cursor.execute(query)
        assert len(cursor.fetchall()) == len(BAD_VALUES["confidence"])
    delete_all()
    call_command("migrate", "pricing", verbosity=0)
    test_the_constraints_are_validated_after_migrate()
