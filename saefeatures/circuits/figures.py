"""Figures of a stored circuit, one panel per condition: the circuit as a layered graph,
its faithfulness and completeness against random node sets, and the direction view
beside it (what patching the valence axis, the emotion subspace, the circuit's nodes or
the whole residual at each SAE layer does).

Each figure is drawn twice from the same rows, as `plots.write` keeps them: matplotlib
for the PNG, plotly for the HTML (which the report shows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from saefeatures import models, plots
from saefeatures.circuits.stored import INTERVENTIONS, StoredCircuit, in_condition, read_circuit
from saefeatures.store.database import Store

CURVE_COLORS = {"faithfulness": "#1b9e77", "completeness": "#7570b3"}
INTERVENTION_COLORS = dict(
    zip(
        INTERVENTIONS,
        (plots.RATING_COLORS["valence"], "#e7298a", "#1b9e77", "#666666"),
        strict=True,
    )
)
NODE_DIAMETER = (6.0, 30.0)  # marker diameter (points, pixels): no effect, the largest effect
EDGE_WIDTH = (0.5, 5.0)  # line width: no effect, the largest effect


def circuit_figures(store: Store, model: str, out: Path) -> list[str]:
    """Draw the model's stored circuit into `out`/circuits/<model>/ (PNG and HTML of each
    figure) and return the paths; nothing without circuit rows, and a figure whose rows
    are missing (e.g. no direction view) is left out."""
    circuit = read_circuit(store, model)
    if circuit is None:
        return []
    folder = out / "circuits" / models.resolve(model).slug
    written: list[Path] = []
    for name, part in PARTS.items():
        if part.rows(circuit):
            written += plots.write(part.static(circuit), part.interactive(circuit), folder / name)
    return [str(path) for path in written]


def interactive_figures(circuit: StoredCircuit) -> list[go.Figure]:
    """The plotly figures of the parts the store holds rows for, in the report's order."""
    return [part.interactive(circuit) for part in PARTS.values() if part.rows(circuit)]


def _value(row: dict[str, Any]) -> float:
    """A row's normalized effect; NULL (every pair's score gap was 0) draws as no effect."""
    value = row["normalized_effect"]
    return 0.0 if value is None else value


def _scaled(value: float, limit: float, span: tuple[float, float]) -> float:
    """Diameter or width within `span`, growing so that the area grows with |value|."""
    return span[0] + (span[1] - span[0]) * float(np.sqrt(abs(value) / limit))


def _plotly_title(title: str) -> str:
    """A title as plotly breaks its lines."""
    return title.replace("\n", "<br>")


def _panel_title(condition: str) -> str:
    return f"{condition} news"


# -- the layered graph -------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A node where the graph draws it: its SAE layer's column and its rank there."""

    node: dict[str, Any]
    x: int
    y: float


def _placed(circuit: StoredCircuit, condition: str) -> dict[tuple[int, int | None], Placed]:
    """The condition's nodes keyed by (layer, feature), one column per SAE layer, each
    column from the most positive effect at the top to the most negative at the bottom."""
    placed = {}
    for x, layer in enumerate(circuit.layers):
        column = [n for n in in_condition(circuit.nodes, condition) if n["layer"] == layer]
        column.sort(key=_value, reverse=True)
        for rank, node in enumerate(column):
            placed[layer, node["feature"]] = Placed(node, x, (len(column) - 1) / 2 - rank)
    return placed


def _edge_ends(
    edge: dict[str, Any], placed: dict[tuple[int, int | None], Placed]
) -> tuple[Placed, Placed] | None:
    up = placed.get((edge["upstream_layer"], edge["upstream_feature"]))
    down = placed.get((edge["downstream_layer"], edge["downstream_feature"]))
    return (up, down) if up and down else None


def _graph_limits(circuit: StoredCircuit) -> tuple[float, float]:
    """One node and one edge scale for every panel, so that conditions compare."""
    nodes = np.array([_value(n) for n in circuit.nodes])
    edges = np.array([_value(e) for e in circuit.edges])
    return plots.symmetric_limit(nodes), plots.symmetric_limit(edges)


def _edge_color(value: float) -> str:
    return plots.DIVERGING[2] if value >= 0 else plots.DIVERGING[0]


def _graph_title(circuit: StoredCircuit) -> str:
    return (
        f"{circuit.model}: the circuit\nnode size and colour: normalized integrated-gradients "
        "effect\nsquares: SAE error nodes; edges: normalized edge effect"
    )


def _tallest(circuit: StoredCircuit) -> int:
    """The most nodes any column of any panel holds, for the figure's height."""
    return max(
        sum(n["layer"] == layer for n in in_condition(circuit.nodes, c))
        for c in circuit.conditions
        for layer in circuit.layers
    )


def _half_height(circuit: StoredCircuit) -> float:
    """How far the graph's y axis reaches either side of 0: the tallest column, with room
    for its outer markers."""
    return (_tallest(circuit) - 1) / 2 + 0.7


def _graph_static(circuit: StoredCircuit) -> Figure:
    conditions = circuit.conditions
    node_limit, edge_limit = _graph_limits(circuit)
    figure = Figure(
        figsize=(
            len(conditions) * (2.2 * len(circuit.layers) + 1.5),
            max(3.5, 1.5 + 0.4 * _tallest(circuit)),
        ),
        layout="constrained",
    )
    axes = figure.subplots(1, len(conditions), squeeze=False)[0]
    colors = Normalize(-node_limit, node_limit)
    for ax, condition in zip(axes, conditions, strict=True):
        placed = _placed(circuit, condition)
        for edge in in_condition(circuit.edges, condition):
            ends = _edge_ends(edge, placed)
            if ends:
                ax.plot(
                    [ends[0].x, ends[1].x],
                    [ends[0].y, ends[1].y],
                    color=_edge_color(_value(edge)),
                    linewidth=_scaled(_value(edge), edge_limit, EDGE_WIDTH),
                    alpha=0.6,
                    zorder=1,
                )
        for spot in placed.values():
            error = spot.node["feature"] is None
            diameter = _scaled(_value(spot.node), node_limit, NODE_DIAMETER)
            ax.scatter(
                spot.x,
                spot.y,
                s=diameter**2,
                c=[_value(spot.node)],
                cmap=plots.DIVERGING_CMAP,
                norm=colors,
                marker="s" if error else "o",
                edgecolors="black" if error else "grey",
                linewidths=1.5 if error else 0.6,
                zorder=2,
            )
            ax.annotate(
                spot.node["label"],
                (spot.x, spot.y),
                xytext=(diameter / 2 + 3, 0),
                textcoords="offset points",
                fontsize=6,
                va="center",
            )
        ax.set_xticks(range(len(circuit.layers)), [f"layer {layer}" for layer in circuit.layers])
        ax.set_xlim(-0.5, len(circuit.layers) - 0.2)
        ax.set_yticks([])
        ax.set_ylim(-_half_height(circuit), _half_height(circuit))
        ax.set_title(_panel_title(condition))
    figure.suptitle(_graph_title(circuit), fontsize=9)
    return figure


def _graph_interactive(circuit: StoredCircuit) -> go.Figure:
    conditions = circuit.conditions
    node_limit, edge_limit = _graph_limits(circuit)
    figure = make_subplots(
        rows=1, cols=len(conditions), subplot_titles=[_panel_title(c) for c in conditions]
    )
    for col, condition in enumerate(conditions, start=1):
        placed = _placed(circuit, condition)
        for edge in in_condition(circuit.edges, condition):
            ends = _edge_ends(edge, placed)
            if ends:
                figure.add_trace(
                    go.Scatter(
                        x=[ends[0].x, ends[1].x],
                        y=[ends[0].y, ends[1].y],
                        mode="lines",
                        line={
                            "color": _edge_color(_value(edge)),
                            "width": _scaled(_value(edge), edge_limit, EDGE_WIDTH),
                        },
                        opacity=0.6,
                        hovertext=f"{ends[0].node['label']} → {ends[1].node['label']}: "
                        f"{_value(edge):+.3f}",
                        hoverinfo="text",
                        showlegend=False,
                    ),
                    row=1,
                    col=col,
                )
        for error in (False, True):
            spots = [s for s in placed.values() if (s.node["feature"] is None) == error]
            values = [_value(s.node) for s in spots]
            figure.add_trace(
                go.Scatter(
                    x=[s.x for s in spots],
                    y=[s.y for s in spots],
                    mode="markers+text",
                    text=[s.node["label"] for s in spots],
                    textposition="middle right",
                    textfont={"size": 9},
                    marker={
                        "symbol": "square" if error else "circle",
                        "size": [_scaled(v, node_limit, NODE_DIAMETER) for v in values],
                        "color": values,
                        "colorscale": plots.DIVERGING_SCALE,
                        "cmin": -node_limit,
                        "cmax": node_limit,
                        "showscale": col == 1 and not error,
                        "colorbar": {"title": {"text": "normalized effect"}},
                        "line": {"color": "black" if error else "grey", "width": 2 if error else 1},
                    },
                    customdata=values,
                    hovertemplate="%{text}<br>normalized effect %{customdata:+.3f}<extra></extra>",
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
        figure.update_xaxes(
            tickvals=list(range(len(circuit.layers))),
            ticktext=[f"layer {layer}" for layer in circuit.layers],
            range=[-0.5, len(circuit.layers) - 0.2],
            row=1,
            col=col,
        )
    figure.update_yaxes(visible=False, range=[-_half_height(circuit), _half_height(circuit)])
    figure.update_layout(
        title=_plotly_title(_graph_title(circuit)),
        title_font_size=12,
        height=max(450, 150 + 28 * _tallest(circuit)),
    )
    return figure


# -- faithfulness and completeness -----------------------------------------------


def _curve(circuit: StoredCircuit, condition: str, curve: str, selection: str) -> dict:
    """One curve as arrays over node counts (NULL values and spreads as NaN)."""
    rows = [
        r
        for r in in_condition(circuit.curves, condition)
        if r["curve"] == curve and r["selection"] == selection
    ]
    return {
        key: np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
        for key in ("nodes", "value", "spread")
    }


def _circuit_size(circuit: StoredCircuit, condition: str) -> int:
    return len(in_condition(circuit.nodes, condition))


def _curves_title(circuit: StoredCircuit) -> str:
    return (
        f"{circuit.model}: faithfulness and completeness of the circuit's largest nodes\n"
        "against random node sets (mean ± sd over draws); dotted: the circuit's size"
    )


def _curves_static(circuit: StoredCircuit) -> Figure:
    conditions = circuit.conditions
    figure = Figure(figsize=(4.5 * len(conditions) + 1, 4.5), layout="constrained")
    axes = figure.subplots(1, len(conditions), squeeze=False)[0]
    for ax, condition in zip(axes, conditions, strict=True):
        for curve, color in CURVE_COLORS.items():
            mine = _curve(circuit, condition, curve, "circuit")
            drawn = _curve(circuit, condition, curve, "random")
            ax.plot(
                mine["nodes"], mine["value"], color=color, marker="o", label=f"{curve}: circuit"
            )
            ax.plot(
                drawn["nodes"],
                drawn["value"],
                color=color,
                linestyle="--",
                label=f"{curve}: random sets",
            )
            ax.fill_between(
                drawn["nodes"],
                drawn["value"] - drawn["spread"],
                drawn["value"] + drawn["spread"],
                color=color,
                alpha=0.15,
            )
        for level in (0, 1):
            ax.axhline(level, color="grey", linewidth=0.8)
        ax.axvline(_circuit_size(circuit, condition), color="grey", linestyle=":")
        ax.set_xscale("log")
        ax.set(xlabel="nodes in the set", ylabel="(m(C) - m(none)) / (m(all) - m(none))")
        ax.set_title(_panel_title(condition))
        ax.legend(fontsize=7)
    figure.suptitle(_curves_title(circuit), fontsize=9)
    return figure


def _band(x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str) -> go.Scatter:
    """A closed polygon along the upper bound and back along the lower."""
    return go.Scatter(
        x=np.r_[x, x[::-1]],
        y=np.r_[high, low[::-1]],
        fill="toself",
        fillcolor=color,
        opacity=0.15,
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
    )


def _curves_interactive(circuit: StoredCircuit) -> go.Figure:
    conditions = circuit.conditions
    figure = make_subplots(
        rows=1, cols=len(conditions), subplot_titles=[_panel_title(c) for c in conditions]
    )
    for col, condition in enumerate(conditions, start=1):
        for curve, color in CURVE_COLORS.items():
            mine = _curve(circuit, condition, curve, "circuit")
            drawn = _curve(circuit, condition, curve, "random")
            traces = [
                _band(
                    drawn["nodes"],
                    drawn["value"] - drawn["spread"],
                    drawn["value"] + drawn["spread"],
                    color,
                ),
                go.Scatter(
                    x=drawn["nodes"],
                    y=drawn["value"],
                    mode="lines",
                    line={"color": color, "dash": "dash"},
                    name=f"{curve}: random sets",
                    customdata=drawn["spread"],
                    hovertemplate="%{x} nodes: %{y:.3f} ± %{customdata:.3f}<extra></extra>",
                    showlegend=col == 1,
                ),
                go.Scatter(
                    x=mine["nodes"],
                    y=mine["value"],
                    mode="lines+markers",
                    line={"color": color},
                    name=f"{curve}: circuit",
                    hovertemplate="%{x} nodes: %{y:.3f}<extra></extra>",
                    showlegend=col == 1,
                ),
            ]
            for trace in traces:
                figure.add_trace(trace, row=1, col=col)
        size = _circuit_size(circuit, condition)
        figure.add_trace(  # a trace, not a shape: shapes on a log axis take log10 positions
            go.Scatter(
                x=[size, size],
                y=[0, 1],
                mode="lines",
                line={"color": "grey", "dash": "dot"},
                hovertext=f"the circuit: {size} nodes",
                hoverinfo="text",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    figure.update_xaxes(type="log", title_text="nodes in the set")
    figure.update_yaxes(title_text="(m(C) - m(none)) / (m(all) - m(none))", row=1, col=1)
    figure.update_layout(title=_plotly_title(_curves_title(circuit)), title_font_size=12)
    return figure


# -- the direction view ----------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    """One intervention's normalized effects by layer, and its null's mean ± 2 SD (NaN
    where it has none)."""

    layers: list[int]
    values: list[float]
    low: list[float]
    high: list[float]

    @property
    def has_null(self) -> bool:
        return not np.all(np.isnan(self.low))


def _by_intervention(circuit: StoredCircuit, condition: str) -> dict[str, _Series]:
    """Per intervention stored: its series (NULL as NaN). The null is normalized by the
    same mean gap as the effect beside it."""
    found: dict[str, _Series] = {}
    for row in in_condition(circuit.directions, condition):
        series = found.setdefault(row["intervention"], _Series([], [], [], []))
        normalized = row["normalized_effect"]
        series.layers.append(row["layer"])
        series.values.append(np.nan if normalized is None else normalized)
        null, spread = row.get("null_effect"), row.get("null_spread")
        if normalized is None or null is None or spread is None or not row["effect"]:
            series.low.append(np.nan)
            series.high.append(np.nan)
            continue
        scale = normalized / row["effect"]  # 1 / the pairs' mean gap
        band = sorted(((null - 2 * spread) * scale, (null + 2 * spread) * scale))
        series.low.append(band[0])
        series.high.append(band[1])
    return {name: found[name] for name in INTERVENTION_COLORS if name in found}


def _directions_title(circuit: StoredCircuit) -> str:
    return (
        f"{circuit.model}: normalized effect of patching clean values at each SAE layer:\n"
        "the valence axis, the emotion subspace, the circuit's nodes there, the whole residual;\n"
        "shaded: each one's null (random subspaces or node sets of its size), mean ± 2 SD"
    )


def _directions_static(circuit: StoredCircuit) -> Figure:
    conditions = circuit.conditions
    figure = Figure(figsize=(4.5 * len(conditions) + 1, 4.5), layout="constrained")
    axes = figure.subplots(1, len(conditions), squeeze=False)[0]
    for ax, condition in zip(axes, conditions, strict=True):
        for name, series in _by_intervention(circuit, condition).items():
            color = INTERVENTION_COLORS[name]
            ax.plot(series.layers, series.values, marker="o", color=color, label=name)
            if series.has_null:
                ax.fill_between(series.layers, series.low, series.high, color=color, alpha=0.15)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(circuit.layers)
        ax.set(xlabel="layer", ylabel="(patched - corrupted) / (clean - corrupted)")
        ax.set_title(_panel_title(condition))
        ax.legend(fontsize=7)
    figure.suptitle(_directions_title(circuit), fontsize=9)
    return figure


def _directions_interactive(circuit: StoredCircuit) -> go.Figure:
    conditions = circuit.conditions
    figure = make_subplots(
        rows=1, cols=len(conditions), subplot_titles=[_panel_title(c) for c in conditions]
    )
    for col, condition in enumerate(conditions, start=1):
        for name, series in _by_intervention(circuit, condition).items():
            if series.has_null:
                figure.add_trace(
                    go.Scatter(
                        x=series.layers + series.layers[::-1],
                        y=series.high + series.low[::-1],
                        fill="toself",
                        fillcolor=INTERVENTION_COLORS[name],
                        opacity=0.15,
                        line={"width": 0},
                        name=f"{name} null",
                        legendgroup=name,
                        showlegend=False,
                        hoverinfo="skip",
                    ),
                    row=1,
                    col=col,
                )
            figure.add_trace(
                go.Scatter(
                    x=series.layers,
                    y=series.values,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    line={"color": INTERVENTION_COLORS[name]},
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        figure.add_hline(y=0, line_color="grey", line_width=1, row=1, col=col)
    figure.update_xaxes(title_text="layer", tickvals=circuit.layers)
    figure.update_yaxes(title_text="(patched - corrupted) / (clean - corrupted)", row=1, col=1)
    figure.update_layout(title=_plotly_title(_directions_title(circuit)), title_font_size=12)
    return figure


@dataclass(frozen=True)
class Part:
    """One figure: the rows it needs, and its two renderings."""

    rows: Callable[[StoredCircuit], list[dict[str, Any]]]
    static: Callable[[StoredCircuit], Figure]
    interactive: Callable[[StoredCircuit], go.Figure]


PARTS = {
    "circuit_graph": Part(lambda c: c.nodes, _graph_static, _graph_interactive),
    "faithfulness_completeness": Part(lambda c: c.curves, _curves_static, _curves_interactive),
    "effects_by_layer": Part(lambda c: c.directions, _directions_static, _directions_interactive),
}
