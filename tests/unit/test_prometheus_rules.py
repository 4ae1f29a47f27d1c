"""docs/prometheus-rules.yml and docs/grafana-outbox.json: well formed, and every metric
they use is one docs/metrics.md documents.

(tests/process/test_metrics_endpoints.py checks those names against what the two
endpoints really export.) When ``promtool`` is installed (Debian: ``apt-get install
prometheus``) it checks the file too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "docs" / "prometheus-rules.yml"
DOC = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "docs" / "grafana-outbox.json"

_KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_info")


def _rules() -> list[dict[str, object]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, keywords or labels)."""
    text = re.sub(r'"[^"]*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?", text):
        token = match.group(0)
        if match.group(1) or token in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]?", token):
            continue
        names.add(token)
    return names


def metric_names_in_rules() -> set[str]:
    names: set[str] = set()
    for rule in _rules():
        names |= metric_names(str(rule["expr"]))
        for text in dict(rule.get("annotations", {})).values():  # type: ignore[arg-type]
            for query in re.findall(r'query\s+"([^"]+)"', str(text)):
                names |= metric_names(query)
    return names


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in data["panels"] for target in panel.get("targets", [])]


def metric_names_in_dashboard() -> set[str]:
    return set().union(*(metric_names(expr) for expr in dashboard_exprs()))


def documented_names() -> set[str]:
    base = re.findall(r"^\| `([a-z_]+)` \| (?:gauge|counter|histogram|info) \|", DOC.read_text(), re.MULTILINE)
    return {name.removesuffix("_total") + suffix for name in base for suffix in _SUFFIXES}


def test_every_rule_is_an_alert_with_an_expression_a_duration_and_a_summary() -> None:
    rules = _rules()
    assert len(rules) >= 8
    for rule in rules:
        assert re.fullmatch(r"Outbox[A-Za-z]+", str(rule["alert"])), rule
        assert rule["expr"] and re.fullmatch(r"\d+[smh]", str(rule["for"])), rule
        assert rule["annotations"]["summary"], rule  # type: ignore[index]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule  # type: ignore[index]


def test_the_rules_use_only_documented_metrics() -> None:
    used = metric_names_in_rules()
    assert {"outbox_lag_seconds", "outbox_events_unhandled", "outbox_events_processed_total"} <= used, used
    unknown = used - documented_names()
    assert not unknown, f"docs/prometheus-rules.yml uses metrics docs/metrics.md does not list: {sorted(unknown)}"


def test_the_alerts_table_of_the_docs_matches_the_rules() -> None:
    table = set(re.findall(r"^\| `(Outbox[A-Za-z]+)` \|", DOC.read_text(), re.MULTILINE))
    assert table == {str(rule["alert"]) for rule in _rules()}


def test_promtool_accepts_the_rules_when_it_is_installed() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # The parse above is the check on a machine without it; CI installs it (.ci/run).
        assert not os.environ.get("CI"), "promtool is missing on CI: .ci/run installs Debian's prometheus package"
        return
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_uses_only_documented_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used = metric_names_in_dashboard()
    unknown = used - documented_names()
    assert not unknown, f"docs/grafana-outbox.json uses metrics docs/metrics.md does not list: {sorted(unknown)}"
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
