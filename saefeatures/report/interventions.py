"""Report sections on what interventions do: steering and activation patching."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go

from saefeatures import plots
from saefeatures.report.page import Section, fetch, grouped
from saefeatures.store.database import Store

SHOWN_GENERATIONS = 6


def steering(store: Store) -> Section:
    section = Section("steering", "Steering")
    rows = fetch(
        store,
        "SELECT model, layer, level, coalesce(k, 0) AS k, scale, effective_scale, "
        "self_effect AS own, other_effect AS other, run_id FROM steering_effects ORDER BY ALL",
    )
    if not rows:
        section.empty("No steering yet: `saefeatures steer --layer L`.")
        return section
    figure = go.Figure()
    for (model, layer, level, k), group in grouped(rows, "model", "layer", "level", "k").items():
        name = f"{model} L{layer} {level}" + (f" top-{k}" if k else "")
        figure.add_trace(
            go.Scatter(
                x=[r["effective_scale"] for r in group],
                y=[r["own"] for r in group],
                mode="lines+markers",
                name=name,
            )
        )
    figure.update_layout(
        title="Self effect: change in log P of the steered emotion's own word",
        xaxis_title="effective scale (|Δ residual| / mean residual norm)",
        yaxis_title="delta log P",
    )
    section.figure(figure)
    columns = ["model", "layer", "level", "k", "scale", "effective_scale", "own", "other", "run_id"]
    section.table(columns, rows)
    _cross_emotion(store, section)
    generations = fetch(
        store,
        "SELECT model, layer, level, emotion, scale, value, extra, run_id "
        "FROM steering_results WHERE metric = 'generation_lexicon_valence' "
        "ORDER BY scale DESC, emotion LIMIT ?",
        [SHOWN_GENERATIONS],
    )
    if generations:
        section.text("Example generations under steering (lexicon valence of the text):")
        section.table(
            ["model", "layer", "level", "emotion", "scale", "valence", "text", "run_id"],
            [
                [
                    g["model"],
                    g["layer"],
                    g["level"],
                    g["emotion"],
                    g["scale"],
                    g["value"],
                    json.loads(g["extra"])["text"],
                    g["run_id"],
                ]
                for g in generations
            ],
        )
    return section


def _cross_emotion(store: Store, section: Section) -> None:
    """The direction level's emotion x target heatmap at each model's smallest scale."""
    cells = fetch(
        store,
        "SELECT model, layer, emotion, target, avg(value) AS value FROM "
        "steering_results s WHERE metric = 'delta_logprob' AND level = 'direction' "
        "AND scale = (SELECT min(scale) FROM steering_results t WHERE t.model = "
        "s.model AND t.level = 'direction') GROUP BY ALL ORDER BY ALL",
    )
    for (model, layer), group in grouped(cells, "model", "layer").items():
        emotions = sorted({c["emotion"] for c in group})
        targets = sorted({c["target"] for c in group})
        grid = np.full((len(emotions), len(targets)), np.nan)
        for c in group:
            grid[emotions.index(c["emotion"]), targets.index(c["target"])] = c["value"]
        figure = go.Figure(plots.diverging_heatmap(grid, targets, emotions))
        figure.update_layout(
            title=f"{model}, layer {layer}: delta log P of each target word "
            "(columns) when steering with each emotion (rows)",
            height=max(400, 18 * len(emotions)),
        )
        section.figure(figure)


def patching(store: Store) -> Section:
    section = Section("patching", "Activation patching")
    scores = fetch(
        store,
        "SELECT model, score_name, condition, count(*) AS pairs, count(*) "
        "FILTER (WHERE CASE condition WHEN 'good' THEN clean_score > corrupted_score "
        "ELSE clean_score < corrupted_score END) AS right_sign_gap, avg(clean_score "
        "- corrupted_score) AS mean_gap, string_agg(DISTINCT run_id, ', ') AS run_id "
        "FROM pair_scores GROUP BY ALL ORDER BY ALL",
    )
    if not scores:
        section.empty("No patching yet: `saefeatures patch`.")
        return section
    columns = ["model", "score_name", "condition", "pairs", "right_sign_gap", "mean_gap", "run_id"]
    section.table(columns, scores)
    section.figure(_residual_figure(store))
    _head_maps(store, section)
    _faithfulness(store, section)
    return section


def _residual_figure(store: Store) -> go.Figure:
    """Mean normalized effect of patching the residual at the score position, by layer."""
    effects = fetch(
        store,
        "WITH resid AS (SELECT *, max(position) OVER (PARTITION BY model, "
        "pair_id) AS last FROM patching_results WHERE level = 'resid') SELECT "
        "model, condition, layer, avg(normalized) AS effect FROM resid WHERE "
        "position = last GROUP BY ALL ORDER BY ALL",
    )
    figure = go.Figure(
        [
            go.Scatter(
                x=[r["layer"] for r in g],
                y=[r["effect"] for r in g],
                mode="lines+markers",
                name=f"{model} {condition}",
            )
            for (model, condition), g in grouped(effects, "model", "condition").items()
        ]
    )
    figure.update_layout(
        title="Residual patching at the score position: mean normalized effect",
        xaxis_title="layer",
        yaxis_title="(patched - corrupted) / (clean - corrupted)",
    )
    return figure


def _faithfulness(store: Store, section: Section) -> None:
    """Patching only the top-k features by attribution, against the whole layer."""
    faithful = fetch(
        store,
        "SELECT model, sae_id, layer, condition, k, count(*) AS pairs, "
        "avg(effect / gap) AS top_k, avg(layer_effect / gap) AS whole_layer, "
        "string_agg(DISTINCT run_id, ', ') AS run_id FROM patching_faithfulness "
        "WHERE gap <> 0 GROUP BY ALL ORDER BY ALL",
    )
    if faithful:
        section.text(
            "Feature level: normalized effect of patching only the top-k features "
            "by attribution, against the whole layer:"
        )
        columns = [
            "model",
            "sae_id",
            "layer",
            "condition",
            "k",
            "pairs",
            "top_k",
            "whole_layer",
            "run_id",
        ]
        section.table(columns, faithful)


def _head_maps(store: Store, section: Section) -> None:
    cells = fetch(
        store,
        "SELECT model, condition, layer, head, avg(normalized) AS effect FROM "
        "patching_results WHERE level = 'heads' GROUP BY ALL ORDER BY ALL",
    )
    for (model, condition), group in grouped(cells, "model", "condition").items():
        grid = np.zeros((max(c["layer"] for c in group) + 1, max(c["head"] for c in group) + 1))
        for c in group:
            grid[c["layer"], c["head"]] = c["effect"]
        figure = go.Figure(plots.diverging_heatmap(grid))
        figure.update_layout(
            title=f"{model}, {condition} news: mean normalized effect per head",
            xaxis_title="head",
            yaxis_title="layer",
        )
        section.figure(figure)
