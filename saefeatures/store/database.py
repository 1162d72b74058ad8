"""The DuckDB store: one file per workspace, migrated on open, written in bulk.

Every stage writes its results here inside one run (`Store.run`), and every
analysis reads from here. A stage holds its connection for the whole run, so
DuckDB's single-writer file lock guarantees that a run found `running` by a
later writer belongs to a process that died: it is marked `failed` on open.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from saefeatures import __version__
from saefeatures.config import project_data
from saefeatures.errors import SaefeaturesError, writable_folder
from saefeatures.store import hooks

_VERSION_HEADER = re.compile(r"^-- version (\d+):", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    version: int
    sql: str


def migrations() -> list[Migration]:
    """The `-- version N:` blocks of db/schema.sql, in order."""
    text = (project_data("db") / "schema.sql").read_text()
    headers = list(_VERSION_HEADER.finditer(text))
    blocks = []
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        blocks.append(Migration(int(header.group(1)), text[header.start() : end]))
    versions = [m.version for m in blocks]
    if versions != list(range(1, len(blocks) + 1)):
        raise RuntimeError(f"db/schema.sql versions must be 1..N in order, found {versions}")
    return blocks


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only and not path.exists():
        raise SaefeaturesError(
            f"database {path} does not exist; run a stage first (e.g. `saefeatures run`) "
            "or point --db / SAEFEATURES_DB at an existing file"
        )
    if not read_only:
        writable_folder(path.parent, "the database")
    # A read-only connection also refuses file access outside the database
    # (COPY TO, ATTACH, reading files), so `saefeatures sql` cannot write anything.
    config = {"enable_external_access": False} if read_only else {}
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise SaefeaturesError(
                f"database {path} is busy: another saefeatures process has it open for "
                "writing; wait for that stage to finish and retry"
            ) from None
        raise SaefeaturesError(f"cannot open database {path}: {_one_line(error)}") from None
    except duckdb.Error as error:
        raise SaefeaturesError(
            f"{path} is not a usable DuckDB database ({_one_line(error)}); "
            "pass another --db or move the file away"
        ) from None


class Store:
    """A migrated connection to the workspace database."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._in_transaction = False
        self.started_runs: list[str] = []  # every run this connection started, in order
        self._failures: dict[str, str] = {}  # runs to finish as failed, and why
        self.con = _connect(self.path, read_only)
        try:
            self._check_and_migrate()
        except BaseException:
            self.con.close()
            raise

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        exists = self._scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        )
        return self._scalar("SELECT coalesce(max(version), 0) FROM schema_version") if exists else 0

    def _scalar(self, sql: str) -> Any:
        return self.con.execute(sql).fetchall()[0][0]

    def _check_and_migrate(self) -> None:
        known = migrations()
        current = self.schema_version
        if current > len(known):
            raise SaefeaturesError(
                f"database {self.path} has schema version {current}, newer than this "
                f"saefeatures {__version__} knows ({len(known)}); upgrade saefeatures"
            )
        if self.read_only:
            return
        for migration in known[current:]:
            with self.transaction():
                self.con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version INTEGER PRIMARY KEY, applied TIMESTAMP, package_version VARCHAR)"
                )
                self.con.execute(migration.sql)
                self.con.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    [migration.version, _now(), __version__],
                )
        self._fail_orphaned_runs()

    def _fail_orphaned_runs(self) -> None:
        """Runs left `running` by a process that no longer holds the file are dead."""
        self.con.execute(
            "UPDATE runs SET status = 'failed', finished = ?, "
            "error = 'interrupted: the process ended before the run finished' "
            "WHERE status = 'running' AND NOT (host = ? AND pid = ?)",
            [_now(), socket.gethostname(), os.getpid()],
        )

    # -- writing ---------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: an exception (or Ctrl-C) inside rolls every write back.

        Inside another transaction (e.g. an atomic run's) it is part of that one: DuckDB
        has no nested transactions, and the outermost commits or rolls back the lot."""
        if self._in_transaction:
            yield
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self.con.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self.con.execute("COMMIT")

    def insert(self, table: str, rows: pa.Table | dict[str, Any]) -> int:
        """Bulk-insert columns (an Arrow table or a dict of equal-length columns) by name; a
        layer comes with its hook point (`hooks`)."""
        data = rows if isinstance(rows, pa.Table) else pa.table(rows)
        columns = hooks.selected(table, data.column_names)
        self.con.register("_incoming", data)
        try:
            self.con.execute(f'INSERT INTO "{table}" BY NAME SELECT {columns} FROM _incoming')
        finally:
            self.con.unregister("_incoming")
        return data.num_rows

    def replace(self, table: str, where: dict[str, Any], rows: pa.Table | dict[str, Any]) -> int:
        """Delete the rows matching `where` and insert `rows`, in one transaction."""
        return self.replace_all([(table, where, rows)])

    def replace_all(self, changes: list[tuple[str, dict[str, Any], pa.Table | dict | None]]) -> int:
        """Several (table, where, rows) replacements as one transaction: all land or none.
        Rows None only deletes."""
        inserted = 0
        with self.transaction():
            for table, where, rows in changes:
                clause = " AND ".join(f'"{column}" = ?' for column in where)
                self.con.execute(f'DELETE FROM "{table}" WHERE {clause}', list(where.values()))
                if rows is not None:
                    inserted += self.insert(table, rows)
        return inserted

    @contextmanager
    def run(self, command: str, config: dict[str, Any], atomic: bool = False) -> Iterator[str]:
        """Record a run: `running` now, then `ok` or `failed` with the error.

        An `atomic` run's writes land in one transaction with its `ok`, or none do: an
        error, Ctrl-C or a killed process leaves nothing but the run's row (`failed`, at the
        latest on the next open). Without `atomic`, writes commit as they are made: for
        runs that keep their finished steps on purpose (story batches, the job's stages).
        """
        run_id = uuid.uuid4().hex[:12]
        self.started_runs.append(run_id)
        self.con.execute(
            "INSERT INTO runs (run_id, command, config, package_version, git_revision, host, "
            "pid, started, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')",
            [
                run_id,
                command,
                json.dumps(_with_compute_facts(config), default=str, sort_keys=True),
                __version__,
                _git_revision(),
                socket.gethostname(),
                os.getpid(),
                _now(),
            ],
        )
        try:
            if atomic:
                with self.transaction():
                    yield run_id
                    self._finish(run_id, "ok", None)
            else:
                yield run_id
                error = self._failures.pop(run_id, None)
                self._finish(run_id, "failed" if error else "ok", error)
        except BaseException as error:
            self._finish(run_id, "failed", _one_line(error) or type(error).__name__)
            raise

    def fail_when_done(self, run_id: str, error: str) -> None:
        """Finish a (non-atomic) run as `failed` with `error` once its block ends: a job
        whose stages partly failed keeps what the others wrote."""
        self._failures[run_id] = error

    def _finish(self, run_id: str, status: str, error: str | None) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, finished = ?, error = ? WHERE run_id = ?",
            [status, _now(), error, run_id],
        )

    # -- reading ---------------------------------------------------------------

    def table_counts(self) -> list[tuple[str, int]]:
        """Rows per table (not per view: a view's count runs its whole query)."""
        names = [
            row[0]
            for row in self.con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name"
            ).fetchall()
        ]
        return [(name, self._scalar(f'SELECT count(*) FROM "{name}"')) for name in names]

    def register_model(self, run_id: str, described: dict[str, Any]) -> None:
        """Write (or refresh) a model's row in `models`: its depth and widths, which views
        and reports read."""
        row = {"run_id": run_id, **described}
        self.replace("models", {"model": described["model"]}, {k: [v] for k, v in row.items()})

    def tables_with_column(self, column: str) -> list[str]:
        return [
            row[0]
            for row in self.con.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'main' "
                "AND column_name = ? ORDER BY table_name",
                [column],
            ).fetchall()
        ]

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run one of the package's statements (parameters `?` from a list, `$name` from a
        dict) and return its result as Arrow. An error here is a bug, so DuckDB's exception
        propagates with its traceback."""
        relation = self.con.sql(sql, params=params)
        return relation.to_arrow_table() if relation is not None else pa.table({})

    def user_query(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run the user's statement (`saefeatures sql`, `sql` of the Python API) with its
        `$name` parameters: its errors are theirs to fix, so each becomes one line."""
        try:
            return self.query(sql, params)
        except duckdb.Error as error:
            if "read-only" in str(error).lower():
                raise SaefeaturesError(
                    f"the store is open read-only: it runs queries, not writes ({_one_line(error)})"
                ) from None
            raise SaefeaturesError(f"SQL error: {_one_line(error)}") from None


def _with_compute_facts(config: dict[str, Any]) -> dict[str, Any]:
    """A run that computes (its config has a dtype and a device) also records the dtype and
    device it used, whether the device computes bfloat16 natively, and torch's threads."""
    if "dtype" not in config or "device" not in config:
        return config
    from saefeatures import models  # loaded already by any stage that computes

    return {**config, **models.compute_facts(config["dtype"] or "auto", config["device"])}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
