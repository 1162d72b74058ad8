"""The example queries shipped in db/queries: find them by name, read their description,
and bind their `$name` parameters.

`saefeatures sql` takes SQL text, a path to a .sql file, or the name of a shipped query,
so the README's examples run as `saefeatures sql top_features_per_emotion`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from saefeatures.config import project_data
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store

_PARAM = re.compile(r"([A-Za-z_]\w*)=(.*)", re.DOTALL)


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


def parse_params(given: list[str]) -> dict[str, str]:
    """`--param NAME=VALUE` options as the values of the query's `$NAME`, each as text
    (DuckDB casts it where the query compares it with a number)."""
    bound: dict[str, str] = {}
    for item in given:
        match = _PARAM.fullmatch(item)
        if match is None:
            raise SaefeaturesError(
                f"cannot read --param {item!r}: give NAME=VALUE, e.g. --param emotion=happy"
            )
        if match[1] in bound:
            raise SaefeaturesError(f"--param {match[1]} is given twice; give each name once")
        bound[match[1]] = match[2]
    return bound


def run(store: Store, text: str, params: dict[str, Any] | None = None) -> pa.Table:
    """The user's query (`text` as `resolve` reads it) with its `$name` parameters: what
    `saefeatures sql` prints and the Python API's `sql` returns."""
    return store.user_query(resolve(text), params)


def check_params(store: Store, sql: str, params: dict[str, Any]) -> None:
    """Every `$name` of the query has a `--param` and every `--param` a `$name`; SQL that
    does not parse is left for the query to report."""
    try:
        statements = store.con.extract_statements(sql)
    except duckdb.Error:
        return
    needed = {name for statement in statements for name in statement.named_parameters}
    missing = sorted(needed - set(params))
    if missing:
        raise SaefeaturesError(
            f"the query needs a value for {', '.join('$' + n for n in missing)}: give "
            + " ".join(f"--param {n}=VALUE" for n in missing)
        )
    unused = sorted(set(params) - needed)
    if unused:
        takes = ", ".join("$" + n for n in sorted(needed)) or "none"
        raise SaefeaturesError(
            f"the query has no parameter {', '.join('$' + n for n in unused)} "
            f"(its parameters: {takes}); drop --param {unused[0]}"
        )
