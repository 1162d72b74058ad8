"""Feature dashboards against a direct computation on the planted alignment store, the
terminal view through the command line, and its bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from saefeatures.features import dashboard
from saefeatures.store.database import Store
from tests.alignment import test_align
from tests.alignment.test_align import PLANTED
from tests.conftest import assert_refused, run_cli_here
from tests.tiny import save_sae

aligned = test_align.aligned  # the store: vectors, a planted SAE, one alignment run


def _sae_id(db: Path) -> str:
    with Store(db, read_only=True) as store:
        return store.query("SELECT sae_id FROM features LIMIT 1")["sae_id"][0].as_py()


def _direct(db: Path, sae_id: str, feature: int, n: int) -> list[dict]:
    """The top passages by peak activation and the window around each peak, row by row."""
    with Store(db, read_only=True) as store:
        model = store.query("SELECT model FROM saes WHERE sae_id = ?", [sae_id])["model"][0]
        rows = store.query(
            "SELECT corpus, passage_id, position, value FROM feature_activations "
            "WHERE sae_id = ? AND feature = ?",
            [sae_id, feature],
        ).to_pylist()
        tokens = store.query(
            "SELECT corpus, passage_id, position, token FROM passage_tokens WHERE model = ?",
            [model.as_py()],
        ).to_pylist()
        labels = store.query("SELECT corpus, passage_id, emotion FROM passages").to_pylist()
    value = {(r["corpus"], r["passage_id"], r["position"]): r["value"] for r in rows}
    text = {(t["corpus"], t["passage_id"], t["position"]): t["token"] for t in tokens}
    emotion = {(p["corpus"], p["passage_id"]): p["emotion"] for p in labels}
    peaks: dict[tuple, tuple[float, int]] = {}
    for (corpus, passage, position), v in value.items():
        if (corpus, passage) not in peaks or v > peaks[(corpus, passage)][0]:
            peaks[(corpus, passage)] = (v, position)
    chosen = sorted(peaks, key=lambda key: (-peaks[key][0], key))[:n]
    examples = []
    for corpus, passage in chosen:
        peak = peaks[(corpus, passage)][1]
        window = [
            p
            for p in range(peak - dashboard.BEFORE, peak + dashboard.AFTER + 1)
            if (corpus, passage, p) in text
        ]
        examples.append(
            {
                "corpus": corpus,
                "passage_id": passage,
                "emotion": emotion.get((corpus, passage)),
                "start": window[0],
                "peak": window.index(peak),
                "tokens": [text[(corpus, passage, p)] for p in window],
                "values": [value.get((corpus, passage, p), 0.0) for p in window],
            }
        )
    return examples


@pytest.fixture(scope="module")
def sparse_db(aligned, tmp_path_factory) -> Path:
    """The planted store with the planted feature's activations at odd positions removed, as
    a sparse SAE would store them: its windows then hold tokens where it did not fire."""
    db = tmp_path_factory.mktemp("sparse") / "w.duckdb"
    shutil.copy(aligned["db"], db)
    with Store(db) as store:
        store.con.execute(
            "DELETE FROM feature_activations WHERE feature = ? AND position % 2 = 1", [PLANTED]
        )
    return db


@pytest.mark.parametrize("sparse", [False, True])
def test_examples_equal_a_direct_computation(aligned, sparse_db, sparse):
    db = sparse_db if sparse else aligned["db"]
    sae_id = _sae_id(db)
    with Store(db, read_only=True) as store:
        shown = dashboard.dashboard(store, sae_id, PLANTED, examples=6)
    direct = _direct(db, sae_id, PLANTED, 6)
    assert len(shown.examples) == len(direct) == 6
    for example, expected in zip(shown.examples, direct, strict=True):
        values = expected.pop("values")
        assert {k: getattr(example, k) for k in expected} == expected
        assert example.values == pytest.approx(values, rel=1e-6)
        assert example.max_value == pytest.approx(max(values), rel=1e-6)
    if sparse:  # the planted ReLU read-out fires on every real token, unless thinned
        assert any(v == 0 for e in shown.examples for v in e.values)


def test_statistics_histogram_and_lens_equal_the_store(aligned):
    db = aligned["db"]
    sae_id = _sae_id(db)
    with Store(db, read_only=True) as store:
        shown = dashboard.dashboard(store, sae_id, PLANTED)
        values = np.array(
            store.query(
                "SELECT value FROM feature_activations WHERE sae_id = ? AND feature = ?",
                [sae_id, PLANTED],
            )["value"].to_pylist()
        )
        row = store.query(
            "SELECT * FROM features WHERE sae_id = ? AND feature = ?", [sae_id, PLANTED]
        ).to_pylist()[0]
    counts, edges = np.histogram(
        values, bins=dashboard.BINS, range=(min(0, values.min()), values.max())
    )
    assert shown.histogram.counts == counts.tolist()
    assert shown.histogram.edges == pytest.approx(edges.tolist())
    assert shown.activations == len(values)
    assert (shown.density, shown.max_activation, shown.mean_active) == (
        row["density"],
        row["max_activation"],
        row["mean_active"],
    )
    assert shown.promoted == row["promoted_tokens"] and len(shown.promoted) == 10
    assert shown.suppressed == row["suppressed_tokens"]
    assert shown.promoted_logits == sorted(shown.promoted_logits, reverse=True)
    assert shown.suppressed_logits == sorted(shown.suppressed_logits)
    assert max(shown.suppressed_logits) < min(shown.promoted_logits)


def test_aligned_emotions_equal_the_alignment_tables(aligned):
    db = aligned["db"]
    sae_id = _sae_id(db)
    with Store(db, read_only=True) as store:
        shown = dashboard.dashboard(store, sae_id, PLANTED)
        ranked = store.query(
            "SELECT emotion, method, rank, score FROM alignments WHERE sae_id = ? AND feature = ?",
            [sae_id, PLANTED],
        ).to_pylist()
        summary = {
            (row["emotion"], row["metric"]): row["value"]
            for row in store.query(
                "SELECT emotion, metric, value FROM alignment_summary"
            ).to_pylist()
        }
    happy = shown.emotions[0]
    assert happy.emotion == "happy" and happy.ranks["decoder_cosine"] == 1
    assert happy.scores["decoder_cosine"] == pytest.approx(1.0, abs=1e-5)
    for emotion in shown.emotions:
        own = [r for r in ranked if r["emotion"] == emotion.emotion]
        assert emotion.scores == {r["method"]: r["score"] for r in own}
        assert emotion.ranks == {r["method"]: r["rank"] for r in own}
        chosen = summary[(emotion.emotion, "heldout_feature")] == PLANTED
        expected = summary[(emotion.emotion, "heldout_feature_auroc")] if chosen else None
        assert emotion.heldout_auroc == expected
    assert {e.emotion for e in shown.emotions} == {r["emotion"] for r in ranked}
    # the feature the held-out test chose for happy shows its AUROC and p
    chosen = int(summary[("happy", "heldout_feature")])
    with Store(db, read_only=True) as store:
        tested = dashboard.dashboard(store, sae_id, chosen).emotions
    happy = next(e for e in tested if e.emotion == "happy")
    assert happy.heldout_auroc == summary[("happy", "heldout_feature_auroc")] > 0.75
    assert happy.heldout_p == summary[("happy", "heldout_feature_auroc_p")]


def test_the_feature_command_prints_the_dashboard(aligned):
    sae_id = _sae_id(aligned["db"])
    result = run_cli_here("feature", sae_id, str(PLANTED), "--examples", "3", env=aligned["env"])
    assert result.code == 0, result.stderr
    out = result.stdout
    assert f"feature {PLANTED} of SAE {sae_id}" in out
    for fragment in ("top activations", "non-zero activations", "█", "happy", "promoted by"):
        assert fragment in out, fragment


def test_bad_input_is_one_line(aligned, tiny_llama_dir, tmp_path):
    env, db = aligned["env"], aligned["db"]
    sae_id = _sae_id(db)
    bare = save_sae(tmp_path / "bare", test_align.HOOK, 64)
    loaded = run_cli_here("load", "--path", str(bare), "--model", str(tiny_llama_dir), env=env)
    assert loaded.code == 0, loaded.stderr
    with Store(db, read_only=True) as store:
        bare_id = store.query(
            "SELECT sae_id FROM saes WHERE sae_id NOT IN (SELECT sae_id FROM features)"
        )["sae_id"][0].as_py()
    assert_refused(
        db,
        env,
        ("feature",),
        [
            (("nope", "1"), ("no SAE 'nope'", "saefeatures saes")),
            ((sae_id, "32"), ("feature 32 is out of range", "0 to 31")),
            ((bare_id, "1"), ("no feature statistics", "saefeatures align --layer 2")),
            ((sae_id, "1", "--examples", "0"), ("--examples",)),
        ],
    )
