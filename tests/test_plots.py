"""Each figure writes a readable PNG and an offline HTML; the heatmap is ordered by valence."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from saefeatures import plots
from saefeatures.errors import SaefeaturesError

EMOTIONS = ["joy", "fear", "calm", "anger", "pride", "sadness"]
VALENCE = np.array([0.9, -0.7, 0.5, -0.8, 0.6, -0.9])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?\s*(https?:)?//", re.IGNORECASE)


def assert_figure_files(paths: list[Path], stem: Path) -> str:
    """Check both files and return the HTML text for further checks."""
    png, html = paths
    assert (png, html) == (stem.with_suffix(".png"), stem.with_suffix(".html"))
    assert png.read_bytes()[:8] == PNG_MAGIC
    pixels = image.imread(png)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels.std() > 0.01  # something was drawn, not a blank canvas
    text = html.read_text(encoding="utf-8")
    assert REMOTE_SCRIPT.search(text) is None
    assert "plotly" in text.lower()
    assert html.stat().st_size > 1_000_000  # plotly.js is inline, not linked
    return text


def test_remote_script_pattern_catches_a_cdn_link() -> None:
    assert REMOTE_SCRIPT.search('<script src="https://cdn.plot.ly/plotly.min.js"></script>')
    assert REMOTE_SCRIPT.search("<script type='text/javascript' src='//cdn.x/y.js'>")
    assert REMOTE_SCRIPT.search('<script type="text/javascript">var a = 1;</script>') is None


def test_r_by_layer_writes_both_files(tmp_path: Path) -> None:
    rows = [
        {
            "rel_depth": layer / 5,
            "layer": layer,
            "rating": rating,
            "pearson_r": r,
            "ci_low": r - 0.1,
            "ci_high": r + 0.1,
        }
        for layer in range(6)
        for rating, r in (("valence", 0.1 * layer), ("arousal", 0.3 - 0.05 * layer))
    ]
    stem = tmp_path / "nested" / "deeper" / "r_by_layer"
    text = assert_figure_files(plots.r_by_layer(rows, "r by layer", stem), stem)
    assert "valence" in text and "arousal" in text and "layer %{customdata[0]" in text


def test_r_by_layer_rejects_unknown_rating(tmp_path: Path) -> None:
    row = {"rel_depth": 0.5, "layer": 1, "rating": "dominance", "pearson_r": 0.1}
    with pytest.raises(SaefeaturesError, match="dominance"):
        plots.r_by_layer([row | {"ci_low": 0.0, "ci_high": 0.2}], "t", tmp_path / "x")


def test_pca_scatter_writes_both_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pc1, pc2 = rng.standard_normal(6), rng.standard_normal(6)
    stem = tmp_path / "pca"
    paths = plots.pca_scatter(EMOTIONS, pc1, pc2, VALENCE, "PCA", stem, ("PC1 (40%)", "PC2"))
    text = assert_figure_files(paths, stem)
    assert all(f'"{name}"' in text for name in EMOTIONS)
    assert "PC1 (40%)" in text


def test_pca_scatter_rejects_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(SaefeaturesError, match="differ in length"):
        plots.pca_scatter(EMOTIONS, np.zeros(6), np.zeros(5), VALENCE, "t", tmp_path / "x")


def test_cosine_heatmap_writes_both_files(tmp_path: Path) -> None:
    vectors = np.random.default_rng(1).standard_normal((6, 4))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    stem = tmp_path / "heatmap"
    assert_figure_files(plots.cosine_heatmap(EMOTIONS, unit @ unit.T, VALENCE, "cos", stem), stem)


def test_cosine_heatmap_rejects_a_non_square_matrix(tmp_path: Path) -> None:
    with pytest.raises(SaefeaturesError, match="6 x 6"):
        plots.cosine_heatmap(EMOTIONS, np.zeros((6, 5)), VALENCE, "t", tmp_path / "x")


def test_valence_order_is_descending_and_stable() -> None:
    order = plots.valence_order(VALENCE)
    assert [EMOTIONS[i] for i in order] == ["joy", "pride", "calm", "fear", "anger", "sadness"]
    assert list(plots.valence_order([0.2, 0.5, 0.2, -1.0])) == [1, 0, 2, 3]
