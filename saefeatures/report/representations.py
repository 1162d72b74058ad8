"""Report sections on what the model represents: geometry, PCA, SAEs, alignment, UMAP."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from saefeatures import plots
from saefeatures.alignment import feature_map
from saefeatures.report.page import Section, fetch, grouped
from saefeatures.store.database import Store

# Emotions whose top aligned features are listed (those present are shown).
SHOWN_EMOTIONS = ("happy", "sad", "afraid", "calm", "angry", "desperate")


def geometry(store: Store) -> Section:
    section = Section("geometry", "Geometry by layer")
    rows = fetch(
        store,
        "SELECT model, corpus, layer, rel_depth, pearson_r, ci_low, ci_high, run_id "
        "FROM geometry WHERE method = 'denoised' AND component = 'PC1' AND emotion_set = "
        "'all' ORDER BY model, corpus, layer",
    )
    if not rows:
        section.empty("No geometry yet: `saefeatures vectors` then `saefeatures geometry`.")
        return section
    section.figure(_depth_figure(rows))
    _best_layers(store, section)
    return section


def _depth_figure(rows: list[dict]) -> go.Figure:
    """PC1-valence r against relative depth, one line with CIs per model and corpus."""
    figure = go.Figure()
    for (model, corpus), group in grouped(rows, "model", "corpus").items():
        figure.add_trace(
            go.Scatter(
                x=[r["rel_depth"] for r in group],
                y=[r["pearson_r"] for r in group],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [r["ci_high"] - r["pearson_r"] for r in group],
                    "arrayminus": [r["pearson_r"] - r["ci_low"] for r in group],
                },
                mode="lines+markers",
                name=f"{model} / {corpus}",
            )
        )
    figure.update_layout(
        title="PC1-valence Pearson r by relative depth (95% CI: emotions resampled, PCA refitted)",
        xaxis_title="relative depth",
        yaxis_title="r",
    )
    return figure


def _best_layers(store: Store, section: Section) -> None:
    """The best layer per model, corpus and emotion set, with how it was tested."""
    columns = [
        "model",
        "corpus",
        "emotion_set",
        "n_emotions",
        "layer",
        "rel_depth",
        "pearson_r",
        "ci_low",
        "ci_high",
        "p_value",
        "heldout_r",
        "heldout_low",
        "heldout_high",
        "split_r",
        "same_layer",
        "run_id",
    ]
    best = fetch(
        store,
        f"SELECT {', '.join(columns)} FROM geometry_best WHERE method = 'denoised' "
        "ORDER BY model, corpus, emotion_set",
    )
    section.text(
        "Best layer per model, corpus and emotion set. Its CI comes from resamples of the "
        "emotions that refit the PCA and choose the layer anew; p is against the largest r "
        "over all layers of shuffled ratings; held-out r chooses the layer on half of the "
        "emotions and scores the other half (mean and 95% range over 200 halves); split_r is "
        "what a pure positive/negative split reaches on the same emotions."
    )
    section.table(columns, best)


def pca_and_cosines(store: Store) -> Section:
    """PC1 against PC2 of the vectors at each model and corpus's best layer (the geometry
    stage's oriented scores), and the sanity pairs' cosines there."""
    section = Section("pca", "PCA and cosine sanity pairs")
    scores = fetch(
        store,
        "SELECT s.model, s.corpus, s.layer, s.emotion, s.pc1, s.pc2, r.valence FROM "
        "pca_scores s LEFT JOIN emotion_ratings r USING (emotion) WHERE s.method = "
        "'denoised' AND s.emotion_set = 'all' ORDER BY ALL",
    )
    if not scores:
        section.empty("No geometry yet: `saefeatures geometry`.")
        return section
    for (model, corpus, layer), group in grouped(scores, "model", "corpus", "layer").items():
        figure = go.Figure(
            go.Scatter(
                x=[r["pc1"] for r in group],
                y=[r["pc2"] for r in group],
                mode="markers",
                text=[r["emotion"] for r in group],
                hovertemplate="%{text}<extra></extra>",
                marker={
                    "color": [np.nan if r["valence"] is None else r["valence"] for r in group],
                    "colorscale": plots.DIVERGING_SCALE,
                    "colorbar": {"title": "valence"},
                    "size": 8,
                },
            )
        )
        figure.update_layout(
            title=f"{model}, {corpus}, layer {layer}: emotion vectors on PC1 (oriented to "
            "valence) and PC2 (to arousal), coloured by valence",
            xaxis_title="PC1",
            yaxis_title="PC2",
        )
        section.figure(figure)
    columns = [
        "model",
        "corpus",
        "layer",
        "emotion_a",
        "emotion_b",
        "expected_sign",
        "cosine",
        "run_id",
    ]
    pairs = fetch(
        store,
        "SELECT v.* FROM vector_pairs v JOIN geometry_best b USING (model, corpus, layer, "
        "method) WHERE v.method = 'denoised' AND b.emotion_set = 'all' ORDER BY ALL",
    )
    section.table(columns, pairs)
    return section


def saes(store: Store) -> Section:
    section = Section("saes", "SAEs")
    rows = fetch(
        store,
        "SELECT s.sae_id, s.model, s.layer, s.architecture, s.d_sae, s.k, "
        "s.tokens, s.source, s.run_id, m.split, m.metric, m.value FROM saes s LEFT "
        "JOIN sae_metrics m USING (sae_id) ORDER BY s.model, s.layer, s.sae_id",
    )
    if not rows:
        section.empty("No SAE yet: `saefeatures train --layer 10` or `saefeatures load`.")
        return section
    metrics = sorted({f"{r['metric']} ({r['split']})" for r in rows if r["metric"]})
    fixed = ["sae_id", "model", "layer", "architecture", "d_sae", "k", "tokens", "source", "run_id"]
    table = []
    for group in grouped(rows, "sae_id").values():
        values = {f"{r['metric']} ({r['split']})": r["value"] for r in group if r["metric"]}
        table.append([group[0][c] for c in fixed] + [values.get(m) for m in metrics])
    section.table(fixed + metrics, table)
    curves = fetch(
        store,
        "SELECT sae_id, metric, tokens, value FROM sae_training ORDER BY sae_id, metric, tokens",
    )
    for metric, group in grouped(curves, "metric").items():
        figure = go.Figure(
            [
                go.Scatter(
                    x=[r["tokens"] for r in g],
                    y=[r["value"] for r in g],
                    mode="lines",
                    name=sae_id[0],
                )
                for sae_id, g in grouped(group, "sae_id").items()
            ]
        )
        figure.update_layout(
            title=f"training curve: {metric[0]}",
            xaxis_title="tokens",
            yaxis_title=metric[0],
            height=350,
        )
        section.figure(figure)
    return section


def alignment(store: Store) -> Section:
    section = Section("alignment", "Alignment of emotion vectors with SAE features")
    summary = fetch(
        store,
        "SELECT model, sae_id, layer, corpus, metric, avg(value) AS mean, "
        "string_agg(DISTINCT run_id, ', ') AS run_id FROM alignment_summary "
        "GROUP BY ALL ORDER BY ALL",
    )
    if not summary:
        section.empty("No alignment yet: `saefeatures align --layer L` with an SAE at L.")
        return section
    section.text("Mean over emotions of each alignment measure:")
    columns = ["model", "sae_id", "layer", "corpus", "metric", "mean", "run_id"]
    section.table(columns, summary)
    top = top_aligned(store)
    columns = [
        "model",
        "sae_id",
        "layer",
        "corpus",
        "emotion",
        "rank",
        "feature",
        "score",
        "run_id",
    ]
    section.text(
        "Top features by decoder cosine for a few emotions (each has a dashboard under "
        '<a href="#features">Feature dashboards</a>):'
    )
    section.table(columns, top)
    return section


def top_aligned(store: Store) -> list[dict]:
    """The features the alignment section lists: the top 3 by decoder cosine of a few emotions."""
    return fetch(
        store,
        "SELECT model, sae_id, layer, corpus, emotion, rank, feature, score, "
        "run_id FROM alignments WHERE method = 'decoder_cosine' AND rank <= 3 AND "
        "list_contains(?, emotion) ORDER BY ALL",
        [list(SHOWN_EMOTIONS)],
    )


def umap(store: Store) -> Section:
    section = Section("umap", "UMAP of emotion-aligned features")
    maps = fetch(store, "SELECT DISTINCT sae_id, corpus FROM feature_map_points ORDER BY ALL")
    if not maps:
        section.empty("No map yet: `saefeatures umap --layer L` after `saefeatures align`.")
    for m in maps:
        section.figure(feature_map.stored_map(store, m["sae_id"], m["corpus"]))
    return section
