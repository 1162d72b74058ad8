"""Does a change of code change any result? Build a store with the tiny models, then
compare two stores table by table.

`build DIR` runs, through the CLI and in float32, the steps that give every kind of
result (an SAE loaded, the main job on two layers, patching at every level on a chat
model with its own SAE, `compare`) into DIR/w.duckdb. The tiny models and SAEs are
made from fixed seeds, so two builds of the same code give the same rows.

`compare A B` prints each table whose rows differ between the two stores, with the
first differing row. The bookkeeping tables (runs, stages, schema versions) and the
columns that name a run or time it (ids, timestamps, durations, configs, content keys)
are left out; floats are equal within 1e-6. Exit code 1 when anything differs.

Build both into the same folder (model and SAE ids are digests of their paths), each
from a checkout of its revision (e.g. a `git worktree`) with `PYTHONPATH=<that
checkout>` so that its package is the one imported, and keep a copy of each store:

    python scripts/golden_store.py build /tmp/golden && cp /tmp/golden/w.duckdb before.duckdb
    rm -r /tmp/golden    # then, in the new checkout:
    python scripts/golden_store.py build /tmp/golden && cp /tmp/golden/w.duckdb after.duckdb
    python scripts/golden_store.py compare before.duckdb after.duckdb
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny import BAD, GOOD, save_sae, save_tiny, write_pairs

VOLATILE = {
    "run_id",
    "run_ids",
    "started",
    "finished",
    "seconds",
    "config",
    "key",
    "created",
    "path",
    "location",
    "error",
    "traceback",
    "version",
    "package_version",
}
BOOKKEEPING = {"runs", "stage_runs", "schema_version"}
TOLERANCE = 1e-6


def build(folder: Path) -> None:
    """The tiny-model steps that write every kind of result, in float32."""
    folder.mkdir(parents=True, exist_ok=True)
    llama = save_tiny("llama", folder / "tiny-llama")
    chat = save_tiny("llama", folder / "tiny-chat", chat=True)
    pairs = write_pairs(folder / "pairs.jsonl", [GOOD, BAD])
    torch.manual_seed(0)  # SAELens initialises the SAEs at random
    sae3 = save_sae(folder / "sae3", "blocks.3.hook_resid_post", 64)
    sae1 = save_sae(folder / "sae1", "blocks.1.hook_resid_post", 64)
    commands = [
        ("load", "--path", str(sae3), "--model", str(llama)),
        ("run", "--model", str(llama), "--layers", "1,3", "--dtype", "float32"),
        ("load", "--path", str(sae1), "--model", str(chat)),
        ("patch", "--model", str(chat), "--pairs", str(pairs), "--dtype", "float32"),
        ("compare",),
    ]
    env = {
        **os.environ,
        "SAEFEATURES_DB": str(folder / "w.duckdb"),
        "SAEFEATURES_OUT": str(folder / "out"),
    }
    for command in commands:
        print("$ saefeatures", " ".join(command), flush=True)
        subprocess.run([sys.executable, "-m", "saefeatures", *command], env=env, check=True)


def _canonical(value: Any) -> Any:
    """Floats rounded to the tolerance, containers recursively, for sorting and equality."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else round(value / TOLERANCE) * TOLERANCE
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return _canonical(json.loads(value))
        except ValueError:
            pass
    return value


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    columns = [row[0] for row in con.execute(f'DESCRIBE "{table}"').fetchall()]
    kept = [c for c in columns if c not in VOLATILE]
    quoted = ", ".join(f'"{c}"' for c in kept)
    rows = con.execute(f'SELECT {quoted} FROM "{table}"').fetchall()
    return sorted(json.dumps(_canonical(list(row)), default=str) for row in rows)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 2 * TOLERANCE
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def compare(before: Path, after: Path) -> int:
    """Print the tables whose rows differ; 1 if any do."""
    differ = 0
    with (
        duckdb.connect(str(before), read_only=True) as a,
        duckdb.connect(str(after), read_only=True) as b,
    ):
        tables_a = {row[0] for row in a.execute("SHOW TABLES").fetchall()}
        tables_b = {row[0] for row in b.execute("SHOW TABLES").fetchall()}
        for table in sorted(tables_a ^ tables_b):
            print(f"{table}: only in {'before' if table in tables_a else 'after'}")
            differ += 1
        for table in sorted((tables_a & tables_b) - BOOKKEEPING):
            rows_a, rows_b = _rows(a, table), _rows(b, table)
            pairs = zip(rows_a, rows_b, strict=False)
            bad = [(x, y) for x, y in pairs if not _close(json.loads(x), json.loads(y))]
            if len(rows_a) != len(rows_b) or bad:
                differ += 1
                print(f"{table}: {len(rows_a)} vs {len(rows_b)} rows, {len(bad)} differ")
                if bad:
                    print(f"  before {bad[0][0][:400]}\n  after  {bad[0][1][:400]}")
            else:
                print(f"{table}: {len(rows_a)} rows equal")
    print("equal" if not differ else f"{differ} tables differ")
    return 1 if differ else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build").add_argument("folder", type=Path)
    check = commands.add_parser("compare")
    check.add_argument("before", type=Path)
    check.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        build(args.folder)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
