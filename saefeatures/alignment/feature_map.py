"""A UMAP map of SAE decoder directions with the emotion vectors placed in the same space.

The features shown are each emotion's top features by decoder cosine (from `alignments`)
plus a seeded random sample of the other features, so the aligned ones can be seen
against the SAE's overall layout. Every point is a unit direction and UMAP uses the
cosine metric, so nearness on the map means similar direction in the residual stream.
Aligned features are coloured by the valence of the emotion they align with best, times
the sign of that cosine: a feature carrying "happy" negated counts as negative.

`embed` and `figures` work on arrays only; `draw` reads the store and the SAE.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from saefeatures import models, plots, progress
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import UmapOptions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import read_vectors, saes_at

KINDS = ("background", "feature", "emotion")  # drawing order: emotions end up on top
NO_RATING = "#969696"
BACKGROUND = "#d9d9d9"
COLOUR_LABEL = "valence of aligned emotion \N{MULTIPLICATION SIGN} sign"
SHOWN_TOKENS = 8


# -- the pure part -------------------------------------------------------------------


def embed(points: np.ndarray, seed: int, neighbors: int, min_dist: float) -> np.ndarray:
    """2-D UMAP of the rows' directions; a given seed always gives the same map.

    A fixed `random_state` makes UMAP single-threaded, which is what makes it repeatable.
    """
    import umap  # numba compiles on import: pay for it only when a map is drawn

    rows = np.asarray(points, dtype=np.float32)
    if rows.ndim != 2 or len(rows) < 3:
        raise SaefeaturesError(f"a map needs at least 3 points as rows, got shape {rows.shape}")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)  # dead rows stay 0
    reducer = umap.UMAP(
        n_components=2,
        metric="cosine",
        n_neighbors=min(neighbors, len(unit) - 1),
        min_dist=min_dist,
        random_state=seed,
        init="spectral",
        n_jobs=1,  # what random_state implies anyway; saying so silences UMAP's warning
    )
    return reducer.fit_transform(unit)


def figures(
    coordinates: np.ndarray,
    kinds: list[str],
    labels: list[str],
    colour: np.ndarray,
    hover: list[str],
    title: str,
    stem: Path,
) -> list[Path]:
    """The map as PNG and HTML. `kinds` are from KINDS; `colour` is NaN where unrated.

    Emotion points are labelled with their `labels`; `hover` is plotly hover text (HTML);
    a newline in `title` starts a second line in both renderings.
    """
    coordinates = np.asarray(coordinates, dtype=float)
    kinds_array, colour = np.asarray(kinds), np.asarray(colour, dtype=float)
    plots.same_length(
        coordinates=coordinates, kinds=kinds, labels=labels, colour=colour, hover=hover
    )
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SaefeaturesError(f"unknown point kinds {sorted(unknown)}; use {', '.join(KINDS)}")
    limit = plots.symmetric_limit(colour[np.isfinite(colour)])
    norm = Normalize(-limit, limit)
    figure = Figure(figsize=(10, 8.5), layout="constrained")
    ax = figure.add_subplot()
    for kind, mask, values in _groups(kinds_array, colour):
        names = [labels[i] for i in np.flatnonzero(mask)]
        _matplotlib_group(ax, kind, coordinates[mask], values, names, norm)
    figure.colorbar(ScalarMappable(norm, plots.DIVERGING_CMAP), ax=ax, label=COLOUR_LABEL)
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2", xticks=[], yticks=[])
    ax.set_title(title, fontsize=10)
    interactive = interactive_map(coordinates, kinds, labels, colour, hover, title)
    return plots.write(figure, interactive, stem)


def _groups(kinds: np.ndarray, colour: np.ndarray) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(kind, mask, colours or None) per drawn group, in drawing order; unrated apart."""
    rated = np.isfinite(colour)
    for kind in KINDS:
        for has_rating in (True, False):
            mask = (kinds == kind) & (rated == has_rating)
            if mask.any():
                yield kind, mask, colour[mask] if has_rating else None


def interactive_map(
    coordinates: np.ndarray,
    kinds: list[str],
    labels: list[str],
    colour: np.ndarray,
    hover: list[str],
    title: str,
) -> go.Figure:
    """The plotly map alone: `figures` writes it, the report embeds it from stored points."""
    coordinates = np.asarray(coordinates, dtype=float)
    colour = np.asarray(colour, dtype=float)
    limit = plots.symmetric_limit(colour[np.isfinite(colour)])
    interactive = go.Figure()
    scale_shown = False
    for kind, mask, values in _groups(np.asarray(kinds), colour):
        names = [labels[i] for i in np.flatnonzero(mask)]
        text = [hover[i] for i in np.flatnonzero(mask)]
        # Each rated trace carries the colour scale itself (not a shared coloraxis, whose
        # numbers plotly's legend cannot turn into a colour); one of them shows the bar.
        fill = {"color": BACKGROUND if kind == "background" else NO_RATING}
        if values is not None:
            fill = {
                "color": values,
                "colorscale": plots.DIVERGING_SCALE,
                "cmin": -limit,
                "cmax": limit,
                "showscale": not scale_shown,
                "colorbar": {"title": {"text": COLOUR_LABEL}},
            }
            scale_shown = True
        interactive.add_trace(
            _plotly_group(kind, coordinates[mask], fill, values is not None, names, text)
        )
    interactive.update_layout(
        title=html.escape(title).replace("\n", "<br>"),
        xaxis={"title": "UMAP 1", "showticklabels": False},
        yaxis={"title": "UMAP 2", "showticklabels": False},
        legend={"orientation": "h", "y": -0.05},
    )
    return interactive


def _matplotlib_group(
    ax: Any, kind: str, xy: np.ndarray, values: np.ndarray | None, names: list[str], norm: Any
) -> None:
    fill = (
        {"c": values, "cmap": plots.DIVERGING_CMAP, "norm": norm}
        if values is not None
        else {"color": BACKGROUND if kind == "background" else NO_RATING}
    )
    if kind == "background":
        ax.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.6, linewidths=0, zorder=1, **fill)
    elif kind == "feature":
        ax.scatter(xy[:, 0], xy[:, 1], s=22, edgecolors="grey", linewidths=0.4, zorder=2, **fill)
    else:
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=260,
            marker="*",
            edgecolors="black",
            linewidths=0.8,
            zorder=3,
            **fill,
        )
        for name, (x, y) in zip(names, xy, strict=True):
            ax.annotate(
                name, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8, zorder=4
            )


def _plotly_group(
    kind: str,
    xy: np.ndarray,
    fill: dict[str, Any],
    rated: bool,
    names: list[str],
    hover: list[str],
) -> go.Scatter:
    marker = dict(fill)
    name = {
        "background": "other features",
        "feature": "aligned features",
        "emotion": "emotion vectors",
    }[kind]
    if kind == "background":
        marker.update(size=4, opacity=0.6)
    elif kind == "feature":
        marker.update(size=7, line={"color": "grey", "width": 0.5})
    else:
        marker.update(size=18, symbol="star", line={"color": "black", "width": 1})
    return go.Scatter(
        x=xy[:, 0],
        y=xy[:, 1],
        mode="markers+text" if kind == "emotion" else "markers",
        text=[html.escape(n) for n in names] if kind == "emotion" else None,
        textposition="top center",
        name=name if rated or kind == "background" else f"{name} (no rating)",
        marker=marker,
        hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
    )


# -- reading the store ---------------------------------------------------------------


def _stem(out: Path, options: UmapOptions, sae_id: str) -> Path:
    """Where the two files go: `-o` with or without .png/.html, else under `<out>/umap/`."""
    if options.output is None:
        return out / "umap" / re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{sae_id}-{options.corpus}")
    stem = options.output
    return stem.with_suffix("") if stem.suffix.lower() in (".png", ".html") else stem


def _alignments(store: Store, sae_id: str, options: UmapOptions) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT emotion, feature, score, rank FROM alignments WHERE sae_id = ? AND layer = ? "
        "AND corpus = ? AND method = 'decoder_cosine' ORDER BY emotion, rank",
        [sae_id, options.layer, options.corpus],
    ).to_pylist()
    if not rows:
        raise SaefeaturesError(
            f"no decoder_cosine alignments for SAE {sae_id} at layer {options.layer} and corpus "
            f"{options.corpus}; run `saefeatures align --layer {options.layer} --corpus "
            f"{options.corpus}` first"
        )
    return rows


def _best_emotion(rows: list[dict[str, Any]], chosen: set[int]) -> dict[int, tuple[str, float]]:
    """Per chosen feature, the emotion of its largest |cos| among all its alignment rows."""
    best: dict[int, tuple[str, float]] = {}
    for row in rows:
        feature, score = row["feature"], row["score"]
        if feature in chosen and (feature not in best or abs(score) > abs(best[feature][1])):
            best[feature] = (row["emotion"], score)
    return best


def _promoted_tokens(store: Store, sae_id: str, ids: np.ndarray) -> dict[int, list[str]]:
    rows = store.query(
        "SELECT feature, promoted_tokens FROM features "
        "WHERE sae_id = ? AND list_contains(?::INTEGER[], feature)",
        [sae_id, [int(i) for i in ids]],
    ).to_pylist()
    return {row["feature"]: row["promoted_tokens"] or [] for row in rows}


def _feature_hover(feature: int, tokens: list[str] | None, best: tuple[str, float] | None) -> str:
    shown = ", ".join(repr(t) for t in tokens[:SHOWN_TOKENS]) if tokens else "(not described)"
    lines = [f"<b>feature {feature}</b>", f"promoted tokens (logit lens): {html.escape(shown)}"]
    if best is None:
        lines.append("not among any emotion's top features")
    else:
        lines += [f"aligned emotion: {html.escape(best[0])}", f"cosine: {best[1]:+.3f}"]
    return "<br>".join(lines)


def _emotion_hover(emotion: str, valence: float | None) -> str:
    rating = "no rating" if valence is None else f"{valence:+.2f}"
    return f"<b>{html.escape(emotion)}</b> (emotion vector)<br>valence: {rating}"


def _emotion_vectors(
    store: Store, model: str, emotions: list[str], options: UmapOptions
) -> np.ndarray:
    """The vectors of the alignments' emotions at the layer, in the alignments' order."""
    vector_set = read_vectors(store, model, options.corpus, options.method)
    missing = [e for e in emotions if e not in vector_set.emotions]
    if options.layer not in vector_set.layers or missing:
        raise SaefeaturesError(
            f"the {options.method} vectors of {model}, corpus {options.corpus}, lack layer "
            f"{options.layer} or emotions {', '.join(missing) or '-'} that the alignments use; "
            "re-run `saefeatures vectors` and `saefeatures align`"
        )
    return vector_set.vectors[
        [vector_set.emotions.index(e) for e in emotions], vector_set.layers.index(options.layer)
    ]


def _chosen_features(
    rows: list[dict[str, Any]], n_features: int, options: UmapOptions
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned features (top-k of any emotion) and a seeded sample of the others."""
    aligned = np.array(sorted({row["feature"] for row in rows if row["rank"] <= options.top_k}))
    others = np.setdiff1d(np.arange(n_features), aligned)
    rng = np.random.default_rng(options.seed)
    background = np.sort(rng.choice(others, min(options.background, len(others)), replace=False))
    return aligned, background


def _timed_embed(
    decoder: np.ndarray, features: np.ndarray, vectors: np.ndarray, options: UmapOptions
) -> tuple[np.ndarray, float]:
    """The map of the features' decoder directions and the vectors, and UMAP's seconds."""
    started = time.perf_counter()
    progress.say(f"  UMAP of {len(features) + len(vectors)} points")
    coordinates = embed(
        np.vstack([decoder[features], vectors]), options.seed, options.neighbors, options.min_dist
    )
    return coordinates, time.perf_counter() - started


@dataclass(frozen=True)
class FeatureMap:
    """One UMAP: how many points of each kind, its time, its files, and every point's
    coordinates, label (a feature id or an emotion) and kind."""

    sae_id: str
    points: dict[str, int]
    umap_seconds: float
    files: list[str]
    coordinates: np.ndarray  # [points, 2]
    labels: list[str]
    kinds: list[str]


def draw(store: Store, out: Path, options: UmapOptions) -> FeatureMap:
    """Map one SAE's emotion-aligned and random features with the emotion vectors."""
    model = models.resolve(options.model).name
    sae_row = saes_at(store, model, options.layer, options.sae)[0]
    sae_id = sae_row["sae_id"]
    if sae_row["model"] != model:
        raise SaefeaturesError(f"SAE {sae_id} was trained on {sae_row['model']}, not {model}")
    stem = _stem(out, options, sae_id)
    rows = _alignments(store, sae_id, options)
    emotions = list(dict.fromkeys(row["emotion"] for row in rows))
    vectors = _emotion_vectors(store, model, emotions, options)
    sae = loading.read_saelens(Path(sae_row["path"]), "cpu")
    decoder = sae.W_dec.detach().float().cpu().numpy()

    aligned, background = _chosen_features(rows, len(decoder), options)
    features = np.concatenate([aligned, background]).astype(int)
    coordinates, seconds = _timed_embed(decoder, features, vectors, options)

    kinds, labels, colour, hover = _describe_points(
        store, sae_id, rows, aligned, background, features, emotions
    )
    title = (
        f"{sae_id}\nlayer {options.layer}, corpus {options.corpus}: top {options.top_k} features "
        f"per emotion (coloured), {len(background)} others (grey), emotion vectors (stars)"
    )
    files = figures(coordinates, kinds, labels, np.array(colour), hover, title, stem)
    points = {
        "model": model,
        "sae_id": sae_id,
        "layer": options.layer,
        "corpus": options.corpus,
        "kind": kinds,
        "label": labels,
        "x": coordinates[:, 0],
        "y": coordinates[:, 1],
        "colour": colour,
        "hover": hover,
        "title": title,
    }
    _save_points(store, options, points)
    counts = {
        "aligned_features": len(aligned),
        "background_features": len(background),
        "emotions": len(emotions),
    }
    files = [str(path) for path in files]
    return FeatureMap(sae_id, counts, seconds, files, coordinates, labels, kinds)


def _describe_points(
    store: Store,
    sae_id: str,
    rows: list[dict[str, Any]],
    aligned: np.ndarray,
    background: np.ndarray,
    features: np.ndarray,
    emotions: list[str],
) -> tuple[list[str], list[str], list[float], list[str]]:
    """Each point's kind, label, colour and hover text: the features, then the emotions."""
    valence = catalog.load_ratings().valence
    best = _best_emotion(rows, set(aligned.tolist()))
    tokens = _promoted_tokens(store, sae_id, features)
    kinds = (
        ["feature"] * len(aligned) + ["background"] * len(background) + ["emotion"] * len(emotions)
    )
    labels = [str(f) for f in features] + emotions
    colour = (
        [valence.get(best[f][0], np.nan) * np.sign(best[f][1]) for f in aligned.tolist()]
        + [np.nan] * len(background)
        + [valence.get(e, np.nan) for e in emotions]
    )
    hover = [_feature_hover(f, tokens.get(f), best.get(f)) for f in features.tolist()]
    hover += [_emotion_hover(e, valence.get(e)) for e in emotions]
    return kinds, labels, colour, hover


def _save_points(store: Store, options: UmapOptions, points: dict[str, Any]) -> None:
    """The drawn points, in a run of their own, in place of the SAE's earlier map."""
    with store.run("umap", asdict(options), atomic=True) as run_id:
        store.replace(
            "feature_map_points",
            {"sae_id": points["sae_id"], "corpus": options.corpus},
            _columns(points, run_id),
        )


def _columns(points: dict[str, Any], run_id: str) -> pa.Table:
    """The stored points: scalars repeated per point, NaN colours as NULL."""
    n = len(points["label"])
    columns = {
        key: value if isinstance(value, list | np.ndarray) else [value] * n
        for key, value in points.items()
    }
    colour = np.asarray(columns["colour"], dtype=float)
    columns["colour"] = pa.array(colour, mask=~np.isfinite(colour))
    return pa.table({"run_id": [run_id] * n, **columns})


def stored_map(store: Store, sae_id: str, corpus: str) -> go.Figure:
    """The map drawn from `feature_map_points`, as `umap` drew it."""
    table = store.query(
        "SELECT kind, label, x, y, colour, hover, title FROM feature_map_points "
        "WHERE sae_id = ? AND corpus = ?",
        [sae_id, corpus],
    ).to_pydict()
    colour = np.array([np.nan if c is None else c for c in table["colour"]], dtype=float)
    return interactive_map(
        np.column_stack([table["x"], table["y"]]),
        table["kind"],
        table["label"],
        colour,
        table["hover"],
        table["title"][0],
    )
