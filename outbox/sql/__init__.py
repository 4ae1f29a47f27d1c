"""A tiny loader for files of named SQL blocks.

A block starts at a line ``-- name: some_name`` and runs to the next such line.
The comment lines right after the name are the block's documentation. Values are
always passed as ``%(name)s`` parameters; nothing is ever formatted into the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

_NAME_RE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


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
            self._blocks[name] = body.strip().rstrip(";")

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
