"""Contrast vectors: padding-invariant pooling, contrast and denoising maths, the stage via CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saefeatures import models, stats
from saefeatures.store.database import Store
from saefeatures.vectors import extraction
from tests.conftest import assert_user_error, run_cli

TEXTS = [
    "A short passage about a quiet morning by the lake.",
    "The letter arrived late in the afternoon, and she read it standing at the door, twice.",
    "He laughed.",
    "Rain again; the bus was late, the coffee was cold, and the meeting ran long past noon.",
]


def _pool(model, texts, offset, batch_size, side):
    model.tokenizer.padding_side = side
    try:
        return extraction.pool_passages(model, texts, [0, 2, 3], offset, batch_size=batch_size)
    finally:
        model.tokenizer.padding_side = "right"


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_is_the_same_alone_or_in_any_batch(tiny_llama_dir, side):
    model = models.load(str(tiny_llama_dir))
    alone = np.stack([_pool(model, [text], 3, 1, "right").means[0] for text in TEXTS])
    batched = _pool(model, TEXTS, 3, 4, side)
    assert batched.kept == [0, 1, 2, 3]
    np.testing.assert_allclose(batched.means, alone, atol=1e-5)


def test_pooling_weights_start_at_the_offset_within_each_passage():
    right = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert extraction.pooling_weights(right, 2).tolist() == [[0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    assert extraction.pooling_weights(left, 2).tolist() == [[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]


def test_short_passages_are_excluded_and_counted(tiny_llama_dir):
    model = models.load(str(tiny_llama_dir))
    pooled = extraction.pool_passages(model, TEXTS, [1], offset=20)
    assert 2 not in pooled.kept and pooled.n_short == 1


def test_contrast_vectors_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(5, 2, 3))
    labels = ["a", "b", "a", "c", "b"]
    got = extraction.contrast_vectors(means, labels, ["a", "b", "c"])
    per = np.stack([(means[0] + means[2]) / 2, (means[1] + means[4]) / 2, means[3]])
    np.testing.assert_allclose(got, per - per.mean(axis=0))
    np.testing.assert_allclose(got.sum(axis=0), 0, atol=1e-12)


def test_denoising_removes_the_neutral_span():
    rng = np.random.default_rng(1)
    neutral = rng.normal(size=(40, 1, 8)) * np.array([10, 5, 1, 1, 1, 1, 1, 1])
    bases = extraction.neutral_components(neutral, 0.5)
    assert 1 <= len(bases[0]) < 8
    raw = rng.normal(size=(4, 1, 8))
    cleaned = extraction.denoise(raw, bases)
    np.testing.assert_allclose(cleaned[:, 0] @ bases[0].T, 0, atol=1e-10)
    assert not np.allclose(cleaned, raw)


@pytest.mark.embedded
def test_bfloat16_vectors_agree_with_float32(smollm):
    texts = [
        "She opened the envelope and screamed with delight; she had won the scholarship.",
        "He sat alone in the empty kitchen, staring at the cold tea, missing her terribly.",
        "The dog growled at the stranger, and the stranger backed slowly toward the gate.",
        "They cheered and hugged each other as the final whistle blew on a perfect season.",
    ]
    labels = ["happy", "sad", "afraid", "happy"]
    layers = list(range(smollm.n_layers))
    bf16 = models.load(smollm.name, dtype="bfloat16")
    got = {}
    for name, model in (("float32", smollm), ("bfloat16", bf16)):
        pooled = extraction.pool_passages(model, texts, layers, offset=2)
        got[name] = extraction.contrast_vectors(pooled.means, labels, ["happy", "sad", "afraid"])
    for layer in layers:
        for e in range(3):
            cosine = stats.cosine_matrix(
                np.stack([got["float32"][e, layer], got["bfloat16"][e, layer]])
            )
            assert cosine[0, 1] >= 0.99, (layer, e, cosine[0, 1])


def test_vectors_and_geometry_through_the_cli(tmp_path, tiny_llama_dir):
    db, out = tmp_path / "w.duckdb", tmp_path / "out"
    common = ["--model", str(tiny_llama_dir), "--db", str(db)]
    emotions = ["--emotions", "happy,sad,angry,calm,afraid"]
    made = run_cli("vectors", *common, *emotions, "--offset", "5")
    assert made.code == 0, made.stderr
    geo = run_cli("geometry", *common, "--out", str(out), "--resamples", "200")
    assert geo.code == 0, geo.stderr
    assert "best layer" in geo.stdout
    with Store(db, read_only=True) as store:
        counts = store.query(
            "SELECT method, count(*) AS n, min(len(vector)) AS d FROM emotion_vectors "
            "GROUP BY method ORDER BY method"
        ).to_pylist()
        assert counts == [
            {"method": "denoised", "n": 20, "d": 64},
            {"method": "raw", "n": 20, "d": 64},
        ]
        geometry = store.query(
            "SELECT count(*) AS n, min(pearson_r) AS r FROM geometry"
        ).to_pylist()[0]
        assert geometry["n"] == 2 * 4 * 2 and geometry["r"] >= 0
        assert (
            store.query("SELECT count(*) AS n FROM logit_lens")["n"][0].as_py()
            == 2 * 5 * 4 * 2 * 10
        )
        stored = store.query("SELECT corpus FROM corpora ORDER BY corpus")["corpus"].to_pylist()
        assert stored == ["neutral-stories", "stories"]  # the default corpus
    assert len(list(out.rglob("*.png"))) == 3 and len(list(out.rglob("*.html"))) == 3


def test_vector_and_geometry_bad_input(tmp_path, tiny_llama_dir):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    common = ["--model", str(tiny_llama_dir), "--db", str(db)]
    assert_user_error(run_cli("vectors", *common, "--corpus", "nope"), "unknown corpus")
    assert_user_error(run_cli("vectors", *common, "--emotions", "happy,blorp"), "unknown emotion")
    assert_user_error(
        run_cli("vectors", *common, "--emotions", "happy,sad", "--offset", "100000"),
        "contrast vectors need at least 2",
    )
    assert_user_error(run_cli("geometry", *common), "no raw vectors", "saefeatures vectors")
    source = tmp_path / "one.jsonl"
    source.write_text('{"emotion": "happy", "text": "only happy here"}\n')
    assert run_cli("corpus", "import", str(source), "--name", "one", "--db", str(db)).code == 0
    assert_user_error(
        run_cli("vectors", *common, "--corpus", "one", "--emotions", "happy,sad"),
        "left out: happy, sad",
    )
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM emotion_vectors")["n"][0].as_py() == 0


def test_ratings_missing_with_strict(tmp_path, tiny_llama_dir):
    db = tmp_path / "w.duckdb"
    common = ["--model", str(tiny_llama_dir), "--db", str(db)]
    emotions = "happy,sad,angry,afraid,calm"
    assert run_cli("vectors", *common, "--emotions", emotions, "--offset", "5").code == 0
    partial = tmp_path / "r.csv"
    partial.write_text(
        "emotion,valence,arousal\nhappy,0.9,0.5\nsad,-0.8,-0.3\nangry,-0.7,0.8\nafraid,-0.6,0.7\n"
    )
    args = ["geometry", *common, "--ratings", str(partial), "--out", str(tmp_path / "o")]
    assert_user_error(run_cli(*args, "--strict"), "no ratings for: calm")
    lenient = run_cli(*args, "--resamples", "200")
    assert lenient.code == 0, lenient.stderr
    assert "excluded for lack of ratings: calm" in lenient.stdout
