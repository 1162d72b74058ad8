"""Report sections on the model's choices: preferences between activities, and behaviour
under pressure, each unsteered and steered at the direction and the feature level."""

from __future__ import annotations

import plotly.graph_objects as go

from saefeatures.cli import render
from saefeatures.report.page import Section, fetch, grouped
from saefeatures.store.database import Store

SHOWN_ACTIVITIES = 5  # most and least preferred, per model
SCALE_AXIS = "scale (x mean residual norm)"


def _figure_and_rows(
    section: Section, figure: go.Figure, rows: list[dict], title: str, x: str, y: str
) -> None:
    """A figure with its titles, then the rows it was drawn from."""
    figure.update_layout(title=title, xaxis_title=x, yaxis_title=y)
    section.figure(figure)
    section.table(list(rows[0]), rows)


def _with_interval(rows: list[dict], x: str, y: str, low: str, high: str, name: str) -> go.Scatter:
    return go.Scatter(
        x=[r[x] for r in rows],
        y=[r[y] for r in rows],
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [r[high] - r[y] for r in rows],
            "arrayminus": [r[y] - r[low] for r in rows],
        },
        mode="lines+markers",
        name=name,
    )


def behaviour(store: Store) -> Section:
    section = Section("behaviour", "Behaviour under steering")
    rows = fetch(
        store,
        "SELECT model, layer, level, emotion, k, scale, scenarios, p_unethical, ci_low, ci_high, "
        "shift, shift_ci_low, shift_ci_high, shift_p, shift_q, p_a, run_id FROM "
        "behaviour_summary "
        "ORDER BY model, level, emotion, scale",
    )
    if not rows:
        section.empty("No behaviour results yet: `saefeatures validate behaviour`.")
        return section
    section.text(
        "P(unethical option) of the pressure scenarios, softmax over the A/B logits after a "
        'prefilled "(", each scenario asked in both option orders and averaged; 95 % '
        "bootstrap intervals over scenarios. A shift's p flips the signs of the per-scenario "
        "differences; q corrects it (Benjamini-Hochberg) over every steered condition of the "
        "run: only a condition with q < 0.05 is a finding. p_a is the mean P(A): the letter "
        "bias the order swap cancels."
    )
    unsteered = {r["model"]: r for r in rows if r["level"] == "none"}
    for model, group in grouped(rows, "model").items():
        figure = go.Figure()
        for (level, emotion), steered in grouped(group, "level", "emotion").items():
            if level != "none":
                points = [unsteered[model[0]], *steered]
                figure.add_trace(
                    _with_interval(
                        points, "scale", "p_unethical", "ci_low", "ci_high", f"{emotion} ({level})"
                    )
                )
        figure.update_layout(
            title=f"{model[0]}, layer {group[0]['layer']}: P(unethical) under steering",
            xaxis_title=SCALE_AXIS,
            yaxis_title="P(unethical option)",
        )
        section.figure(figure)
    section.table(list(rows[0]), rows)
    return section


def preferences(store: Store) -> Section:
    section = Section("preferences", "Preferences")
    scores = fetch(
        store,
        "SELECT model, activity, category, comparisons, elo, ci_low, ci_high, run_id "
        "FROM preference_scores ORDER BY model, elo DESC",
    )
    if not scores:
        section.empty("No preference results yet: `saefeatures validate preferences`.")
        return section
    section.text(
        'Bradley-Terry strength of each activity from "Would you prefer to (A) ... or (B) '
        '...?" (soft outcomes from the A/B logits, with a first-position term), in Elo '
        "points with 95 % bootstrap intervals over pairs."
    )
    for (model,), group in grouped(scores, "model").items():
        figure = go.Figure()
        for (category,), members in grouped(group, "category").items():
            figure.add_trace(
                go.Bar(
                    x=[r["activity"] for r in members],
                    y=[r["elo"] - 1500 for r in members],
                    base=1500,
                    name=category,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [r["ci_high"] - r["elo"] for r in members],
                        "arrayminus": [r["elo"] - r["ci_low"] for r in members],
                    },
                )
            )
        figure.update_layout(
            title=f"{model}: Elo per activity",
            yaxis_title="Elo",
            xaxis={"categoryorder": "total descending"},
            height=600,
        )
        section.figure(figure)
        section.table(list(group[0]), render.ends(group, SHOWN_ACTIVITIES))
    _correlations(store, section)
    _steering(store, section)
    return section


def _correlations(store: Store, section: Section) -> None:
    """Per layer, the emotions whose projection on the activity's tokens tracks Elo most."""
    rows = fetch(
        store,
        "SELECT model, layer, arg_max(emotion, pearson_r) AS positive, max(pearson_r) AS "
        "positive_r, arg_min(emotion, pearson_r) AS negative, min(pearson_r) AS negative_r, "
        "string_agg(DISTINCT run_id, ', ') AS run_id FROM preference_correlations "
        "GROUP BY ALL ORDER BY ALL",
    )
    figure = go.Figure()
    for (model,), group in grouped(rows, "model").items():
        for side in ("positive", "negative"):
            figure.add_trace(
                go.Scatter(
                    x=[r["layer"] for r in group],
                    y=[r[f"{side}_r"] for r in group],
                    text=[r[side] for r in group],
                    mode="lines+markers",
                    name=f"{model} {side}",
                )
            )
    title = "Strongest correlation of an emotion's projection (activity tokens) with Elo"
    _figure_and_rows(section, figure, rows, title, "layer", "Pearson r over activities")


def _steering(store: Store, section: Section) -> None:
    rows = fetch(
        store,
        "SELECT model, layer, level, emotion, k, scale, avg(shift) AS mean_shift, count(*) AS "
        "activities, string_agg(DISTINCT run_id, ', ') AS run_id FROM preference_steering "
        "GROUP BY ALL ORDER BY ALL",
    )
    if not rows:
        return
    figure = go.Figure(
        [
            go.Scatter(
                x=[r["scale"] for r in group],
                y=[r["mean_shift"] for r in group],
                mode="lines+markers",
                name=f"{model} {emotion} ({level})",
            )
            for (model, level, emotion), group in grouped(rows, "model", "level", "emotion").items()
        ]
    )
    _figure_and_rows(
        section,
        figure,
        rows,
        "Elo shift of an activity steered on its own tokens (mean over steered activities)",
        SCALE_AXIS,
        "Elo shift",
    )
    effects = fetch(
        store,
        "SELECT model, layer, metric, direction_value, feature_value, run_id FROM comparisons "
        "WHERE kind = 'validation-preferences' AND metric LIKE 'Elo shift vs%' ORDER BY ALL",
    )
    if effects:
        section.text(
            "Steering effect against the emotion's preference correlation, across emotions:"
        )
        section.table(list(effects[0]), effects)
