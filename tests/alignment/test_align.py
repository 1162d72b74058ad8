"""The alignment stage end to end on a tiny model with a planted SAE, its tables and queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from saefeatures.config import project_data
from saefeatures.store import queries
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, digest, run_cli
from tests.tiny import save_sae, save_tiny

LAYER = 2
HOOK = f"blocks.{LAYER}.hook_resid_post"
PLANTED = 7
EMOTIONS = "happy,sad,angry,calm"
TEXT = str(project_data("corpora") / "templates.jsonl")


def _vector(db: Path, emotion: str) -> np.ndarray:
    with Store(db, read_only=True) as store:
        rows = store.query(
            "SELECT vector FROM emotion_vectors WHERE emotion = ? AND layer = ? AND method = 'raw'",
            [emotion, LAYER],
        )
    return np.asarray(rows["vector"][0].as_py(), dtype=np.float32)


def _planted_corpus(path: Path) -> Path:
    """The shipped templates of four emotions, with a marker word in every happy passage.

    A random tiny model has no emotions, so the marker's residual is what makes happy
    passages different: the happy vector points at it, and a feature reading that
    direction fires on happy passages only.
    """
    lines = []
    for line in Path(TEXT).read_text().splitlines():
        row = json.loads(line)
        if row["emotion"] in EMOTIONS.split(","):
            if row["emotion"] == "happy":
                words = row["text"].split()
                row["text"] = " ".join([*words[:8], "@@@@ @@@@ @@@@", *words[8:]])
            lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


def _planted_sae(folder: Path, happy: np.ndarray, d_sae: int = 32) -> Path:
    """A ReLU SAE whose feature 7 is the happy vector, among random unit directions.

    The encoder reads each decoder direction with a large bias, so every feature is a
    linear read-out of the residual and fires on every token.
    """
    generator = torch.Generator().manual_seed(0)
    decoder = torch.randn(d_sae, len(happy), generator=generator)
    decoder[PLANTED] = torch.as_tensor(happy)
    decoder /= decoder.norm(dim=1, keepdim=True)
    weights = {"W_dec": decoder, "W_enc": decoder.T.clone(), "b_enc": torch.full((d_sae,), 100.0)}
    return save_sae(folder, HOOK, len(happy), d_sae, k=None, weights=weights)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, tiny_llama_dir) -> dict[str, object]:
    """A store where vectors, a planted SAE and one alignment run already exist."""
    root = tmp_path_factory.mktemp("align")
    env = {"SAEFEATURES_DB": str(root / "w.duckdb"), "SAEFEATURES_OUT": str(root / "out")}
    model = ("--model", str(tiny_llama_dir))
    corpus = _planted_corpus(root / "planted.jsonl")
    imported = run_cli("corpus", "import", str(corpus), "--name", "planted", env=env)
    assert imported.code == 0, imported.stderr
    made = run_cli(
        "vectors",
        *model,
        "--corpus",
        "planted",
        "--layers",
        "1,2",
        "--offset",
        "10",
        "--emotions",
        EMOTIONS,
        env=env,
    )
    assert made.code == 0, made.stderr
    planted = _planted_sae(root / "planted", _vector(root / "w.duckdb", "happy"))
    loaded = run_cli("load", "--path", str(planted), *model, env=env)
    assert loaded.code == 0, loaded.stderr
    result = run_cli(
        "align",
        "--layer",
        str(LAYER),
        *model,
        "--corpus",
        "planted",
        "--method",
        "raw",
        "--text",
        TEXT,
        "--sample-rows",
        "4",
        "--null-directions",
        "200",
        "--top",
        "10",
        "--k-max",
        "8",
        env=env,
    )
    assert result.code == 0, result.stderr
    return {"env": env, "db": root / "w.duckdb", "root": root, "stdout": result.stdout}


def _rows(db: Path, sql: str, params: list | None = None) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.query(sql, params).to_pylist()


def test_every_method_ranks_the_planted_feature_first(aligned):
    firsts = _rows(
        aligned["db"],
        "SELECT method, feature, score, extra FROM alignments WHERE emotion = 'happy' AND rank = 1",
    )
    assert {row["method"] for row in firsts} == {"decoder_cosine", "omp", "mean_diff", "auroc"}
    assert all(row["feature"] == PLANTED for row in firsts), firsts
    by_method = {row["method"]: row for row in firsts}
    assert by_method["decoder_cosine"]["score"] == pytest.approx(1.0, abs=1e-5)
    assert json.loads(by_method["omp"]["extra"])["r2"] == pytest.approx(1.0, abs=1e-5)
    summary = {
        row["metric"]: row["value"]
        for row in _rows(
            aligned["db"], "SELECT metric, value FROM alignment_summary WHERE emotion = 'happy'"
        )
    }
    assert summary["exceeds_shuffled_null"] == summary["exceeds_random_p99"] == 1.0
    assert summary["best_abs_cos"] > summary["shuffled_null_p99"] > 0
    assert summary["omp_exceeds_shuffled"] == 1.0
    # Chosen on one half of the passages, scored on the other (0.80 on this tiny model).
    assert summary["heldout_feature_auroc"] > 0.75 and summary["heldout_feature_auroc_p"] < 0.05
    assert summary["overlap@8:decoder_cosine~omp"] >= 1 / 8
    assert 0.5 <= summary["probe_auroc"] <= 1.0


def test_curves_stored_for_omp_and_its_shuffled_label_baseline(aligned):
    curves = _rows(
        aligned["db"],
        "SELECT curve, k, r2 FROM alignment_curves WHERE emotion = 'happy' ORDER BY curve, k",
    )
    omp = [row["r2"] for row in curves if row["curve"] == "omp"]
    shuffled = [row["r2"] for row in curves if row["curve"] == "shuffled"]
    assert len(omp) == len(shuffled) == 8
    assert omp[0] == pytest.approx(1.0, abs=1e-5) and shuffled[-1] < 1.0
    assert np.all(np.diff(shuffled) >= -1e-12)


def test_feature_tables_agree_with_the_activations(aligned):
    db = aligned["db"]
    stats = _rows(
        db,
        "SELECT f.feature, f.density, f.max_activation, f.mean_active, a.n, a.peak, a.mean "
        "FROM features f JOIN (SELECT feature, count(*) AS n, max(value) AS peak, "
        "avg(value) AS mean FROM feature_activations GROUP BY feature) a USING (feature)",
    )
    # Byte tokens are ids 0..255; the specials after them are never counted.
    tokens = _rows(db, "SELECT count(*) AS n FROM passage_tokens WHERE token_id < 256")[0]["n"]
    assert len(stats) == 32
    for row in stats:  # the ReLU read-outs fire on every real token (bias 100)
        assert row["density"] == pytest.approx(row["n"] / tokens)
        assert row["max_activation"] == pytest.approx(row["peak"], rel=1e-6)
        assert row["mean_active"] == pytest.approx(row["mean"], rel=1e-5)
    planted = _rows(db, f"SELECT top_snippets FROM features WHERE feature = {PLANTED}")[0]
    snippets = json.loads(planted["top_snippets"])
    assert len(snippets) == 5 and all("[[" in s["text"] for s in snippets)
    peak = next(row["peak"] for row in stats if row["feature"] == PLANTED)
    assert snippets[0]["value"] == pytest.approx(peak, rel=1e-4)
    lens = _rows(db, "SELECT promoted_tokens, promoted_logits, suppressed_tokens FROM features")
    entries = {chr(code) for code in range(256, 324)}  # byte-level vocabulary marks, e.g. Ġ
    for row in lens:
        tokens = row["promoted_tokens"] + row["suppressed_tokens"]
        assert len(tokens) == 20 and not entries & set("".join(tokens))
        assert row["promoted_logits"] == sorted(row["promoted_logits"], reverse=True)
    corpora = {
        row["corpus"] for row in _rows(db, "SELECT DISTINCT corpus FROM feature_activations")
    }
    assert corpora == {"planted", "text-sample"}


def test_emotion_activity_matches_a_direct_sum(aligned):
    direct = _rows(
        aligned["db"],
        "SELECT p.emotion, a.feature, sum(a.value) AS total FROM feature_activations a "
        "JOIN passages p USING (corpus, passage_id) GROUP BY ALL",
    )
    stored = {
        (row["emotion"], row["feature"]): row["total"]
        for row in _rows(
            aligned["db"], "SELECT emotion, feature, total FROM emotion_feature_activity"
        )
    }
    assert len(stored) == len(direct) == 4 * 32
    for row in direct:
        assert stored[(row["emotion"], row["feature"])] == pytest.approx(row["total"], rel=1e-6)


@pytest.mark.parametrize("name", sorted(queries.shipped()))
def test_shipped_queries_run_through_the_cli(aligned, name):
    expected = {
        "top_features_per_emotion": "sae_id,corpus,emotion,feature,selectivity",
        "emotions_sharing_features": "sae_id,corpus,emotion_a,emotion_b,shared,features",
        "valence_features": "sae_id,corpus,feature,r_valence,emotions",
        "feature_density_histogram": "sae_id,density_bin,features",
        "feature_snippets": "feature,value,corpus,passage_id,position,snippet",
    }
    params = ("--param", "emotion=happy") if name == "feature_snippets" else ()
    result = run_cli("sql", name, *params, "--format", "csv", env=aligned["env"])
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == expected[name] and len(lines) > 1


def test_top_features_query_ranks_the_planted_feature_for_happy(aligned):
    sql = queries.resolve("top_features_per_emotion")
    rows = _rows(aligned["db"], f"SELECT * FROM ({sql}) WHERE emotion = 'happy'")
    assert rows[0]["feature"] == PLANTED


def test_bad_alignment_inputs(aligned, tiny_llama_dir, tmp_path):
    env, db = aligned["env"], aligned["db"]
    model = ("--model", str(tiny_llama_dir))
    narrow_dir = save_tiny("llama", tmp_path / "narrow", hidden=32)
    narrow = save_sae(tmp_path / "narrow-sae", HOOK, 32)
    loaded = run_cli("load", "--path", str(narrow), "--model", str(narrow_dir), env=env)
    assert loaded.code == 0, loaded.stderr
    narrow_id = _rows(db, "SELECT sae_id FROM saes WHERE d_in = 32")[0]["sae_id"]
    before = digest(db)
    model = (*model, "--corpus", "planted")
    cases = [
        (("align", "--layer", "1", *model), "no SAE for", "saefeatures train"),
        (("align", "--layer", "2", "--model", str(tiny_llama_dir)), "saefeatures vectors"),
        (("align", "--layer", "2", *model, "--sae", narrow_id), "width 32", "width 64"),
        (("align", "--layer", "2", *model, "--emotions", "happy,glorbed"), "glorbed"),
        (("align", "--layer", "2", *model, "--emotions", "happy,proud"), "no vector for proud"),
        (("align", "--layer", "9", *model), "out of range"),
    ]
    for args, *fragments in cases:
        assert_user_error(run_cli(*args, env=env), *fragments)
    assert digest(db) == before


def test_scan_summaries_equal_a_dense_computation(tiny_llama_dir, tmp_path):
    from saefeatures import activations, models
    from saefeatures.alignment.scan import scan
    from saefeatures.sae import loading

    model = models.load(str(tiny_llama_dir))
    sae = loading.read_saelens(save_sae(tmp_path / "sae", HOOK, 64, d_sae=48, k=6), "cpu")
    sequences = [[5, 6, 7, 8, 9, 10], [256, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21]]
    result = scan(model, [sae], LAYER, sequences, offset=2, special_ids=[256], batch_size=2)
    own = result.per_sae[0]
    for i, sequence in enumerate(sequences):
        ids = torch.tensor([sequence])
        residual = activations.harvest(
            model, {"input_ids": ids, "attention_mask": ids * 0 + 1}, [LAYER]
        )[LAYER][0].float()
        acts = sae.encode(residual).detach()
        real = torch.tensor([token != 256 for token in sequence])
        pool = real & (torch.arange(len(sequence)) >= 2)
        np.testing.assert_allclose(own.passage_mean[i], acts[pool].mean(0), atol=1e-5)
        np.testing.assert_allclose(own.passage_max[i], acts[pool].amax(0), atol=1e-5)
        np.testing.assert_allclose(result.residual_mean[i], residual[pool].mean(0), atol=1e-5)
        mine = own.sequence == i
        assert mine.sum() == int((acts[real] > 0).sum())
        dense = torch.zeros_like(acts)
        dense[own.position[mine], own.feature[mine]] = torch.as_tensor(own.value[mine])
        np.testing.assert_allclose(dense[real], acts[real], atol=1e-5)
    assert result.n_tokens == sum(len(s) for s in sequences) - 1


def test_umap_command_writes_both_files_offline(aligned, tiny_llama_dir, tmp_path):
    stem = tmp_path / "map"
    args = (
        "umap",
        "--layer",
        str(LAYER),
        "--model",
        str(tiny_llama_dir),
        "--corpus",
        "planted",
        "--background",
        "10",
        "--neighbors",
        "5",
        "-o",
        str(stem),
    )
    result = run_cli(*args, env=aligned["env"])
    assert result.code == 0, result.stderr
    page = (tmp_path / "map.html").read_text()
    assert (tmp_path / "map.png").stat().st_size > 10_000
    assert "<script src=" not in page and "<link" not in page and "plotly" in page
    assert "feature 7" in page and "happy" in page
