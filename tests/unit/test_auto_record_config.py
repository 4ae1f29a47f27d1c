"""The auto-record config: defaults, the env override, and an error naming key and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricing.auto_record import (
    CONFIG_MAX_BYTES,
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


@pytest.mark.parametrize("source", ["html_ml ", " html_ml", "html_ml\t"])
def test_a_source_with_surrounding_spaces_is_an_error(source: str) -> None:
    # Sources are matched exactly: "html_ml " used to skip every result, silently.
    with pytest.raises(AutoRecordConfigError, match="must not start or end with spaces") as excinfo:
        parse_config({"allowed_sources": [source]}, origin="test.json")
    assert repr(source) in str(excinfo.value)


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "twice.json"
    path.write_text('{"min_confidence": 0.9, "min_confidence": 0.1}')
    with pytest.raises(AutoRecordConfigError, match="twice.json: not valid JSON: key 'min_confidence' appears twice"):
        load_config(path)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"enabled": true, "allowed_sources": ["html_\xff"]}', "not UTF-8 text (byte 0xff at offset 44)"),
        (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
        (b" " * (CONFIG_MAX_BYTES + 1), f"larger than {CONFIG_MAX_BYTES:,} bytes"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\x00\x00\x00", "Expecting value"),
    ],
)
def test_what_is_not_a_json_config_gets_the_invalid_json_error(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(AutoRecordConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value).startswith(f"{path}: not valid JSON: "), excinfo.value
    assert says in str(excinfo.value)


def test_dev_zero_is_refused_at_the_size_limit_not_read_forever() -> None:
    with pytest.raises(AutoRecordConfigError, match=r"/dev/zero: not valid JSON: larger than 1,048,576 bytes"):
        load_config(Path("/dev/zero"))


def test_the_handler_loads_its_config_at_start_and_names_the_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outbox.exceptions import HandlerStartFailed
    from outbox.handlers import registry
    from pricing import auto_record
    from pricing.models import CRAWL_RESULT_CREATED

    registration = registry.get(CRAWL_RESULT_CREATED)
    assert registration is not None and registration.on_start is auto_record.load_at_start
    monkeypatch.setattr(auto_record, "_config", None)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    monkeypatch.setenv("AUTO_RECORD_CONFIG", str(broken))
    with pytest.raises(HandlerStartFailed) as excinfo:
        registry.start([CRAWL_RESULT_CREATED])
    expected = f"the handler of {CRAWL_RESULT_CREATED} cannot start: {broken}: not valid JSON"
    assert str(excinfo.value).startswith(expected), excinfo.value
    registry.start(["some.other.topic"])  # only the drained topics' handlers start
