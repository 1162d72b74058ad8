"""Stage skipping by content hash, on a real store."""

from __future__ import annotations

import numpy as np
import pytest

from saefeatures import stages
from saefeatures.errors import SaefeaturesError
from saefeatures.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "w.duckdb") as opened:
        yield opened


class Counter:
    """Work that counts its calls and returns a summary with numpy values in it."""

    def __init__(self, summary=None):
        self.calls = 0
        self.summary = summary

    def __call__(self, *args):
        self.calls += 1
        return self.summary


def test_a_stage_runs_once_per_inputs_and_force_reruns_it(store):
    work = Counter({"r": np.float32(0.5), "layers": np.arange(2)})
    with store.run("run", {}) as run_id:
        first = stages.Stages(store, run_id)
        summary, key = first("geometry", "templates", {"seed": 0}, ["vectors-key"], work)
        assert summary == {"r": 0.5, "layers": [0, 1]} and work.calls == 1
        again, same_key = first("geometry", "templates", {"seed": 0}, ["vectors-key"], work)
        assert (again, same_key, work.calls) == (summary, key, 1)
        _, other = first("geometry", "templates", {"seed": 1}, ["vectors-key"], work)
        _, changed = first("geometry", "templates", {"seed": 0}, ["new-vectors-key"], work)
        assert work.calls == 3 and len({key, other, changed}) == 3
        forced = stages.Stages(store, run_id, frozenset({"geometry"}))
        forced("geometry", "templates", {"seed": 0}, ["vectors-key"], work)
        assert work.calls == 4
    statuses = store.query("SELECT status FROM stage_runs ORDER BY rowid")["status"]
    assert statuses.to_pylist() == ["ran", "skipped", "ran", "ran", "ran"]
    assert [t["status"] for t in first.timings] == ["ran", "skipped", "ran", "ran"]


def test_a_stage_without_a_summary_is_still_skipped(store):
    work = Counter(None)
    with store.run("run", {}) as run_id:
        stage = stages.Stages(store, run_id)
        for _ in range(2):
            assert stage("vectors", "templates", {}, ["corpus"], work)[0] is None
    assert work.calls == 1


def test_the_corpus_digest_follows_the_passages(store):
    def passages(text: str) -> dict:
        return {"run_id": ["r"], "corpus": ["c"], "passage_id": [0], "emotion": ["happy"],
                "topic": [None], "text": [text]}  # fmt: skip

    store.insert("passages", passages("a happy day"))
    before = stages.corpus_digest(store, "c")
    assert stages.corpus_digest(store, "c") == before
    store.replace("passages", {"corpus": "c"}, passages("a happy day!"))
    assert stages.corpus_digest(store, "c") != before
    assert stages.corpus_digest(store, "empty") != before


def test_force_names_known_stages():
    assert stages.check_force(["all"]) == frozenset(stages.NAMES)
    assert stages.check_force(["geometry", "patch"]) == {"geometry", "patch"}
    with pytest.raises(SaefeaturesError, match="unknown stage umap"):
        stages.check_force(["umap"])
