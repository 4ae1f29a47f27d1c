"""Auto-recording of trusted crawl results into price history.

The config file (``pricing/auto_record_config.json``, or the path in the
``AUTO_RECORD_CONFIG`` environment variable) is read and validated once per
process, before the drainer's first claim (``load_at_start``, the handler's
``on_start``); a bad file stops start-up with an error naming the key and the
value, and never fails an event. Change it, then restart the drainers.

``should_auto_record(result)`` is the pure criteria (no database), the reference
that the handler's SQL must agree with. The outbox handler ``record_batch`` runs
the same criteria and the per-product rules in one statement; the drainer hands
it each product's results in order, one batch at a time:

====================  ==================================================
outcome (status)      reason
====================  ==================================================
recorded              ``eligible``: a PriceHistory row was written
skipped               ``disabled``, ``source_not_allowed``,
                      ``invalid_confidence``, ``low_confidence``,
                      ``invalid_price``, ``stale``
duplicate             ``already_recorded``, ``unchanged_price``
failed                the last error, after max_attempts (set by on_failed)
====================  ==================================================

``stale``: the product already has history crawled strictly later than this
result; recording it would make an older price look newer, so it is skipped.
Results with the same ``crawled_at`` are never stale to each other and are taken
in outbox order.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db import DataError, IntegrityError, connection, transaction

from outbox.handlers import BatchResult, Event
from outbox.sql import Queries, array_literal, text_array_literal

CONFIG_ENV = "AUTO_RECORD_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).with_name("auto_record_config.json")
#: A config is a few lines; a file larger than this is the wrong file.
CONFIG_MAX_BYTES = 1024 * 1024

queries = Queries(Path(__file__).with_name("sql") / "queries.sql")
logger = logging.getLogger(__name__)


class AutoRecordConfigError(ImproperlyConfigured):
    """The auto-record config file is invalid."""


@dataclass(frozen=True)
class AutoRecordConfig:
    """What makes a crawl result trusted enough to record."""

    enabled: bool = True
    allowed_sources: frozenset[str] = field(default_factory=lambda: frozenset({"html_ml"}))
    min_confidence: float = 0.85
    skip_unchanged_price: bool = True


_FIELDS: dict[str, str] = {
    "enabled": "true or false",
    "allowed_sources": "a non-empty list of source names",
    "min_confidence": "a number from 0 to 1",
    "skip_unchanged_price": "true or false",
}


def parse_config(data: Any, origin: str = "config") -> AutoRecordConfig:
    """Validate a decoded config object; errors name the key and the value."""
    if not isinstance(data, dict):
        raise AutoRecordConfigError(f"{origin}: must be a JSON object, got {type(data).__name__} {data!r}")
    for key in data:
        if key not in _FIELDS:
            raise AutoRecordConfigError(
                f"{origin}: unknown key {key!r} (value {data[key]!r}); known keys: {', '.join(_FIELDS)}"
            )
    values: dict[str, Any] = {}
    for key in ("enabled", "skip_unchanged_price"):
        if key in data:
            if not isinstance(data[key], bool):
                raise AutoRecordConfigError(f"{origin}: {key!r} must be {_FIELDS[key]}, got {data[key]!r}")
            values[key] = data[key]
    if "min_confidence" in data:
        value = data["min_confidence"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AutoRecordConfigError(
                f"{origin}: 'min_confidence' must be {_FIELDS['min_confidence']}, got {value!r}"
            )
        if not 0 <= value <= 1:
            raise AutoRecordConfigError(f"{origin}: 'min_confidence' must be from 0 to 1, got {value!r}")
        values["min_confidence"] = float(value)
    if "allowed_sources" in data:
        value = data["allowed_sources"]
        if not isinstance(value, list) or not value:
            raise AutoRecordConfigError(
                f"{origin}: 'allowed_sources' must be {_FIELDS['allowed_sources']}, got {value!r}"
            )
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise AutoRecordConfigError(
                    f"{origin}: 'allowed_sources' items must be non-empty strings, got {item!r} in {value!r}"
                )
            if item != item.strip():
                # Sources are matched exactly: "html_ml " would silently match nothing.
                raise AutoRecordConfigError(
                    f"{origin}: 'allowed_sources' items must not start or end with spaces, got {item!r} in {value!r}"
                )
        values["allowed_sources"] = frozenset(value)
    return AutoRecordConfig(**values)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a key given twice is an error (json keeps the last one silently)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {key!r} appears twice")
        data[key] = value
    return data


def load_config(path: Path | None = None) -> AutoRecordConfig:
    """Read and validate a config file.

    At most CONFIG_MAX_BYTES are read, so a wrong path (``/dev/zero``, a log
    file) fails at once instead of filling memory; the file must be UTF-8 JSON.
    """
    path = path or config_path()
    try:
        with path.open("rb") as file:
            raw = file.read(CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise AutoRecordConfigError(f"{path}: cannot read the auto-record config ({exc.strerror})") from exc
    try:
        if len(raw) > CONFIG_MAX_BYTES:
            raise ValueError(f"larger than {CONFIG_MAX_BYTES:,} bytes (is it the right file?)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise AutoRecordConfigError(f"{path}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise AutoRecordConfigError(f"{path}: not valid JSON: {exc}") from exc
    return parse_config(data, origin=str(path))


_config: AutoRecordConfig | None = None


def get_config() -> AutoRecordConfig:
    """The process's config, loaded and validated on first use, then kept."""
    global _config
    if _config is None:
        _config = load_config()
    return _config


def load_at_start() -> None:
    """on_start of the pricing handler: load and validate the config once, before the
    drainer's first claim. A config that cannot be loaded stops the drainer with the
    error; it never reaches an event (the handler only reads what is kept here)."""
    get_config()


@contextmanager
def override_config(config: AutoRecordConfig) -> Iterator[AutoRecordConfig]:
    """Use ``config`` inside the block (tests, one-off replays)."""
    global _config
    previous = _config
    _config = config
    try:
        yield config
    finally:
        _config = previous


class ResultLike(Protocol):
    source: str
    price: Decimal | None
    confidence: float | None


class Decision(NamedTuple):
    record: bool
    reason: str


def _is_number(value: object) -> bool:
    """A finite int, float or Decimal (not a bool, not NaN, not an infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def should_auto_record(result: ResultLike, config: AutoRecordConfig | None = None) -> Decision:
    """The criteria alone: may this result be recorded? ``(record, reason)``.

    The rules, in order; the first that applies decides:

    1. ``disabled``: the config says ``enabled: false``.
    2. ``source_not_allowed``: ``source`` is not one of ``allowed_sources`` (exact,
       case-sensitive).
    3. ``invalid_confidence``: ``confidence`` is not a number from 0 to 1: None, NaN,
       an infinity, below 0 or above 1 (NaN compares false with every number, so
       without this rule it would pass a ``< min_confidence`` test).
    4. ``low_confidence``: ``confidence`` is below ``min_confidence`` (the threshold
       itself passes).
    5. ``invalid_price``: ``price`` is not a number above 0: None, NaN, an infinity,
       0 or negative.
    6. ``eligible``: recorded.
    """
    config = config or get_config()
    if not config.enabled:
        return Decision(False, "disabled")
    if result.source not in config.allowed_sources:
        return Decision(False, "source_not_allowed")
    confidence = result.confidence
    if not _is_number(confidence) or not 0 <= confidence <= 1:  # type: ignore[operator]
        return Decision(False, "invalid_confidence")
    if confidence < config.min_confidence:  # type: ignore[operator]
        return Decision(False, "low_confidence")
    if not _is_number(result.price) or result.price <= 0:  # type: ignore[operator]
        return Decision(False, "invalid_price")
    return Decision(True, "eligible")


#: SQLSTATE of a CHECK constraint violation.
CHECK_VIOLATION = "23514"


@contextmanager
def _unusable_rows_explained(ids: Sequence[uuid.UUID | str]) -> Iterator[None]:
    """A row the handler cannot use fails its event with a message naming it.

    Rows written before pricing_crawlresult's CHECK constraints may hold what they
    refuse, and while the constraints are NOT VALID any update of such a row (its
    outcome) is refused. The drainer bisects a failing batch, so the error ends on
    the event of that row alone; PostgreSQL's DETAIL (the whole row) is left out.
    """
    which = f"CrawlResult {ids[0]}" if len(ids) == 1 else f"one of {len(ids)} CrawlResults"
    fix = "fix or delete the row, then retry its event (pricing_crawlresult's CHECK constraints refuse such values)"
    try:
        yield
    except DataError as exc:
        raise ValueError(f"{which} cannot be read: {str(exc).splitlines()[0]}; {fix}") from exc
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if getattr(exc.__cause__, "sqlstate", None) != CHECK_VIOLATION or diag is None:
            raise
        raise ValueError(
            f"{which} cannot be updated with its outcome: it holds a value that the constraint "
            f"{diag.constraint_name} refuses (written before it was added); {fix}"
        ) from exc


def record_batch(events: Sequence[Event]) -> BatchResult:
    """The outbox handler: one statement decides and writes the whole batch.

    The criteria of ``should_auto_record`` and the per-product rules (stale,
    unchanged price) run in SQL (``crawl_result_record_batch``), so a batch costs
    one round trip and no Python per result. Events whose result is gone, whose key
    is no CrawlResult id or whose row cannot be judged fail alone, with the reason.
    """
    config = get_config()
    with connection.cursor() as cursor, _unusable_rows_explained([e.key for e in events]):
        cursor.execute(
            queries.crawl_result_record_batch,
            {
                "event_ids": array_literal(e.id for e in events),
                "keys": text_array_literal(e.key for e in events),
                "enabled": config.enabled,
                "allowed_sources": sorted(config.allowed_sources),
                "min_confidence": config.min_confidence,
                "skip_unchanged_price": config.skip_unchanged_price,
            },
        )
        rows = cursor.fetchall()
    counts = {status: count for status, count, event_id, _ in rows if event_id is None}
    failed = {event_id: message for _, _, event_id, message in rows if event_id is not None}
    return BatchResult(
        outcomes={
            "recorded": counts.get("recorded", 0),
            "duplicates": counts.get("duplicate", 0),
            "skipped": counts.get("skipped", 0),
        },
        failed=failed,
    )


def mark_failed(events: Sequence[Event], reason: str) -> None:
    """on_failed: the outbox gave up on these events; mark their results failed."""
    ids = []
    for event in events:
        try:
            ids.append(uuid.UUID(event.key))
        except ValueError:
            continue  # no result can have this key; the event's last_error says why
    if not ids:
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor, _unusable_rows_explained(ids):
            cursor.execute(queries.crawl_result_mark_failed, {"ids": ids, "reason": reason})
    except ValueError as exc:  # the event's last_error says the rest
        logger.warning("not marked failed: %s", exc)
