"""outbox.sql: the named-block loader and the batch parameter helpers."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from outbox.sql import Queries, array_literal, json_records


def test_blocks_run_without_their_comments_and_carry_their_name(tmp_path: Path) -> None:
    path = tmp_path / "q.sql"
    path.write_text(
        "-- file header\n\n"
        "-- name: first\n"
        "-- Takes %(not_a_param)s: documentation only.\n"
        "SELECT 1\n"
        "FROM t -- trailing note stays\n"
        "WHERE a = %(a)s;\n\n"
        "-- ===== next section =====\n"
        "-- about the next block\n\n"
        "-- name: second\n"
        "SELECT 2;\n",
        encoding="utf-8",
    )
    queries = Queries(path)
    assert list(queries) == ["first", "second"]
    assert queries.first == "/* first */ SELECT 1\nFROM t -- trailing note stays\nWHERE a = %(a)s"
    assert "not_a_param" not in queries.first  # psycopg would have read it as a parameter
    assert "next section" not in queries.first  # a later section's comments stay out
    assert queries["second"] == "/* second */ SELECT 2"


def test_a_block_defined_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "q.sql"
    path.write_text("-- name: x\nSELECT 1;\n-- name: x\nSELECT 2;\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'x' is defined twice"):
        Queries(path)


def test_array_literal_of_ints_and_uuids() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert array_literal([3, 1, 2]) == "{3,1,2}"
    assert array_literal(i for i in range(0)) == "{}"
    assert array_literal([u, 7]) == "{12345678-1234-5678-1234-567812345678,7}"


@pytest.mark.parametrize("bad", ["1", 1.5, True, None, b"1"])
def test_array_literal_refuses_anything_that_could_need_quoting(bad: object) -> None:
    with pytest.raises(TypeError, match="ints or UUIDs"):
        array_literal([1, bad])  # type: ignore[list-item]


def test_json_records_keep_exact_values() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    u = uuid.uuid4()
    text = json_records([{"id": u, "price": Decimal("10.10"), "at": when, "n": 1, "note": None}])
    assert json.loads(text) == [
        {"id": str(u), "price": "10.10", "at": "2026-01-02T03:04:05.123456+02:00", "n": 1, "note": None}
    ]
    with pytest.raises(TypeError, match="cannot write set"):
        json_records([{"x": {1}}])
