"""The UMAP feature map on a tiny store with a planted answer: no language model involved.

The SAE's decoder has 20 features near a "positive" direction and 20 near an orthogonal
"negative" one; happy and joyful point along the first, sad and angry along the second.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from saefeatures.alignment import measures
from saefeatures.alignment.feature_map import UmapOptions, draw
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store
from tests.tiny import save_sae

MODEL = "smollm2-135m-instruct"  # an embedded name: `models.resolve` only reads the registry
LAYER, D_IN, D_SAE = 2, 16, 200
EMOTIONS = {"happy": 0, "joyful": 0, "sad": 1, "angry": 1}  # emotion -> planted direction
PLANTED = {0: range(0, 20), 1: range(20, 40)}  # direction -> its features
EXTERNAL = re.compile(r"<script[^>]*\bsrc\s*=|<link[^>]*\bhref\s*=\s*[\"']?\s*(https?:)?//", re.I)


def _decoder(rng: np.random.Generator) -> np.ndarray:
    decoder = rng.normal(size=(D_SAE, D_IN))
    for direction, rows in PLANTED.items():
        decoder[rows] = 0.25 * decoder[rows] + 3 * np.eye(D_IN)[direction]
    return decoder / np.linalg.norm(decoder, axis=1, keepdims=True)


def _store(tmp_path: Path, aligned: bool = True) -> Store:
    rng = np.random.default_rng(0)
    decoder = _decoder(rng)
    folder = save_sae(
        tmp_path / "sae",
        f"blocks.{LAYER}.hook_resid_post",
        D_IN,
        D_SAE,
        k=4,
        weights={"W_dec": torch.tensor(decoder, dtype=torch.float32)},
    )
    vectors = {e: np.eye(D_IN)[d] + 0.1 * rng.normal(size=D_IN) for e, d in EMOTIONS.items()}
    store = Store(tmp_path / "w.duckdb")
    with store.run("seed", {}) as run_id:
        store.insert(
            "saes",
            {
                "run_id": [run_id],
                "sae_id": ["tiny-sae"],
                "model": [MODEL],
                "layer": [LAYER],
                "hook": [f"blocks.{LAYER}.hook_resid_post"],
                "architecture": ["topk"],
                "d_in": [D_IN],
                "d_sae": [D_SAE],
                "k": [4],
                "path": [str(folder)],
            },
        )
        n = len(vectors)
        store.insert(
            "emotion_vectors",
            {
                "run_id": [run_id] * n,
                "model": [MODEL] * n,
                "corpus": ["templates"] * n,
                "layer": [LAYER] * n,
                "hook": [f"blocks.{LAYER}.hook_resid_post"] * n,
                "emotion": list(vectors),
                "method": ["denoised"] * n,
                "n_passages": [10] * n,
                "vector": [v.tolist() for v in vectors.values()],
            },
        )
        store.insert(
            "features",
            {
                "run_id": [run_id] * 2,
                "sae_id": ["tiny-sae"] * 2,
                "feature": [0, 20],
                "promoted_tokens": [["glad", "<b>"], ["tear"]],
            },
        )
        if aligned:
            rows = []
            for emotion, vector in vectors.items():
                ids, scores = measures.top_by_abs(measures.decoder_cosines(vector, decoder), 15)
                rows += [
                    {
                        "run_id": run_id,
                        "model": MODEL,
                        "sae_id": "tiny-sae",
                        "layer": LAYER,
                        "corpus": "templates",
                        "emotion": emotion,
                        "method": "decoder_cosine",
                        "feature": int(f),
                        "score": float(s),
                        "rank": r + 1,
                    }
                    for r, (f, s) in enumerate(zip(ids, scores, strict=True))
                ]
            store.insert("alignments", {key: [row[key] for row in rows] for key in rows[0]})
    return store


@pytest.fixture
def store(tmp_path) -> Store:
    with _store(tmp_path) as opened:
        yield opened


def _options(**changes) -> UmapOptions:
    return UmapOptions(
        layer=LAYER, model=MODEL, **{"background": 50, "corpus": "templates", **changes}
    )


def test_draw_writes_offline_png_and_html(store, tmp_path):
    result = draw(store, tmp_path / "out", _options())
    png, html = map(Path, result.files)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.parent == tmp_path / "out" / "umap" and html.suffix == ".html"
    text = html.read_text(encoding="utf-8")
    assert EXTERNAL.search(text) is None
    assert "&lt;b&gt;" in text and "aligned emotion: happy" in text  # escaped tokens, hover
    assert result.points["emotions"] == 4 and result.points["background_features"] == 50
    assert result.coordinates.shape == (len(result.labels), 2)


def test_seed_fixes_the_map(store, tmp_path):
    first = draw(store, tmp_path / "a", _options(seed=1)).coordinates
    again = draw(store, tmp_path / "b", _options(seed=1)).coordinates
    other = draw(store, tmp_path / "c", _options(seed=2)).coordinates
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_planted_features_sit_near_their_emotion(store, tmp_path):
    result = draw(store, tmp_path / "out", _options())
    xy, labels, kinds = result.coordinates, result.labels, np.array(result.kinds)
    star = {label: xy[i] for i, label in enumerate(labels) if kinds[i] == "emotion"}
    positive = xy[[kinds[i] != "emotion" and int(labels[i]) in PLANTED[0] for i in range(len(xy))]]
    assert len(positive) >= 10
    near = np.linalg.norm(positive - star["happy"], axis=1).mean()
    far = np.linalg.norm(positive - star["sad"], axis=1).mean()
    assert near < far / 2


def test_without_alignments_says_to_align(tmp_path):
    with _store(tmp_path, aligned=False) as store, pytest.raises(SaefeaturesError) as error:
        draw(store, tmp_path / "out", _options())
    assert "saefeatures align --layer 2 --corpus templates" in str(error.value)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"top_k": 0}, "--top"),
        ({"background": -1}, "--background"),
        ({"neighbors": 1}, "--neighbors"),
        ({"min_dist": 1.5}, "--min-dist"),
    ],
)
def test_bad_options(store, tmp_path, changes, fragment):
    with pytest.raises(SaefeaturesError, match=re.escape(fragment)):
        draw(store, tmp_path / "out", _options(**changes))


def test_a_dotted_output_name_keeps_its_dot(store, tmp_path):
    result = draw(store, tmp_path / "out", _options(output=tmp_path / "maps" / "v1.2.html"))
    assert sorted(Path(f).name for f in result.files) == ["v1.2.html", "v1.2.png"]
