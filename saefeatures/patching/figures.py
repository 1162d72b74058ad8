"""Figures of the patching stage: scores, peak layers, effect vs gap, head heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from saefeatures import plots
from saefeatures.patching import attribution, reply_scores
from saefeatures.patching.conclusions import CONDITIONS

COLORS = {"good": "#2166ac", "bad": "#b2182b"}


def draw(
    folder: Path,
    model: str,
    score_rows: list[dict[str, Any]],
    sweep_rows: list[dict[str, Any]],
    summary: dict[str, Any],
    n_layers: int,
    n_heads: int,
) -> list[Path]:
    written = _strips(
        {
            name: {
                c: [
                    r["clean_score"]
                    for r in score_rows
                    if r["score_name"] == name and r["condition"] == c
                ]
                for c in CONDITIONS
            }
            for name in reply_scores.SCORES
        },
        f"{model}: score of the clean prompt by condition",
        "score",
        folder / "score_by_condition",
    )
    peaks = summary.get("peaks", {})
    if peaks:
        written += _strips(
            {"peak layer": {c: peaks[c]["depths"] for c in peaks}},
            f"{model}: peak layer of the residual patch ({summary['swept']} score)",
            "relative depth",
            folder / "peak_layer_by_condition",
        )
        written += _scatter(
            peaks, f"{model}: max patch effect vs score gap", folder / "max_effect_vs_gap"
        )
    heads = [row for row in sweep_rows if row["level"] == "heads"]
    for condition in CONDITIONS:
        matrix = _head_means(heads, condition, n_layers, n_heads)
        if matrix is not None:
            title = f"{model}: head patching, {condition} news\n(mean normalized effect)"
            written += _heatmap(matrix, title, folder / f"heads_{condition}")
    by_layer: dict[int, dict[str, list[float]]] = {}  # one SAE per layer is patched
    for level in summary.get("features", []):
        series = by_layer.setdefault(level["layer"], {})
        series[f"{level['condition']} news"] = list(level["recovered"])
        series[f"{level['condition']} news, k random features"] = list(level["random_recovered"])
    for layer, series in by_layer.items():
        written += plots.lines(
            {name: (list(attribution.TOP_KS), values) for name, values in series.items()},
            f"{model}: patching only the top-k features at layer {layer}\n"
            "(median share of the whole layer's patching effect)",
            ("k (features patched, ranked by attribution)", "recovered share"),
            folder / f"features_L{layer}_recovered",
        )
    return written


def _strips(panels: dict[str, dict[str, list[float]]], title: str, ylabel: str, stem: Path):
    """One jittered strip per condition in each panel, with the mean as a bar."""
    figure = Figure(figsize=(4 + 3 * len(panels), 4.5), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    interactive = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    jitter = np.random.default_rng(0)
    for i, (panel, groups) in enumerate(panels.items()):
        ax = axes[i]
        for j, condition in enumerate(CONDITIONS):
            values = np.asarray(groups.get(condition, []), dtype=float)
            x = j + jitter.uniform(-0.15, 0.15, len(values))
            ax.scatter(x, values, color=COLORS[condition], alpha=0.6, s=14)
            if len(values):
                ax.hlines(values.mean(), j - 0.3, j + 0.3, color="black")
            interactive.add_trace(
                go.Box(
                    y=values,
                    name=condition,
                    boxpoints="all",
                    jitter=0.4,
                    marker_color=COLORS[condition],
                    showlegend=i == 0,
                ),
                row=1,
                col=i + 1,
            )
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(CONDITIONS)), CONDITIONS)
        ax.set(title=panel, ylabel=ylabel)
    figure.suptitle(title)
    interactive.update_layout(title=title)
    return plots.write(figure, interactive, stem)


def _scatter(peaks: dict[str, dict[str, Any]], title: str, stem: Path) -> list[Path]:
    figure = Figure(figsize=(6.5, 5), layout="constrained")
    ax = figure.add_subplot()
    interactive = go.Figure()
    for condition, peak in peaks.items():
        ax.scatter(peak["gaps"], peak["effects"], color=COLORS[condition], label=condition, s=16)
        interactive.add_trace(
            go.Scatter(
                x=peak["gaps"],
                y=peak["effects"],
                mode="markers",
                name=condition,
                marker_color=COLORS[condition],
            )
        )
    labels = ("score gap (clean - corrupted)", "max normalized patch effect")
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title)
    ax.legend()
    interactive.update_layout(title=title, xaxis_title=labels[0], yaxis_title=labels[1])
    return plots.write(figure, interactive, stem)


def _head_means(heads, condition, n_layers, n_heads) -> np.ndarray | None:
    chosen = [row for row in heads if row["condition"] == condition]
    if not chosen:
        return None
    total, count = np.zeros((n_layers, n_heads)), np.zeros((n_layers, n_heads))
    for row in chosen:
        if np.isfinite(row["normalized"]):
            total[row["layer"], row["head"]] += row["normalized"]
            count[row["layer"], row["head"]] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _heatmap(matrix: np.ndarray, title: str, stem: Path) -> list[Path]:
    limit = plots.symmetric_limit(matrix)
    figure = Figure(
        figsize=(max(5.0, 2 + 0.5 * matrix.shape[1]), 1.5 + 0.22 * matrix.shape[0]),
        layout="constrained",
    )
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap=plots.DIVERGING_CMAP, vmin=-limit, vmax=limit, aspect="auto")
    ax.set(xlabel="head", ylabel="layer", title=title)
    ax.title.set_fontsize(9)
    figure.colorbar(image, ax=ax, label="normalized effect")
    interactive = go.Figure(plots.diverging_heatmap(matrix, limit=limit))
    interactive.update_layout(title=title, xaxis_title="head", yaxis_title="layer")
    return plots.write(figure, interactive, stem)
