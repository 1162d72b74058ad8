"""Figures written twice: a PNG for papers and an offline, interactive HTML for exploring.

The HTML embeds plotly.js, so a figure opens anywhere without network access.
Matplotlib draws through an explicit Agg canvas rather than pyplot, so no global
backend or figure registry is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

from saefeatures.errors import SaefeaturesError, writable_folder

DPI = 120
# One diverging scale for both renderers: red negative, white zero, blue positive.
DIVERGING = ("#b2182b", "#f7f7f7", "#2166ac")
DIVERGING_CMAP = LinearSegmentedColormap.from_list("saefeatures_diverging", DIVERGING)
DIVERGING_SCALE = [[0.0, DIVERGING[0]], [0.5, DIVERGING[1]], [1.0, DIVERGING[2]]]
RATING_COLORS = {"valence": "#d95f02", "arousal": "#1b9e77"}


def write(figure: Figure, interactive: go.Figure, stem: Path) -> list[Path]:
    """Write the PNG and the self-contained HTML next to each other.

    The suffixes are appended, never substituted: a stem like `qwen2.5` keeps its dot.
    """
    png, html = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.html"
    writable_folder(png.parent, "figures")
    FigureCanvasAgg(figure)
    figure.savefig(png, dpi=DPI)
    interactive.write_html(html, include_plotlyjs=True, config={"responsive": True})
    return [png, html]


def same_length(**arrays: Sequence[Any]) -> None:
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise SaefeaturesError(f"inputs differ in length: {lengths}")


def symmetric_limit(values: np.ndarray) -> float:
    """Half-width of a colour range centred on 0, so 0 always maps to white."""
    return float(np.max(np.abs(values), initial=0.0)) or 1.0


def valence_order(valence: Sequence[float]) -> np.ndarray:
    """Indices from most positive to most negative valence (stable for ties)."""
    return np.argsort(-np.asarray(valence, dtype=float), kind="stable")


def _rating_series(rows: list[dict[str, Any]], rating: str) -> dict[str, np.ndarray]:
    picked = sorted((row for row in rows if row["rating"] == rating), key=lambda r: r["rel_depth"])
    keys = ("rel_depth", "layer", "pearson_r", "ci_low", "ci_high")
    return {key: np.array([row[key] for row in picked], dtype=float) for key in keys}


def r_by_layer(rows: list[dict[str, Any]], title: str, stem: Path) -> list[Path]:
    """Correlation with each rating across relative depth, with its bootstrap CI band."""
    ratings = list(dict.fromkeys(row["rating"] for row in rows))
    unknown = set(ratings) - RATING_COLORS.keys()
    if not rows or unknown:
        raise SaefeaturesError(f"need rows rated {sorted(RATING_COLORS)}, got {ratings}")
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    interactive = go.Figure()
    for rating in ratings:
        s, color = _rating_series(rows, rating), RATING_COLORS[rating]
        ax.fill_between(s["rel_depth"], s["ci_low"], s["ci_high"], color=color, alpha=0.2)
        ax.plot(s["rel_depth"], s["pearson_r"], marker="o", color=color, label=rating)
        interactive.add_trace(_band(s, color, rating))
        interactive.add_trace(_line(s, color, rating))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="relative depth (layer / layers)", ylabel="Pearson r", title=title, xlim=(0, 1))
    ax.legend()
    interactive.add_hline(y=0, line_color="grey", line_width=1)
    interactive.update_layout(
        title=title, xaxis_title="relative depth (layer / layers)", yaxis_title="Pearson r"
    )
    return write(figure, interactive, stem)


def _band(series: dict[str, np.ndarray], color: str, rating: str) -> go.Scatter:
    """The CI as one closed polygon: along the upper bound, back along the lower."""
    return go.Scatter(
        x=np.r_[series["rel_depth"], series["rel_depth"][::-1]],
        y=np.r_[series["ci_high"], series["ci_low"][::-1]],
        fill="toself",
        fillcolor=color,
        opacity=0.2,
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=rating,
    )


def _line(series: dict[str, np.ndarray], color: str, rating: str) -> go.Scatter:
    return go.Scatter(
        x=series["rel_depth"],
        y=series["pearson_r"],
        mode="lines+markers",
        name=rating,
        legendgroup=rating,
        line={"color": color},
        customdata=np.column_stack([series["layer"], series["ci_low"], series["ci_high"]]),
        hovertemplate=(
            f"{rating}<br>layer %{{customdata[0]:.0f}}<br>r = %{{y:.3f}}"
            "<br>CI [%{customdata[1]:.3f}, %{customdata[2]:.3f}]<extra></extra>"
        ),
    )


def pca_scatter(
    emotions: list[str],
    pc1: Sequence[float],
    pc2: Sequence[float],
    valence: Sequence[float],
    title: str,
    stem: Path,
    axis_labels: tuple[str, str] = ("PC1", "PC2"),
) -> list[Path]:
    """Emotions on two PCs, coloured by human valence, to see whether a PC tracks it."""
    same_length(emotions=emotions, pc1=pc1, pc2=pc2, valence=valence)
    valence = np.asarray(valence, dtype=float)
    limit = symmetric_limit(valence)
    figure = Figure(figsize=(8, 7), layout="constrained")
    ax = figure.add_subplot()
    points = ax.scatter(
        pc1, pc2, c=valence, cmap=DIVERGING_CMAP, norm=Normalize(-limit, limit), edgecolors="grey"
    )
    for name, x, y in zip(emotions, pc1, pc2, strict=True):
        ax.annotate(name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    figure.colorbar(points, ax=ax, label="valence")
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=title)
    interactive = go.Figure(
        go.Scatter(
            x=pc1,
            y=pc2,
            mode="markers+text",
            text=emotions,
            textposition="top center",
            marker={
                "color": valence,
                "colorscale": DIVERGING_SCALE,
                "cmin": -limit,
                "cmax": limit,
                "colorbar": {"title": {"text": "valence"}},
                "line": {"color": "grey", "width": 1},
            },
            hovertemplate="%{text}<br>x = %{x:.3f}<br>y = %{y:.3f}"
            "<br>valence = %{marker.color:.2f}<extra></extra>",
        )
    )
    interactive.update_layout(title=title, xaxis_title=axis_labels[0], yaxis_title=axis_labels[1])
    return write(figure, interactive, stem)


def cosine_heatmap(
    emotions: list[str], matrix: np.ndarray, valence: Sequence[float], title: str, stem: Path
) -> list[Path]:
    """Cosine similarities ordered by valence, so a valence split shows as two blocks."""
    return emotion_heatmap(emotions, matrix, valence, title, stem, "cosine similarity", 1.0)


def emotion_heatmap(
    emotions: list[str],
    matrix: np.ndarray,
    valence: Sequence[float],
    title: str,
    stem: Path,
    label: str,
    limit: float | None = None,
) -> list[Path]:
    """An emotions x emotions matrix (rows and columns in the same order), both axes
    ordered by valence; colours centred on 0, from -limit to limit (default: the data's)."""
    matrix = np.asarray(matrix, dtype=float)
    same_length(emotions=emotions, valence=valence)
    if matrix.shape != (len(emotions), len(emotions)):
        raise SaefeaturesError(
            f"matrix must be {len(emotions)} x {len(emotions)}, got {matrix.shape}"
        )
    if len(set(emotions)) != len(emotions):
        raise SaefeaturesError("emotion labels must be unique: the heatmap axes are categorical")
    limit = limit or symmetric_limit(matrix)
    order = valence_order(valence)
    labels = [emotions[i] for i in order]
    ordered = matrix[np.ix_(order, order)]
    side = max(6.0, 0.16 * len(labels) + 2.5)
    figure = Figure(figsize=(side + 1, side), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(ordered, cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    interactive = go.Figure(
        diverging_heatmap(
            ordered,
            labels,
            labels,
            limit,
            colorbar={"title": {"text": label}},
            hovertemplate=f"%{{y}} · %{{x}}<br>{label} = %{{z:.3f}}<extra></extra>",
        )
    )
    interactive.update_layout(title=title, yaxis_autorange="reversed")
    return write(figure, interactive, stem)


def diverging_heatmap(
    z: np.ndarray,
    x: Sequence[Any] | None = None,
    y: Sequence[Any] | None = None,
    limit: float | None = None,
    **extra: Any,
) -> go.Heatmap:
    """A plotly heatmap on the diverging scale, 0 white (limit: default from finite values)."""
    z = np.asarray(z, dtype=float)
    limit = limit or symmetric_limit(z[np.isfinite(z)])
    return go.Heatmap(z=z, x=x, y=y, zmin=-limit, zmax=limit, colorscale=DIVERGING_SCALE, **extra)


def grouped_bars(
    categories: list[str], series: dict[str, Sequence[float]], title: str, ylabel: str, stem: Path
) -> list[Path]:
    """One bar per category and series, side by side: e.g. an effect per emotion and level."""
    for name, values in series.items():
        same_length(categories=categories, **{name: values})
    figure = Figure(
        figsize=(max(6.0, 0.5 * len(categories) * len(series) + 2), 4.5), layout="constrained"
    )
    ax = figure.add_subplot()
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(categories))
    interactive = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        ax.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=name)
        interactive.add_trace(go.Bar(x=categories, y=list(values), name=name))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(positions, categories, rotation=45, ha="right")
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    interactive.update_layout(title=title, yaxis_title=ylabel, barmode="group")
    return write(figure, interactive, stem)


def lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    labels: tuple[str, str],
    stem: Path,
) -> list[Path]:
    """Several (x, y) series, e.g. an effect against the steering scale."""
    for name, (x, values) in series.items():
        same_length(x=x, **{name: values})
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    interactive = go.Figure()
    for name, (x, values) in series.items():
        ax.plot(x, values, marker="o", label=name)
        interactive.add_trace(
            go.Scatter(x=list(x), y=list(values), mode="lines+markers", name=name)
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title)
    ax.legend(fontsize=7, ncol=2)
    interactive.update_layout(title=title, xaxis_title=labels[0], yaxis_title=labels[1])
    return write(figure, interactive, stem)
