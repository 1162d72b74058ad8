"""`saefeatures report`: one self-contained HTML page built from the store alone.

Every section reads tables, never files or models, so a report can be rebuilt from a
store merged from many machines. Every table shown carries the run ids its numbers come
from, and the last section lists those runs with their configuration: the provenance
of every number. A section without results says which command makes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saefeatures import __version__, compare
from saefeatures.errors import SaefeaturesError, writable_folder
from saefeatures.report import (
    choices,
    circuits,
    dashboards,
    findings,
    interventions,
    readouts,
    representations,
)
from saefeatures.report.page import Section, document, fetch
from saefeatures.store.database import Store


@dataclass(frozen=True)
class Report:
    """A written report: its file, its sections' titles and how many figures it holds."""

    path: str
    sections: list[str]
    figures: int


def write(store: Store, path: Path) -> Report:
    """Build the report and write it atomically (a partial file never replaces a report)."""
    if path.exists() and path.is_dir():
        raise SaefeaturesError(f"{path} is a folder; give a file name such as report.html")
    if not store.query("SELECT 1 FROM runs WHERE status = 'ok' LIMIT 1").num_rows:
        raise SaefeaturesError("the store has no finished runs yet; run `saefeatures run` first")
    writable_folder(path.parent, "the report")
    sections = [section for build in SECTIONS if (section := build(store)) is not None]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(document("saefeatures report", _intro(store), sections), encoding="utf-8")
    partial.replace(path)
    figures = sum(block.startswith('<div class="figure">') for s in sections for block in s.blocks)
    return Report(str(path), [s.title for s in sections], figures)


def _intro(store: Store) -> str:
    version = store.schema_version
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<p>Built {now} by saefeatures {__version__} from a store at schema version "
        f"{version}. Every number below comes from the store; the <code>run_id</code> "
        "columns point to the provenance table at the end.</p>"
    )


RESULT_TABLES = (
    "geometry",
    "vector_pairs",
    "saes",
    "alignment_summary",
    "steering_results",
    "pair_scores",
    "patching_results",
)
HEADLINE_COLUMNS = [
    "model",
    "layers",
    "best PC1-valence r",
    "sanity pairs right sign",
    "SAEs",
    "best SAE explained variance",
    "steering self effect",
    "anchor sign good",
    "anchor sign bad",
    "patching peak depth good/bad",
    "run_id",
]


def headline(store: Store) -> Section:
    section = Section("headline", "Headline")
    union = " UNION ".join(f"SELECT model, run_id FROM {table}" for table in RESULT_TABLES)
    found = fetch(
        store,
        f"SELECT model, string_agg(DISTINCT run_id, ', ' ORDER BY run_id) AS "
        f"runs FROM ({union}) GROUP BY model ORDER BY model",
    )
    if not found:
        section.empty("No results yet: `saefeatures run`.")
        return section
    section.text(
        "Findings: each claim with the null that could have rejected it; a claim is a "
        "finding when p < 0.05. A share of emotions passing a null is tested against the "
        "share the null passes by chance (binomial). The methods documents define each."
    )
    section.table(
        findings.FINDING_COLUMNS,
        [row for f in found for row in findings.findings(store, f["model"])],
    )
    section.text(
        "Descriptive numbers, with no null of their own. Best PC1-valence r: denoised "
        "vectors, any corpus; the sanity pairs are counted at that layer. Steering self "
        "effect: the direction's mean change in log P of its own emotion word at the "
        "smallest scale. Anchor sign: prompts whose clean anchor score has the condition's "
        "sign. Peak depth: mean relative depth of each pair's strongest residual patch over "
        "the positions where its prompts differ."
    )
    section.table(HEADLINE_COLUMNS, [_headline_row(store, f["model"], f["runs"]) for f in found])
    return section


def _headline_row(store: Store, model: str, runs: str) -> list[Any]:
    best = fetch(
        store,
        "SELECT corpus, layer, pearson_r FROM geometry_best WHERE model = ? AND "
        "method = 'denoised' AND emotion_set = 'all' ORDER BY pearson_r DESC LIMIT 1",
        [model],
    )
    sanity = None
    if best:
        pairs = fetch(
            store,
            "SELECT count(*) FILTER (WHERE sign(cosine) = expected_sign) AS ok, "
            "count(*) AS n FROM vector_pairs WHERE model = ? AND corpus = ? AND "
            "layer = ? AND method = 'denoised'",
            [model, best[0]["corpus"], best[0]["layer"]],
        )[0]
        sanity = f"{pairs['ok']}/{pairs['n']}" if pairs["n"] else None
    saes = fetch(
        store,
        "SELECT count(DISTINCT s.sae_id) AS n, max(m.value) AS ev FROM saes s "
        "LEFT JOIN sae_metrics m ON m.sae_id = s.sae_id AND m.metric = "
        "'explained_variance' WHERE s.model = ?",
        [model],
    )[0]
    signs = {
        r["condition"]: f"{r['ok']}/{r['n']}"
        for r in fetch(
            store,
            "SELECT condition, count(*) AS n, count(*) FILTER (WHERE CASE condition WHEN "
            "'good' THEN clean_score > 0 ELSE clean_score < 0 END) AS ok FROM pair_scores "
            "WHERE model = ? AND score_name = 'anchors' GROUP BY condition",
            [model],
        )
    }
    peaks = compare.patching_peaks(store, model)
    return [
        model,
        compare.n_layers(store, model),
        f"{best[0]['pearson_r']:.2f} (layer {best[0]['layer']}, {best[0]['corpus']})"
        if best
        else None,
        sanity,
        saes["n"],
        saes["ev"],
        compare.steering_self_effect(store, model),
        signs.get("good"),
        signs.get("bad"),
        "/".join(f"{peaks[c]:.2f}" if c in peaks else "-" for c in ("good", "bad"))
        if peaks
        else None,
        runs,
    ]


def comparisons(store: Store) -> Section:
    section = Section("comparisons", "Direction vs features, model vs model")
    columns = [*compare.COLUMNS, "run_id"]
    rows = fetch(
        store, f"SELECT {', '.join(columns)} FROM comparisons ORDER BY kind, model, layer, metric"
    )
    if not rows:
        section.empty("No comparisons yet: `saefeatures compare`.")
    else:
        section.table(columns, rows)
    return section


def coverage(store: Store) -> Section:
    """What the last main job could not do: emotions left out, stages failed or not run."""
    section = Section("coverage", "Coverage: emotions left out, stages that did not run")
    left_out = fetch(
        store,
        "SELECT model, corpus, stage, emotion, n_passages, reason, run_id FROM left_out "
        "ORDER BY model, corpus, emotion",
    )
    if left_out:
        section.table(list(left_out[0]), left_out)
        section.text(
            "An emotion with fewer usable passages than the minimum has no vector in that "
            "corpus; every later stage on the corpus works without it."
        )
    stages = fetch(
        store,
        "SELECT model, stage, part, status, error, run_id FROM stage_runs WHERE run_id = "
        "(SELECT run_id FROM runs WHERE command = 'run' ORDER BY started DESC LIMIT 1) "
        "AND status IN ('failed', 'blocked') ORDER BY finished",
    )
    if stages:
        section.table(list(stages[0]), stages)
        section.text(
            "The last `saefeatures run` could not finish these stages (`blocked`: a stage they "
            "need failed); rerunning the same command retries them and skips the rest."
        )
    if not left_out and not stages:
        section.text("Every chosen emotion has vectors, and the last job ran every stage.")
    return section


def provenance(store: Store) -> Section:
    section = Section("provenance", "Provenance: every run")
    columns = [
        "run_id",
        "command",
        "status",
        "started",
        "finished",
        "package_version",
        "git_revision",
        "config",
        "error",
    ]
    rows = fetch(store, f"SELECT {', '.join(columns)} FROM runs ORDER BY started")
    section.table(columns, rows)
    return section


# A section builder returns None to be left out: a part of the study not everyone runs.
SECTIONS: list[Callable[[Store], Section | None]] = [
    headline,
    coverage,
    representations.geometry,
    representations.pca_and_cosines,
    representations.saes,
    representations.alignment,
    dashboards.features,
    representations.umap,
    interventions.steering,
    interventions.patching,
    circuits.circuits,
    readouts.retrieval,
    readouts.quantity,
    choices.preferences,
    choices.behaviour,
    comparisons,
    provenance,
]
