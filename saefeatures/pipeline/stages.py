"""Stages of the main job: skipped when done before on the same inputs, isolated when they fail.

A stage's key is a content hash of everything that determines its result: its name and
configuration, digests of the data it reads (a corpus's stored passages, the shipped
files it reads), the keys of the stages it builds on, and the package's source. A stage
whose key has a finished record in `stage_runs` is skipped, and its stored summary
returned, but only while the rows its runs wrote are all still in the store: a command
run by hand that replaced them makes the next job redo the stage. `--force` reruns named
stages regardless.

A stage that raises is recorded as `failed` (with its error, and the traceback in a log
file); every stage that needs its output is `blocked` and does not run; the others run.
Summaries are stored as JSON and always returned through JSON, so a skipped stage prints
exactly what the run that did the work printed.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from saefeatures import progress
from saefeatures.config import project_data
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store

_PACKAGE = Path(__file__).resolve().parents[1]
_BOOKKEEPING = ("runs", "stage_runs", "schema_version")  # tables every stage touches


@cache
def source_digest() -> str:
    """sha256 over the package's Python source: new code reruns every stage."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def shipped_digest(*names: str) -> str:
    """A digest of shipped data files (under corpora/, by name) that a stage reads."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update((project_data("corpora") / name).read_bytes())
    return f"shipped:{digest.hexdigest()}"


def content_key(stage: str, config: dict[str, Any], inputs: list[str]) -> str:
    """sha256 over the stage, its config, its input digests and the package's source."""
    text = json.dumps([stage, config, inputs, source_digest()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """What became of one stage: `ran`, `skipped` (done before), `failed` or `blocked`."""

    stage: str
    part: str
    model: str
    key: str
    status: str
    summary: Any = None
    error: str | None = None
    seconds: float = 0.0
    rows: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("ran", "skipped")

    @property
    def name(self) -> str:
        return f"{self.stage} ({self.part})" if self.part else self.stage


@dataclass
class Stages:
    """Runs the main job's stages for one `run`, recording each in `stage_runs`."""

    store: Store
    run_id: str
    force: frozenset[str] = frozenset()
    logs: Path | None = None  # where failed stages' tracebacks go
    model: str = ""  # whose stages run now
    outcomes: list[Outcome] = field(default_factory=list)

    def __call__(
        self,
        stage: str,
        part: str,
        config: dict[str, Any],
        inputs: list[str],
        work: Callable[..., Any],
        *args: Any,
        needs: Iterable[Outcome] = (),
    ) -> Outcome:
        """Run `work(*args)` unless it ran before on the same inputs (its rows intact) or a
        stage it `needs` did not succeed. `part` names the stage's instance."""
        key = content_key(stage, {"part": part, **config}, inputs)
        blocked = [outcome for outcome in needs if not outcome.ok]
        if blocked:
            why = f"needs {', '.join(o.name for o in blocked)}, which did not succeed"
            return self._record(Outcome(stage, part, self.model, key, "blocked", error=why))
        stored = None if stage in self.force else self._done_before(key)
        if stored is not None:
            outcome = Outcome(stage, part, self.model, key, "skipped", stored)
            return self._record(outcome)
        progress.say(f"▶ {stage} {part} [{self.model}]".rstrip())
        started, first_run = time.perf_counter(), len(self.store.started_runs)
        try:
            summary = _through_json(work(*args))
        except Exception as error:  # a failing stage must not take the others with it
            seconds = time.perf_counter() - started
            message = self._message(error, stage, part)
            outcome = Outcome(
                stage, part, self.model, key, "failed", error=message, seconds=seconds
            )
            return self._record(outcome)
        runs = self.store.started_runs[first_run:]
        written = self._written(runs)
        outcome = Outcome(
            stage,
            part,
            self.model,
            key,
            "ran",
            summary,
            seconds=time.perf_counter() - started,
            rows=sum(written.values()),
        )
        return self._record(outcome, runs, written)

    def always(
        self, stage: str, part: str, work: Callable[..., Any], *args: Any
    ) -> tuple[Outcome, Any]:
        """A step that runs every time (loading a model, the report): timed, its failure
        recorded like a stage's, not skipped; (its outcome, what `work` returned or None)."""
        started = time.perf_counter()
        try:
            result = work(*args)
        except Exception as error:
            message = self._message(error, stage, part)
            return self._record(
                Outcome(
                    stage,
                    part,
                    self.model,
                    "",
                    "failed",
                    error=message,
                    seconds=time.perf_counter() - started,
                )
            ), None
        seconds = time.perf_counter() - started
        outcome = Outcome(stage, part, self.model, "", "ran", seconds=seconds)
        self.outcomes.append(outcome)
        progress.say(_line(outcome))
        return outcome, result

    @property
    def failed(self) -> list[Outcome]:
        return with_status(self.outcomes, "failed")

    @property
    def blocked(self) -> list[Outcome]:
        return with_status(self.outcomes, "blocked")

    # -- bookkeeping -------------------------------------------------------------------

    def _record(
        self, outcome: Outcome, runs: list[str] | None = None, written: dict[str, int] | None = None
    ) -> Outcome:
        row = {
            "run_id": self.run_id,
            "stage": outcome.stage,
            "part": outcome.part,
            "key": outcome.key,
            "status": outcome.status,
            "seconds": outcome.seconds,
            "summary": json.dumps(outcome.summary),
            "error": outcome.error,
            "model": outcome.model,
            "runs": runs or [],
            "written": json.dumps(written or {}),
        }
        self.store.insert("stage_runs", {name: [value] for name, value in row.items()})
        self.outcomes.append(outcome)
        progress.say(_line(outcome))
        return outcome

    def _done_before(self, key: str) -> Any | None:
        """The summary of the last time this key ran, if every row it wrote is still
        there (a stage with no summary gives {}); None if it must run."""
        found = self.store.query(
            "SELECT summary, runs, written FROM stage_runs WHERE key = ? AND status = 'ran' "
            "ORDER BY finished DESC LIMIT 1",
            [key],
        ).to_pylist()
        if not found:
            return None
        last = found[0]
        if self._written(last["runs"] or []) != json.loads(last["written"] or "{}"):
            return None
        summary = json.loads(last["summary"])
        return {} if summary is None else summary

    def _written(self, runs: list[str]) -> dict[str, int]:
        """Rows the given runs wrote, per table that holds any."""
        if not runs:
            return {}
        counts = {}
        for table in self.store.tables_with_column("run_id"):
            if table in _BOOKKEEPING:
                continue
            n = self.store.query(
                f'SELECT count(*) AS n FROM "{table}" WHERE list_contains(?, run_id)', [runs]
            )["n"][0].as_py()
            if n:
                counts[table] = n
        return counts

    def _message(self, error: Exception, stage: str, part: str) -> str:
        """One line for a failure: a user error as it is, anything else with its type and
        where its traceback was written."""
        text = " ".join(str(error).split())
        if isinstance(error, SaefeaturesError):
            return text
        return f"{type(error).__name__}: {text}{self._log_traceback(stage, part)}"

    def _log_traceback(self, stage: str, part: str) -> str:
        """Write the current traceback to a log file; say where."""
        if self.logs is None:
            return ""
        self.logs.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{stage}-{part}")
        path = self.logs / f"{self.run_id}-{safe}.log"
        path.write_text(traceback.format_exc())
        return f" (traceback in {path})"


def with_status(outcomes: list[Outcome], status: str) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome.status == status]


def _line(outcome: Outcome) -> str:
    """The line the log keeps for a stage."""
    name = f"{outcome.stage} {outcome.part} [{outcome.model}]".replace("  ", " ")
    if outcome.status == "ran":
        return f"✓ {name}: {outcome.seconds:.1f} s, {outcome.rows:,} rows written"
    if outcome.status == "skipped":
        return f"· {name}: done before on the same inputs, skipped"
    if outcome.status == "blocked":
        return f"- {name}: not run, {outcome.error}"
    return f"✗ {name} failed after {outcome.seconds:.1f} s: {outcome.error}"


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
