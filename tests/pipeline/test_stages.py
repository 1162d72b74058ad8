"""The main job's stages on a real store: skipping by content hash, rows that must still be
there, failures that stay in their stage."""

from __future__ import annotations

import numpy as np
import pytest

from saefeatures.errors import SaefeaturesError
from saefeatures.pipeline import stages
from saefeatures.store import read
from saefeatures.store.database import Store


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
        done = first("geometry", "templates", {"seed": 0}, ["vectors-key"], work)
        assert done.summary == {"r": 0.5, "layers": [0, 1]} and work.calls == 1
        again = first("geometry", "templates", {"seed": 0}, ["vectors-key"], work)
        assert (again.summary, again.key, again.status) == (done.summary, done.key, "skipped")
        other = first("geometry", "templates", {"seed": 1}, ["vectors-key"], work)
        changed = first("geometry", "templates", {"seed": 0}, ["new-vectors-key"], work)
        assert work.calls == 3 and len({done.key, other.key, changed.key}) == 3
        forced = stages.Stages(store, run_id, frozenset({"geometry"}))
        forced("geometry", "templates", {"seed": 0}, ["vectors-key"], work)
        assert work.calls == 4
    statuses = store.query("SELECT status FROM stage_runs ORDER BY rowid")["status"]
    assert statuses.to_pylist() == ["ran", "skipped", "ran", "ran", "ran"]
    assert [o.status for o in first.outcomes] == ["ran", "skipped", "ran", "ran"]


def test_a_stage_without_a_summary_is_still_skipped(store):
    work = Counter(None)
    with store.run("run", {}) as run_id:
        stage = stages.Stages(store, run_id)
        assert stage("vectors", "templates", {}, ["corpus"], work).status == "ran"
        assert stage("vectors", "templates", {}, ["corpus"], work).status == "skipped"
    assert work.calls == 1


def test_new_source_reruns_a_stage(store, monkeypatch):
    work = Counter({})
    with store.run("run", {}) as run_id:
        stage = stages.Stages(store, run_id)
        stage("vectors", "templates", {}, ["corpus"], work)
        monkeypatch.setattr(stages, "source_digest", lambda: "other source")
        assert stage("vectors", "templates", {}, ["corpus"], work).status == "ran"
    assert work.calls == 2


def _write_vectors(store: Store, run_name: str) -> None:
    """A stand-in stage: one run that writes two rows of `left_out`."""
    with store.run(run_name, {}) as run_id:
        rows = {
            "run_id": [run_id] * 2,
            "stage": ["vectors"] * 2,
            "model": ["m"] * 2,
            "corpus": ["c"] * 2,
            "emotion": ["bored", "calm"],
            "n_passages": [0, 1],
            "reason": ["few"] * 2,
        }
        store.replace("left_out", {"corpus": "c"}, rows)


def test_a_stage_whose_rows_were_replaced_runs_again(store):
    """A command run by hand that replaced a stage's rows makes the job redo the stage,
    instead of printing a summary of rows that are gone."""
    with store.run("run", {}) as run_id:
        stage = stages.Stages(store, run_id)
        first = stage("vectors", "c", {}, ["corpus"], _write_vectors, store, "vectors")
        assert (first.status, first.rows) == ("ran", 2)
        assert stage("vectors", "c", {}, ["corpus"], _write_vectors, store, "vectors").status == (
            "skipped"
        )
        _write_vectors(store, "vectors by hand")  # same table, same rows, another run
        again = stage("vectors", "c", {}, ["corpus"], _write_vectors, store, "vectors")
        assert again.status == "ran"
    written = store.query("SELECT written FROM stage_runs WHERE status = 'ran' ORDER BY rowid")
    assert written["written"].to_pylist() == ['{"left_out": 2}'] * 2


def _fail() -> None:
    raise RuntimeError("a bug in the stage")


def test_a_failing_stage_blocks_only_what_needs_it(store, tmp_path):
    work = Counter({"ok": True})
    with store.run("run", {}) as run_id:
        stage = stages.Stages(store, run_id, logs=tmp_path / "logs")
        failed = stage("steer", "layer 1", {}, [], _fail)
        blocked = stage("validate", "retrieval", {}, [], work, needs=[failed])
        independent = stage("patch", "m", {}, [], work)
        refused = stage(
            "geometry",
            "c",
            {},
            [],
            lambda: (_ for _ in ()).throw(SaefeaturesError("no ratings for: bored")),
        )
    assert (failed.status, blocked.status, independent.status) == ("failed", "blocked", "ran")
    assert work.calls == 1
    assert failed.error.startswith("RuntimeError: a bug in the stage (traceback in ")
    log = next((tmp_path / "logs").iterdir())
    assert "a bug in the stage" in log.read_text() and "Traceback" in log.read_text()
    assert refused.error == "no ratings for: bored"  # a user error as it is, no log
    assert "needs steer (layer 1)" in blocked.error
    rows = store.query("SELECT stage, status, error FROM stage_runs ORDER BY rowid").to_pylist()
    assert [row["status"] for row in rows] == ["failed", "blocked", "ran", "failed"]
    assert stage.failed == [failed, refused] and stage.blocked == [blocked]
    with store.run("run", {}) as run_id:  # a rerun retries the failed stage only
        rerun = stages.Stages(store, run_id)
        assert rerun("patch", "m", {}, [], work).status == "skipped"
        assert rerun("steer", "layer 1", {}, [], work).status == "ran"


def test_the_corpus_digest_follows_the_passages(store):
    def passages(text: str) -> dict:
        return {
            "run_id": ["r"],
            "corpus": ["c"],
            "passage_id": [0],
            "emotion": ["happy"],
            "topic": [None],
            "text": [text],
        }

    store.insert("passages", passages("a happy day"))
    before = read.corpus_digest(store, "c")
    assert read.corpus_digest(store, "c") == before
    store.replace("passages", {"corpus": "c"}, passages("a happy day!"))
    assert read.corpus_digest(store, "c") != before
    assert read.corpus_digest(store, "empty") != before


def test_shipped_files_are_digested_by_content():
    assert stages.shipped_digest("quantity.jsonl") == stages.shipped_digest("quantity.jsonl")
    assert stages.shipped_digest("quantity.jsonl") != stages.shipped_digest("activities.csv")
