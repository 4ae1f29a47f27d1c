"""The README teaches what the repository does: its snippets and commands must stay true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
_BLOCK_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def snippets() -> list[tuple[str, list[str]]]:
    """Python blocks whose first line names their source: ``# tests/stockapp/models.py``."""
    found = []
    for body in _BLOCK_RE.findall(README):
        first, *lines = body.splitlines()
        if first.startswith("# ") and first[2:].endswith(".py"):
            found.append((first[2:], lines))
    return found


def test_readme_topic_example_is_the_tested_code() -> None:
    found = snippets()
    assert {path for path, _ in found} >= {
        "tests/stockapp/models.py",
        "tests/stockapp/handlers.py",
        "tests/stockapp/apps.py",
    }
    for path, lines in found:
        source = (ROOT / path).read_text(encoding="utf-8").splitlines()
        # Every line of the snippet appears in the file, in order (a snippet may skip lines).
        position = 0
        for line in (line.rstrip() for line in lines):
            if not line:
                continue
            try:
                position = source.index(line, position) + 1
            except ValueError:
                raise AssertionError(f"README snippet line not found in {path} (in order): {line!r}") from None


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    named = set(re.findall(r"`make ([a-z-]+)`", README))
    assert named == {"install", "demo", "test", "lint", "bench"}
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_the_two_commands_are_the_first_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "pip install -r requirements.txt && python manage.py outbox_demo" in first_block
    assert "python -m pytest" in first_block
