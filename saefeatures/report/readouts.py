"""Report sections on whether emotion read-outs behave as the original study found:
retrieval on unseen text and the quantity test, each at the direction and feature level."""

from __future__ import annotations

import plotly.graph_objects as go

from saefeatures.report.page import Section, fetch, grouped
from saefeatures.store.database import Store

SHOWN_EMOTIONS = ("afraid", "calm", "happy", "sad")
SHOWN_PASSAGES = 5
SNIPPET = 220  # characters of a passage shown


def _level_trace(rows: list[dict], y: str, name: str, level: str) -> go.Scatter:
    """Direction: a line over layers; features: markers at the SAE layers."""
    return go.Scatter(
        x=[r["layer"] for r in rows],
        y=[r[y] for r in rows],
        name=name,
        mode="lines+markers" if level == "direction" else "markers",
        marker={"size": 7 if level == "direction" else 13},
    )


def retrieval(store: Store) -> Section:
    section = Section("retrieval", "Retrieval on unseen text")
    rows = fetch(
        store,
        "SELECT model, corpus, split, level, layer, any_value(sae_id) AS sae_id, "
        "avg(precision_at_10) AS p_at_10, avg(average_precision) AS map, "
        "avg(chance_average_precision) AS chance_map, "
        "avg((p_value < 0.05)::INT) AS share_p_below_05, string_agg(DISTINCT run_id, ', ') AS "
        "run_id FROM retrieval_results GROUP BY model, corpus, split, level, layer ORDER BY ALL",
    )
    if not rows:
        section.empty("No retrieval yet: `saefeatures validate retrieval`.")
        return section
    section.text(
        "Vectors rebuilt from one half of the corpus rank the other half's passages, the "
        "neutral passages and the other emotions' training passages; each emotion's own "
        "held-out passages are the hits. The feature "
        "level ranks by the summed activation of the emotion's top aligned features. "
        "Tied scores count in every order alike. Chance: the mean average precision of "
        "random rankings."
    )
    section.figure(_map_figure(rows))
    columns = [
        "model",
        "corpus",
        "split",
        "level",
        "layer",
        "sae_id",
        "p_at_10",
        "map",
        "chance_map",
        "share_p_below_05",
        "run_id",
    ]
    section.table(columns, _best_and_sae_layers(rows))
    _top_passages(store, section)
    return section


def _map_figure(rows: list[dict]) -> go.Figure:
    """Each setting's MAP by layer, with the chance MAP dotted beside it."""
    figure = go.Figure()
    for (model, corpus, split, level), group in grouped(
        rows, "model", "corpus", "split", "level"
    ).items():
        name = f"{model} {corpus}/{split} {level}"
        figure.add_trace(_level_trace(group, "map", name, level))
        figure.add_trace(
            go.Scatter(
                x=[r["layer"] for r in group],
                y=[r["chance_map"] for r in group],
                name=f"{name}: chance",
                mode="lines" if level == "direction" else "markers",
                line={"dash": "dot"},
                marker={"symbol": "x"},
            )
        )
    figure.update_layout(
        title="Mean average precision over emotions, by layer",
        xaxis_title="layer",
        yaxis_title="MAP",
    )
    return figure


def _best_and_sae_layers(rows: list[dict]) -> list[dict]:
    """Each setting's best direction layer, and both levels at every SAE layer."""
    shown = []
    for _, group in grouped(rows, "model", "corpus", "split").items():
        direction = [r for r in group if r["level"] == "direction"]
        sae_layers = {r["layer"] for r in group if r["level"] == "features"}
        best = max(direction, key=lambda r: r["map"]) if direction else None
        shown += [r for r in group if r is best or r["layer"] in sae_layers]
    return shown


def _top_passages(store: Store, section: Section) -> None:
    """The first passages each level ranks for a few emotions, at the best direction layer
    and at the SAE layers."""
    marks = ", ".join("?" for _ in SHOWN_EMOTIONS)
    top = fetch(
        store,
        "WITH best AS (SELECT model, corpus, split, arg_max(layer, m) AS layer FROM (SELECT "
        "model, corpus, split, layer, avg(average_precision) AS m FROM retrieval_results WHERE "
        "level = 'direction' GROUP BY ALL) GROUP BY ALL) SELECT t.model, t.corpus, t.split, "
        "t.emotion, t.level, t.layer, t.rank, t.relevant, t.part, coalesce(t.passage_emotion, "
        "'(neutral)') AS passage_emotion, t.score, left(p.text, ?) AS text FROM "
        "retrieval_top_passages t JOIN passages p ON p.corpus = t.source_corpus AND "
        "p.passage_id = t.passage_id LEFT JOIN best b ON b.model = t.model AND b.corpus = "
        "t.corpus AND b.split = t.split WHERE t.rank <= ? AND t.emotion IN "
        f"({marks}) AND (t.layer = b.layer OR t.level = 'features') ORDER BY t.model, "
        "t.corpus, t.split, t.emotion, t.level, t.layer, t.rank",
        [SNIPPET, SHOWN_PASSAGES, *SHOWN_EMOTIONS],
    )
    if not top:
        return
    section.text(
        f"The first {SHOWN_PASSAGES} passages each level ranks for "
        f"{', '.join(SHOWN_EMOTIONS)} (direction: its best layer; features: the SAE layer):"
    )
    columns = [
        "model",
        "emotion",
        "level",
        "layer",
        "rank",
        "relevant",
        "part",
        "passage_emotion",
        "score",
        "text",
    ]
    section.table(columns, top)


def quantity(store: Store) -> Section:
    section = Section("quantity", "The quantity test")
    rows = fetch(
        store,
        "SELECT model, level, layer, emotion, mean_danger_rho, p_value, p_random, p_order, "
        "headline, families_rising, families, run_id FROM quantity_summary "
        "ORDER BY model, level, emotion, layer",
    )
    if not rows:
        section.empty("No quantity test yet: `saefeatures validate quantity`.")
        return section
    section.text(
        "Only a number changes in each prompt family; in half the families danger rises with "
        "it, in the other half it falls, on the same numbers. Per family, Spearman's rho of "
        "the final token's read-out with the quantity order, signed so that positive means "
        "rising with danger, then its mean over families. The claim is at the layer fixed in "
        "advance (headline): p against directions drawn at random in the span of the emotion "
        "vectors (at the feature level: their top-k features), p_random against isotropic "
        "random directions (random feature sets), p_order against the quantity order "
        "permuted within every family. Other layers are descriptive."
    )
    for (model,), group in grouped(rows, "model").items():
        figure = go.Figure(
            [
                _level_trace(g, "mean_danger_rho", f"{emotion} {level}", level)
                for (level, emotion), g in grouped(group, "level", "emotion").items()
            ]
        )
        figure.update_layout(
            title=f"{model}: mean danger rho over families, by layer (descriptive)",
            xaxis_title="layer",
            yaxis_title="mean rho with danger",
        )
        section.figure(figure)
    columns = [
        "model",
        "level",
        "layer",
        "emotion",
        "mean_danger_rho",
        "p_value",
        "p_random",
        "p_order",
        "families_rising",
        "families",
        "run_id",
    ]
    shown = [r for r in rows if r["headline"]]
    if shown:
        section.text("Both levels at the headline layer:")
        section.table(columns, sorted(shown, key=lambda r: (r["model"], r["emotion"], r["level"])))
    _families(store, section)
    return section


def _families(store: Store, section: Section) -> None:
    """Per family, afraid and calm at the headline layer."""
    cells = fetch(
        store,
        "SELECT r.model, r.emotion, r.layer, r.family, r.stakes, r.danger_rho, r.p_value FROM "
        "quantity_results r JOIN quantity_summary s USING (model, level, layer, emotion) "
        "WHERE s.headline AND r.level = 'direction' AND r.emotion IN ('afraid', 'calm') "
        "ORDER BY ALL",
    )
    if cells:
        section.text("Per family, the direction at the headline layer:")
        section.table(
            ["model", "emotion", "layer", "family", "stakes", "danger_rho", "p_value"], cells
        )
