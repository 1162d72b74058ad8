"""Stages of the main job: skipped when already done on the same inputs, timed always.

A stage's key is a content hash of everything that determines its result: its name,
its configuration, digests of the data it reads (e.g. a corpus's passages), the keys of
the stages it builds on, and the package version. A stage whose key has a finished
record in `stage_runs` is skipped and its stored summary returned; `--force` reruns
named stages (and, through the keys, nothing else: stages downstream of a rerun stage
rerun only if its inputs changed what they read).

Summaries are stored as JSON and always returned through JSON, so a skipped stage
prints exactly what the run that did the work printed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saefeatures import __version__
from saefeatures.errors import SaefeaturesError
from saefeatures.store import Store

NAMES = ("stories", "vectors", "geometry", "train", "align", "steer", "patch", "validate",
         "compare")  # fmt: skip


def check_force(names: list[str]) -> frozenset[str]:
    """The stages `--force` names (`all` for every one), or one clear error."""
    chosen = set(names)
    if "all" in chosen:
        return frozenset(NAMES)
    unknown = sorted(chosen - set(NAMES))
    if unknown:
        raise SaefeaturesError(
            f"unknown stage {', '.join(unknown)} for --force; use {', '.join(NAMES)} or all"
        )
    return frozenset(chosen)


def content_key(stage: str, config: dict[str, Any], inputs: list[str]) -> str:
    """sha256 over the stage, its config, its input digests and the package version."""
    text = json.dumps([stage, config, inputs, __version__], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def corpus_digest(store: Store, corpus: str) -> str:
    """A digest of a corpus's passages as stored (text, emotion, topic, in order)."""
    value = store.query(
        "SELECT md5(coalesce(string_agg(concat_ws(chr(31), passage_id, emotion, topic, text), "
        "chr(30) ORDER BY passage_id), '')) AS digest FROM passages WHERE corpus = ?",
        [corpus],
    )["digest"][0].as_py()
    return f"{corpus}:{value}"


@dataclass
class Stages:
    """Runs the main job's stages for one `run`, recording each in `stage_runs`."""

    store: Store
    run_id: str
    force: frozenset[str] = frozenset()
    model: str = ""  # whose stages run now, for the timing table
    timings: list[dict[str, Any]] = field(default_factory=list)

    def __call__(
        self, stage: str, part: str, config: dict[str, Any], inputs: list[str],
        work: Callable[..., Any], *args: Any,
    ) -> tuple[Any, str]:  # fmt: skip
        """(summary, key) of one stage: `work(*args)`, unless it already ran on the same
        inputs. `part` names the stage's instance, e.g. its corpus."""
        key = content_key(stage, {"part": part, **config}, inputs)
        started = time.perf_counter()
        stored = [] if stage in self.force else self._summary(key)
        summary = stored[0] if stored else _through_json(work(*args))
        status = "skipped" if stored else "ran"
        seconds = time.perf_counter() - started
        row = {"run_id": self.run_id, "stage": stage, "part": part, "key": key,
               "status": status, "seconds": seconds, "summary": json.dumps(summary)}  # fmt: skip
        self.store.insert("stage_runs", {name: [value] for name, value in row.items()})
        self.timings.append({"model": self.model, "stage": stage, "part": part,
                             "status": status, "seconds": seconds})  # fmt: skip
        return summary, key

    def timed(self, stage: str, part: str, work: Callable[..., Any], *args: Any) -> Any:
        """A step that always runs (e.g. the report): timed, not recorded in the store."""
        started = time.perf_counter()
        result = work(*args)
        self.timings.append({"model": self.model, "stage": stage, "part": part, "status": "ran",
                             "seconds": time.perf_counter() - started})  # fmt: skip
        return result

    def _summary(self, key: str) -> list[Any]:
        """[the summary] of the last time this key ran, or [] if it never did."""
        found = self.store.query(
            "SELECT summary FROM stage_runs WHERE key = ? AND status = 'ran' "
            "ORDER BY finished DESC LIMIT 1",
            [key],
        )
        return [json.loads(found["summary"][0].as_py())] if found.num_rows else []


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
