"""A migration that installs an outbox trigger depends on outbox: written so, or refused.

``makemigrations`` adds the dependency itself (outbox/autodetector.py), and the system
check ``outbox.E020``, run by ``migrate``, refuses a migration (written by hand, or
before that) that lacks it. Both are shown on the stock app of tests/stockapp, with
its migrations swapped for a temporary package through MIGRATION_MODULES.
"""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from outbox.checks import check_trigger_migrations_depend_on_outbox
from tests.support import ROOT

# makemigrations checks the migration history of every database alias.
pytestmark = pytest.mark.django_db(databases=["default", "other"])


def migrations_package(base: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> str:
    """A fresh importable package holding ``files``; returns its dotted name."""
    name = f"outbox_test_migrations_{uuid.uuid4().hex[:8]}"
    package = base / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for filename, text in files.items():
        (package / filename).write_text(text)
    monkeypatch.syspath_prepend(str(base))
    return name


def test_makemigrations_makes_the_trigger_migration_depend_on_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIGRATION_MODULES = {"stockapp": migrations_package(tmp_path, monkeypatch, {})}
    out = io.StringIO()
    call_command("makemigrations", "stockapp", "--dry-run", verbosity=3, stdout=out)
    text = out.getvalue()
    assert "pgtrigger.migrations.AddTrigger" in text, text
    dependencies = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert re.search(r"\('outbox', '\d{4}_\w+'\)", dependencies), f"no dependency on outbox:\n{dependencies}"


def test_a_trigger_migration_without_the_dependency_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    assert check_trigger_migrations_depend_on_outbox() == []  # the project's own migrations are fine
    source = ROOT / "tests" / "stockapp" / "migrations"
    files = {path.name: path.read_text() for path in source.glob("0*.py")}
    files["0001_initial.py"] = files["0001_initial.py"].replace('("outbox", "0001_initial"),', "")
    settings.MIGRATION_MODULES = {"stockapp": migrations_package(tmp_path, monkeypatch, files)}
    errors = check_trigger_migrations_depend_on_outbox()
    assert {error.id for error in errors} == {"outbox.E020"}, errors
    assert any("stockapp.0001_initial installs an outbox trigger" in error.msg for error in errors), errors
    assert 'add ("outbox", "0001_initial") to the dependencies' in errors[0].hint
