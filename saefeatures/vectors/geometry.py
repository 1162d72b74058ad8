"""Geometry of emotion vectors: PCA against human ratings, cosine sanity pairs, logit lens.

Reads vectors only from the store (`emotion_vectors`) and writes `geometry`,
`vector_pairs` and `logit_lens`, plus figures under the output folder.

PC signs are arbitrary, so each PC's sign is fixed so that its Pearson r with
its rating (PC1 with valence, PC2 with arousal) is >= 0; the reported r is
therefore never negative, and the permutation p-value is two-sided. The
bootstrap resamples emotions with their fixed PC scores.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from saefeatures import models, plots, stats
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import GeometryOptions
from saefeatures.store.database import Store
from saefeatures.store.read import VectorSet, read_vectors

SANITY_PAIRS = (
    ("happy", "joyful", 1),
    ("angry", "furious", 1),
    ("happy", "sad", -1),
    ("calm", "panicked", -1),
    ("loving", "disgusted", -1),
)
COMPONENTS = (("PC1", "valence"), ("PC2", "arousal"))
TABLE_COLUMNS = [
    "method",
    "layer",
    "rel_depth",
    "component",
    "rating",
    "var_explained",
    "pearson_r",
    "spearman_r",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
]


def component_rows(
    matrix: np.ndarray, valence: np.ndarray, arousal: np.ndarray, n_resamples: int, seed: int
) -> list[dict[str, float]]:
    """PC1 against valence and PC2 against arousal for one `[emotions, d]` matrix."""
    fitted = stats.pca(matrix, 2)
    ratings = {"valence": valence, "arousal": arousal}
    rows = []
    for index, (component, rating) in enumerate(COMPONENTS):
        scores, _ = stats.orient(fitted.scores[:, index], ratings[rating])
        low, high = stats.bootstrap_ci(
            scores, ratings[rating], stats.pearson_rows, n_resamples, seed=seed
        )
        rows.append(
            {
                "component": component,
                "rating": rating,
                "var_explained": float(fitted.explained_variance_ratio[index]),
                "pearson_r": stats.pearson(scores, ratings[rating]),
                "spearman_r": stats.spearman(scores, ratings[rating]),
                "ci_low": low,
                "ci_high": high,
                "p_value": stats.permutation_p(
                    scores, ratings[rating], stats.pearson_rows, n_resamples, seed=seed
                ),
            }
        )
    return rows


def _sanity_rows(vs: VectorSet, layer_index: int) -> list[dict[str, object]]:
    position = {emotion: i for i, emotion in enumerate(vs.emotions)}
    cosines = stats.cosine_matrix(vs.vectors[:, layer_index])
    return [
        {
            "emotion_a": a,
            "emotion_b": b,
            "expected_sign": sign,
            "cosine": float(cosines[position[a], position[b]]),
        }
        for a, b, sign in SANITY_PAIRS
        if a in position and b in position
    ]


@torch.no_grad()
def logit_lens(
    model: models.LoadedModel, vectors: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top promoted and suppressed token ids (and logits) of each direction.

    The direction goes through the final norm and the head (`LoadedModel.head`); the norm
    makes the result independent of the vector's length.
    """
    hf = model.hf_model
    # A copy: vectors read from the store are read-only views, which torch warns about.
    directions = torch.from_numpy(np.array(vectors, dtype=np.float32)).to(hf.dtype)
    logits = model.head(hf.base_model.norm(directions)).float()
    promoted = logits.topk(top, dim=-1)
    suppressed = (-logits).topk(top, dim=-1)
    return (
        promoted.indices.numpy(),
        promoted.values.numpy(),
        suppressed.indices.numpy(),
        -suppressed.values.numpy(),
    )


def analyze(store: Store, out: Path, options: GeometryOptions) -> dict[str, object]:
    """The geometry stage for one model and corpus, both vector methods."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    if options.seed < 0:
        raise SaefeaturesError(f"--seed must be >= 0, got {options.seed}")
    sets = {m: read_vectors(store, spec.name, options.corpus, m) for m in ("raw", "denoised")}
    ratings = catalog.load_ratings(options.ratings)
    emotions = sets["denoised"].emotions
    missing = ratings.missing(emotions)
    if missing and options.strict:
        raise SaefeaturesError(
            f"no ratings for: {', '.join(missing)} (drop --strict to exclude them)"
        )
    rated = [e for e in emotions if e not in missing]
    if len(rated) < 3:
        raise SaefeaturesError(f"only {len(rated)} rated emotions; geometry needs at least 3")
    keep = np.array([emotions.index(e) for e in rated])
    valence = np.array([ratings.valence[e] for e in rated])
    arousal = np.array([ratings.arousal[e] for e in rated])
    n_layers = models.shape_of(spec)["n_layers"]

    config = {**asdict(options), "model": spec.name, "ratings": str(options.ratings or "shipped")}
    with store.run("geometry", config, atomic=True) as run_id:
        catalog.store_ratings(store, run_id, ratings)
        geometry, pairs = [], []
        for method, vs in sets.items():
            method_rows = []
            for i, layer in enumerate(vs.layers):
                for row in component_rows(
                    vs.vectors[keep, i], valence, arousal, options.resamples, options.seed
                ):
                    method_rows.append(
                        {
                            "layer": layer,
                            "rel_depth": layer / max(n_layers - 1, 1),
                            "method": method,
                            **row,
                        }
                    )
                pairs += [{"layer": layer, "method": method, **row} for row in _sanity_rows(vs, i)]
            for component, _ in COMPONENTS:
                chosen = [row for row in method_rows if row["component"] == component]
                q_values = stats.benjamini_hochberg(np.array([row["p_value"] for row in chosen]))
                for row, q in zip(chosen, q_values, strict=True):
                    row["q_value"] = float(q)
            geometry += method_rows
        model = models.load(options.model, dtype=options.dtype, device=options.device)
        lens = _lens_rows(model, sets, options.top_tokens)
        common = {"run_id": run_id, "model": spec.name, "corpus": options.corpus}
        with store.transaction():
            for table, rows in (
                ("geometry", geometry),
                ("vector_pairs", pairs),
                ("logit_lens", lens),
            ):
                store.con.execute(
                    f"DELETE FROM {table} WHERE model = ? AND corpus = ?",
                    [spec.name, options.corpus],
                )
                store.insert(
                    table,
                    _with(common, rows, n_emotions=len(rated))
                    if table == "geometry"
                    else _with(common, rows),
                )
    best = max(
        (r for r in geometry if r["method"] == "denoised" and r["component"] == "PC1"),
        key=lambda r: r["pearson_r"],
    )
    figures = _figures(
        out / "geometry" / spec.slug / options.corpus,
        spec.name,
        options.corpus,
        geometry,
        sets["denoised"],
        best["layer"],
        rated,
        valence,
        keep,
    )
    return {
        "run_id": run_id,
        "best": best,
        "geometry": geometry,
        "pairs": pairs,
        "excluded": missing,
        "figures": figures,
    }


def _with(common: dict[str, object], rows: list[dict[str, object]], **extra: object) -> pa.Table:
    return pa.Table.from_pylist([{**common, **extra, **row} for row in rows])


def _lens_rows(
    model: models.LoadedModel, sets: dict[str, VectorSet], top: int
) -> list[dict[str, object]]:
    rows = []
    for method, vs in sets.items():
        flat = vs.vectors.reshape(-1, vs.vectors.shape[-1])
        up_ids, up_logits, down_ids, down_logits = logit_lens(model, flat, top)
        for n, (emotion, layer) in enumerate(
            (e, layer) for e in vs.emotions for layer in vs.layers
        ):
            for direction, ids, values in (
                ("promoted", up_ids, up_logits),
                ("suppressed", down_ids, down_logits),
            ):
                tokens = model.tokenizer.convert_ids_to_tokens(ids[n].tolist())
                rows += [
                    {
                        "layer": layer,
                        "method": method,
                        "emotion": emotion,
                        "direction": direction,
                        "rank": r + 1,
                        "token": token,
                        "logit": float(value),
                    }
                    for r, (token, value) in enumerate(zip(tokens, values[n], strict=True))
                ]
    return rows


def _figures(
    folder: Path,
    model: str,
    corpus: str,
    geometry: list[dict[str, object]],
    vs: VectorSet,
    best_layer: int,
    rated: list[str],
    valence: np.ndarray,
    keep: np.ndarray,
) -> list[str]:
    denoised = [row for row in geometry if row["method"] == "denoised"]
    layer_index = vs.layers.index(best_layer)
    fitted = stats.pca(vs.vectors[keep, layer_index], 2)
    pc1, _ = stats.orient(fitted.scores[:, 0], valence)
    pc2 = fitted.scores[:, 1]
    written = plots.r_by_layer(denoised, f"{model} · {corpus}: r by depth", folder / "r_by_layer")
    written += plots.pca_scatter(
        rated,
        pc1,
        pc2,
        valence,
        f"{model} · layer {best_layer}: PCA of emotion vectors",
        folder / f"pca_layer{best_layer}",
    )
    written += plots.cosine_heatmap(
        rated,
        stats.cosine_matrix(vs.vectors[keep, layer_index]),
        valence,
        f"{model} · layer {best_layer}: cosine of emotion vectors",
        folder / f"cosine_layer{best_layer}",
    )
    return [str(path) for path in written]
