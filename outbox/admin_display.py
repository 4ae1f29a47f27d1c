"""What every admin page of the project shows the same way: instants, and links to rows.

Instants are ISO 8601 in UTC with their age, on the outbox's pages and on any
domain app's that uses these helpers (pricing does): a list cell shows the age
(``5m ago``) and the instant on hover; a detail page shows both
(``2026-12-01T21:45:24.123Z (5m 3s ago)``). An operator comparing an admin page with
a log line or a SQL result (``now()`` in UTC) never converts a zone.

Links from an event to the row it is about come from the domain: an app registers
``admin_url(event) -> str | None`` for its topic in ``AppConfig.ready()``, so the
outbox links a CrawlResult without ever importing pricing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.utils import timezone
from django.utils.html import format_html

from outbox.services import format_age

#: topic -> (admin_url(event), what the row is): the admin page of the row an event is about.
_row_links: dict[str, tuple[Callable[[Any], str | None], str]] = {}


def iso_utc(value: dt.datetime, *, milliseconds: bool = False) -> str:
    """``2026-12-01T21:45:24Z`` (``.123Z`` with milliseconds)."""
    utc = value.astimezone(dt.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if milliseconds:
        text += f".{utc.microsecond // 1000:03d}"
    return text + "Z"


def relative(value: dt.datetime) -> str:
    """``5m 3s ago``, or ``in 12s`` for an instant ahead (a lease, a backoff)."""
    seconds = (timezone.now() - value).total_seconds()
    return f"{format_age(seconds)} ago" if seconds >= 0 else f"in {format_age(-seconds)}"


def when(value: dt.datetime | None) -> str:
    """A list cell: the age, with the ISO instant on hover (``<time>``)."""
    if value is None:
        return "-"
    iso = iso_utc(value)
    return format_html('<time datetime="{}" title="{} ({})">{}</time>', iso, iso, relative(value), relative(value))


def when_full(value: dt.datetime | None) -> str:
    """A detail page: the instant to the millisecond in UTC, and its age."""
    if value is None:
        return "-"
    return f"{iso_utc(value, milliseconds=True)} ({relative(value)})"


def register_admin_url(topic: str, admin_url: Callable[[Any], str | None], *, label: str = "row") -> None:
    """Link the events of ``topic`` to the admin page of their row (``admin_url(event)``),
    shown as ``label`` and the event's key (e.g. ``crawl result 0b5c...``)."""
    _row_links[topic] = (admin_url, label)


def row_admin_link(event: Any) -> tuple[str, str] | None:
    """(url, label) of the row ``event`` is about, if its topic registered a link."""
    registered = _row_links.get(event.topic)
    if registered is None:
        return None
    admin_url, label = registered
    url = admin_url(event)
    return (url, label) if url else None
