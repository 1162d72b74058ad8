"""The example queries shipped in db/queries: find them by name, read their description.

`saefeatures sql` takes SQL text, a path to a .sql file, or the name of a shipped query,
so the README's examples run as `saefeatures sql top_features_per_emotion`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from saefeatures.config import project_data
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store


def shipped() -> dict[str, Path]:
    return {path.stem: path for path in sorted((project_data("db") / "queries").glob("*.sql"))}


def description(path: Path) -> str:
    """The query's leading comment block, joined into one line."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line.removeprefix("--").strip())
    return " ".join(lines)


def resolve(text: str) -> str:
    """SQL to run for `text`: a shipped query's name, a .sql file, or SQL itself."""
    named = shipped().get(text.strip())
    if named is not None:
        return named.read_text()
    if text.strip().endswith(".sql") and "\n" not in text:
        path = Path(text.strip()).expanduser()
        if not path.is_file():
            raise SaefeaturesError(
                f"no SQL file {path}; shipped queries are: {', '.join(shipped())}"
            )
        return path.read_text()
    return text


def run(store: Store, text: str, params: dict[str, Any] | None = None) -> pa.Table:
    """The user's query (`text` as `resolve` reads it) with its `$name` parameters: what
    `saefeatures sql` prints and the Python API's `sql` returns."""
    return store.user_query(resolve(text), params)
