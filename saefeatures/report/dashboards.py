"""The report's feature dashboards: one for every feature the alignment section lists, and
an index of every feature that fired, per SAE, filtered by a search box in the page."""

from __future__ import annotations

import html
from collections.abc import Sequence

from saefeatures.features.dashboard import (
    NAMED_LENS_VERSION,
    SHADE,
    Example,
    FeatureDashboard,
    dashboards,
    intensity,
    visible,
)
from saefeatures.report.page import Section, fetch
from saefeatures.report.representations import top_aligned
from saefeatures.store.database import Store

EXAMPLES = 8
INDEX_TOKENS = 5  # promoted and suppressed tokens listed per feature in the index


def features(store: Store) -> Section:
    section = Section("features", "Feature dashboards")
    if store.schema_version < NAMED_LENS_VERSION:
        section.empty(
            f"The store has schema version {store.schema_version}: open it once with a command "
            "that writes (e.g. `saefeatures compare`) to migrate it."
        )
        return section
    described = {row["sae_id"] for row in fetch(store, "SELECT DISTINCT sae_id FROM features")}
    shown: dict[str, list[int]] = {}
    for row in top_aligned(store):
        if row["sae_id"] in described:
            shown.setdefault(row["sae_id"], []).append(row["feature"])
    if not shown:
        section.empty("No described features yet: `saefeatures align --layer L`.")
        return section
    section.text(
        "Each feature the alignment section lists: the passages on which it fires most (each "
        "token shaded by the feature's activation on it over its maximum; hover a token for "
        "its value), its non-zero activations over every scanned token, the emotions ranking "
        "it among their top features (with the held-out AUROC where the held-out test chose "
        "it), and the tokens its decoder row promotes and suppresses through the logit lens. "
        "`saefeatures feature SAE_ID FEATURE` prints the same on the terminal."
    )
    for sae_id, chosen in shown.items():
        found = dashboards(store, sae_id, chosen, EXAMPLES)
        for feature in sorted(found):
            section.html(_dashboard(found[feature]))
    for sae_id in sorted(described):
        section.html(_index(store, sae_id, set(shown.get(sae_id, []))))
    return section


def anchor(sae_id: str, feature: int) -> str:
    return html.escape(f"feature-{sae_id}-{feature}", quote=True)


def _dashboard(dash: FeatureDashboard) -> str:
    facts = (
        f"{html.escape(dash.model)}, layer {dash.layer}: fires on {_number(dash.density)} of "
        f"scanned tokens ({dash.activations} activations), max {_number(dash.max_activation)}, "
        f"mean when active {_number(dash.mean_active)}"
    )
    return (
        f'<div class="dashboard" id="{anchor(dash.sae_id, dash.feature)}">'
        f"<h3>SAE {html.escape(dash.sae_id)}, feature {dash.feature}</h3><p>{facts}</p>"
        f'<div class="panels"><div class="examples"><h4>Top activations</h4>'
        f"{''.join(_example(e, dash.max_activation or 0.0) for e in dash.examples)}</div>"
        f'<div class="side"><h4>Non-zero activations</h4>{_histogram(dash)}'
        f"<h4>Aligned emotions</h4>{_emotions(dash)}"
        f"<h4>Logit lens of its decoder row</h4>"
        f"<p>promoted: {_tokens(dash.promoted, dash.promoted_logits)}</p>"
        f"<p>suppressed: {_tokens(dash.suppressed, dash.suppressed_logits)}</p>"
        "</div></div></div>"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _example(example: Example, peak: float) -> str:
    spans = []
    for i, (token, value) in enumerate(zip(example.tokens, example.values, strict=True)):
        share = intensity(value, peak)
        style = f' style="background-color: rgba{(*SHADE, round(share, 3))}"' if share else ""
        mark = " peak" if i == example.peak else ""
        title = html.escape(f"{token!r}: {value:.4g}", quote=True)
        spans.append(
            f'<span class="tok{mark}"{style} title="{title}">{html.escape(visible(token))}</span>'
        )
    where = f"{example.corpus} {example.passage_id}" + (
        f" ({example.emotion})" if example.emotion else ""
    )
    return (
        f'<div class="example"><span class="where">{example.max_value:.3g} '
        f"{html.escape(where)}</span>{''.join(spans)}</div>"
    )


def _histogram(dash: FeatureDashboard) -> str:
    counts, edges = dash.histogram.counts, dash.histogram.edges
    if not counts:
        return "<p>It never fired on the scanned text.</p>"
    top = max(counts)
    bars = "".join(
        f'<div class="bar" style="height: {100 * n / top:.1f}%" '
        f'title="{edges[i]:.3g} to {edges[i + 1]:.3g}: {n}"></div>'
        for i, n in enumerate(counts)
    )
    return (
        f'<div class="histogram">{bars}</div>'
        f'<div class="axis"><span>{edges[0]:.3g}</span><span>{edges[-1]:.3g}</span></div>'
    )


def _emotions(dash: FeatureDashboard) -> str:
    if not dash.emotions:
        return "<p>No emotion ranks it among its top features.</p>"
    methods = sorted({m for a in dash.emotions for m in a.scores})
    head = "".join(
        f"<th>{html.escape(c)}</th>" for c in ("corpus", "emotion", *methods, "held-out AUROC (p)")
    )
    rows = []
    for aligned in dash.emotions:
        scores = "".join(
            f'<td class="num">{aligned.scores[m]:+.3f} (#{aligned.ranks[m]})</td>'
            if m in aligned.scores
            else "<td></td>"
            for m in methods
        )
        heldout = (
            f"{aligned.heldout_auroc:.3f} ({aligned.heldout_p:.3g})"
            if aligned.heldout_auroc is not None
            else ""
        )
        rows.append(
            f"<tr><td>{html.escape(aligned.corpus)}</td><td>{html.escape(aligned.emotion)}</td>"
            f'{scores}<td class="num">{heldout}</td></tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _tokens(tokens: Sequence[str], logits: Sequence[float] | None) -> str:
    values = logits or [None] * len(tokens)
    return " ".join(
        f"<code>{html.escape(visible(t))}</code>" + ("" if v is None else f" {v:+.2f}")
        for t, v in zip(tokens, values, strict=True)
    )


def _index(store: Store, sae_id: str, with_dashboard: set[int]) -> str:
    """Every feature of the SAE that fired, with what it promotes and the emotions ranking
    it; the page's script hides the rows that do not match every word of the search box."""
    rows = fetch(
        store,
        "SELECT f.feature, f.density, f.max_activation, f.promoted_tokens, "
        "f.suppressed_tokens, a.emotions FROM features f LEFT JOIN (SELECT feature, "
        "string_agg(DISTINCT emotion, ', ' ORDER BY emotion) AS emotions FROM alignments "
        "WHERE sae_id = ? GROUP BY feature) a USING (feature) "
        "WHERE f.sae_id = ? AND f.density > 0 ORDER BY f.feature",
        [sae_id, sae_id],
    )
    table_id = html.escape(f"index-{sae_id}", quote=True)
    body = []
    for row in rows:
        feature = row["feature"]
        promoted = (row["promoted_tokens"] or [])[:INDEX_TOKENS]
        suppressed = (row["suppressed_tokens"] or [])[:INDEX_TOKENS]
        emotions = row["emotions"] or ""
        search = " ".join([*promoted, *suppressed, emotions]).lower()
        label = (
            f'<a href="#{anchor(sae_id, feature)}">{feature}</a>'
            if feature in with_dashboard
            else str(feature)
        )
        body.append(
            f'<tr data-feature="{feature}" data-search="{html.escape(search, quote=True)}">'
            f'<td class="num">{label}</td><td class="num">{row["density"]:.3g}</td>'
            f'<td class="num">{_number(row["max_activation"])}</td>'
            f"<td>{_tokens(promoted, None)}</td><td>{_tokens(suppressed, None)}</td>"
            f"<td>{html.escape(emotions)}</td></tr>"
        )
    head = "".join(
        f"<th>{c}</th>"
        for c in ("feature", "density", "max", "promoted", "suppressed", "aligned emotions")
    )
    return (
        f'<div class="feature-index"><h3>Feature index: SAE {html.escape(sae_id)}</h3>'
        f"<p>{len(rows)} features that fired on the scanned text. Search by feature id (a "
        "number matches the id), token or emotion (every word must match):</p>"
        f'<input type="search" class="index-filter" data-table="{table_id}" '
        'placeholder="e.g. 17, happy, tear">'
        f'<table id="{table_id}" class="index"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
