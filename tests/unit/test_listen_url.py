"""OUTBOX['LISTEN_URL']: the direct URL drainers LISTEN on behind a transaction pooler."""

from __future__ import annotations

import pytest

from outbox.checks import pooled_database_problems
from outbox.conf import OutboxSettings, validate

POOLED = {"prepare_threshold": None}


def test_a_url_or_urls_by_alias_are_accepted() -> None:
    assert validate({"LISTEN_URL": "postgres://app:secret@db.internal:5432/shop"}) == []
    assert validate({"LISTEN_URL": "host=db.internal dbname=shop"}) == []
    assert validate({"LISTEN_URL": {"default": "postgres://db1/shop", "shard2": "postgres://db2/shop"}}) == []
    assert validate({"LISTEN_URL": ""}) == []
    assert validate({"LISTEN_URL": "postgres://db1:6432,db2:6433/shop"}) == []  # libpq's host list


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("postgres://app:hunter2@db/shop?colour=red", "is not a PostgreSQL URL such as postgres://"),
        ("host", "is not a PostgreSQL URL"),
        (5432, "must be a PostgreSQL URL (or a dict of them by alias), got int"),
        ({"shard2": None}, "['shard2'] must be a PostgreSQL URL"),
        ("postgres://app:hunter2@db:99999/shop", "has the port '99999': a port is a number from 1 to 65535"),
        ("host=db port=abc dbname=shop", "has the port 'abc'"),
        ({"default": "postgres://app:hunter2@db:0/shop"}, "['default'] has the port '0'"),
    ],
)
def test_a_bad_url_is_named_without_its_password(value: object, text: str) -> None:
    problems = validate({"LISTEN_URL": value})
    assert [check_id for check_id, _ in problems] == ["outbox.E017"], problems
    assert text in problems[0][1] and "hunter2" not in problems[0][1], problems


def test_the_url_of_each_alias() -> None:
    single = OutboxSettings(listen_url="postgres://db/shop")
    assert (single.listen_url_for("default"), single.listen_url_for("shard2")) == ("postgres://db/shop", "")
    by_alias = OutboxSettings(listen_url={"shard2": "postgres://db2/shop"})
    assert (by_alias.listen_url_for("default"), by_alias.listen_url_for("shard2")) == ("", "postgres://db2/shop")


def test_a_pooled_database_must_not_prepare_statements() -> None:
    plain = {"default": {"NAME": "shop"}}
    pooled = {"default": {"NAME": "shop", "OPTIONS": POOLED, "DISABLE_SERVER_SIDE_CURSORS": True}}
    assert [m.id for m in pooled_database_problems("postgres://db/shop", plain)] == ["outbox.W001"]
    assert pooled_database_problems("postgres://db/shop", pooled) == []
    assert pooled_database_problems("", plain) == []
    assert [m.id for m in pooled_database_problems({"nowhere": "postgres://db/shop"}, pooled)] == ["outbox.E018"]
    prepared = pooled_database_problems("postgres://db/shop", pooled, prepared_statements=True)
    assert [m.id for m in prepared] == ["outbox.W001"] and "PREPARED_STATEMENTS'] = False" in prepared[0].hint
