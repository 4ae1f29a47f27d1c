"""The auto-record config: defaults, the env override, and an error naming key and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricing.auto_record import (
    DEFAULT_CONFIG_PATH,
    AutoRecordConfig,
    AutoRecordConfigError,
    load_config,
    parse_config,
)


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "auto_record.json"
    path.write_text(json.dumps(data))
    return path


def test_shipped_config_has_the_documented_defaults() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config == AutoRecordConfig(
        enabled=True, allowed_sources=frozenset({"html_ml"}), min_confidence=0.85, skip_unchanged_price=True
    )


def test_env_var_points_at_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"min_confidence": 0.5, "allowed_sources": ["html_ml", "api"]})
    monkeypatch.setenv("AUTO_RECORD_CONFIG", str(path))
    config = load_config()
    assert config.min_confidence == 0.5
    assert config.allowed_sources == {"html_ml", "api"}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"enabeld": True}, ["'enabeld'", "True"]),
        ({"enabled": "yes"}, ["'enabled'", "'yes'"]),
        ({"skip_unchanged_price": 1}, ["'skip_unchanged_price'", "1"]),
        ({"min_confidence": "high"}, ["'min_confidence'", "'high'"]),
        ({"min_confidence": 1.5}, ["'min_confidence'", "1.5"]),
        ({"min_confidence": -0.1}, ["'min_confidence'", "-0.1"]),
        ({"min_confidence": True}, ["'min_confidence'", "True"]),
        ({"allowed_sources": "html_ml"}, ["'allowed_sources'", "'html_ml'"]),
        ({"allowed_sources": []}, ["'allowed_sources'", "[]"]),
        ({"allowed_sources": ["html_ml", ""]}, ["'allowed_sources'", "''"]),
        ([1, 2], ["JSON object", "[1, 2]"]),
    ],
)
def test_bad_config_names_the_key_and_the_value(data: object, names: list[str]) -> None:
    with pytest.raises(AutoRecordConfigError) as excinfo:
        parse_config(data, origin="test.json")
    message = str(excinfo.value)
    for name in names:
        assert name in message, f"{name} missing from {message!r}"


def test_unreadable_and_invalid_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(AutoRecordConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(AutoRecordConfigError, match="broken.json: not valid JSON"):
        load_config(broken)


def test_bad_config_stops_manage_py_through_the_system_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    monkeypatch.setenv("AUTO_RECORD_CONFIG", str(write(tmp_path, {"min_confidence": 2})))
    with pytest.raises(SystemCheckError, match=r"pricing.E001.*'min_confidence' must be from 0 to 1, got 2"):
        call_command("check")
