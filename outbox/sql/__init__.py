"""A tiny loader for files of named SQL blocks.

A block starts at a line ``-- name: some_name`` and runs to the next such line.
The comment lines right after the name are the block's documentation. Values are
always passed as ``%(name)s`` parameters; nothing is ever formatted into the text.

What runs is the block without its whole-line comments, prefixed with
``/* name */`` so that ``pg_stat_activity`` and the server log say which
statement a session is running. The documentation stays in the file: the server
does not parse it on every call, psycopg never reads a ``%(x)s`` written in a
comment as a parameter, and comment lines at the end of a block (documentation
of the next section) do not travel with it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

_NAME_RE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def _statement(name: str, body: str) -> str:
    lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(lines).strip().rstrip(";")
    return f"/* {name} */ {text}"


class Queries(Mapping[str, str]):
    """Named SQL blocks read from one ``.sql`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text(encoding="utf-8")
        parts = _NAME_RE.split(text)
        self._blocks: dict[str, str] = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in self._blocks:
                raise ValueError(f"{path}: query {name!r} is defined twice")
            self._blocks[name] = _statement(name, body)

    def __getitem__(self, name: str) -> str:
        try:
            return self._blocks[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self.path}") from None

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)


#: Every statement the drainer, the commands, the admin and monitoring run.
queries = Queries(Path(__file__).with_name("queries.sql"))
#: What /outbox/metrics and the admin's chart read besides those (outbox.metrics, outbox.chart).
metrics_queries = Queries(Path(__file__).with_name("metrics.sql"))


def script(*statements: str) -> str:
    """Named statements sent as one string (simple query protocol): one round trip.

    Only through a client-side-binding cursor (psycopg's ClientCursor, Django's
    default), and only statements whose parameter names do not clash.
    """
    return ";\n".join(statements)


def array_literal(values: Iterable[int | uuid.UUID]) -> str:
    """``values`` as one PostgreSQL array literal, e.g. ``'{1,2,3}'``, for ``%(x)s::bigint[]``.

    Ints and UUIDs only: their text never needs quoting inside an array literal.
    Django's psycopg backend binds parameters on the client, and psycopg quotes a
    Python list element by element with a regular expression each; over the ids
    of a batch, in every statement of it, that was a fifth of a drainer's own
    time (bench/profile_drain.py). One joined string costs a few microseconds.
    """
    items = list(values)
    if not {type(v) for v in items} <= _ARRAY_TYPES:  # bool is an int subclass: refused too
        bad = next(v for v in items if type(v) not in _ARRAY_TYPES)
        raise TypeError(f"array_literal takes ints or UUIDs, not {type(bad).__name__}: {bad!r}")
    return "{" + ",".join(map(str, items)) + "}"


_ARRAY_TYPES = {int, uuid.UUID}


def text_array_literal(values: Iterable[str]) -> str:
    """``values`` as one PostgreSQL text[] literal, each element quoted, e.g. ``'{"a","b\\"c"}'``.

    For ``%(x)s::text[]``, like array_literal and for the same reason: one string the
    server reads exactly (double quotes and backslashes escaped), where psycopg would
    quote element by element. A NUL cannot be in a PostgreSQL text value: refused.
    """
    items = []
    for value in values:
        if type(value) is not str:
            raise TypeError(f"text_array_literal takes strings, not {type(value).__name__}: {value!r}")
        if "\x00" in value:
            raise ValueError(f"text_array_literal: a PostgreSQL text value cannot hold a NUL: {value!r}")
        items.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def json_records(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as one JSON array, for ``jsonb_to_recordset(%(x)s::jsonb) AS r(col type, ...)``.

    Many-column batches (a handler's inserts and updates) travel as one text
    parameter instead of one array per column; the column list in the SQL gives
    each value its type. Decimals, UUIDs and datetimes are written as strings,
    which the server reads back exactly (numeric, uuid and timestamptz input;
    datetimes keep their microseconds and offset, unlike DjangoJSONEncoder's).
    """
    return json.dumps(list(rows), default=_json_scalar, separators=(",", ":"))


def _json_scalar(value: object) -> str:
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"json_records cannot write {type(value).__name__}: {value!r}")
