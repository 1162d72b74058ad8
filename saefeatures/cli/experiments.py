"""Commands that relate features to vectors and intervene: align, umap, steer, patch,
circuit."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.cli.common import (
    BatchOption,
    CorpusOption,
    DbOption,
    DeviceOption,
    DtypeOption,
    LayerOption,
    LevelOption,
    MethodOption,
    ModelOption,
    OutOption,
    SaeOption,
    SeedOption,
    SomeEmotionsOption,
    layer_or_default,
    options_from,
    workspace,
)
from saefeatures.config import DEFAULT_CORPUS, DEFAULT_DB, DEFAULT_MODEL, DEFAULT_OUT

if TYPE_CHECKING:
    from saefeatures.alignment.align import SaeAlignment


def align_command(
    layer: LayerOption = None,
    model: ModelOption = DEFAULT_MODEL,
    sae: SaeOption = None,
    corpus: CorpusOption = DEFAULT_CORPUS,
    method: MethodOption = "denoised",
    emotions: SomeEmotionsOption = None,
    top_k: Annotated[
        int, typer.Option("--top", help="Features kept per emotion and method.")
    ] = opts.AlignOptions.top_k,
    k_max: Annotated[
        int, typer.Option("--k-max", help="OMP steps (R² for k = 1..k-max).")
    ] = opts.AlignOptions.k_max,
    null_samples: Annotated[
        int, typer.Option("--null-directions", help="Random unit vectors of the descriptive null.")
    ] = opts.AlignOptions.null_samples,
    text: Annotated[
        str | None,
        typer.Option("--text", help="Sample text for feature statistics; default: the SAE's."),
    ] = None,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", help="Held-out text rows.")
    ] = opts.AlignOptions.sample_rows,
    batch_size: BatchOption = opts.AlignOptions.batch_size,
    seed: SeedOption = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Which SAE features carry each emotion vector: decoder cosine, OMP, activation selectivity."""
    layer = layer_or_default(layer, model)
    options = options_from(opts.AlignOptions, locals())

    from saefeatures.alignment import align

    with workspace(db).open_store() as store:
        aligned = align.align(store, options)
    for result in aligned.saes:
        _print_alignment(result, k_max)
    facts = {name: value for name, value in asdict(aligned).items() if name != "saes"}
    render.print_rows(["fact", "value"], facts.items(), title="alignment")


def _print_alignment(result: SaeAlignment, k_max: int) -> None:
    rows = result.per_emotion
    render.print_rows(list(rows[0]), (r.values() for r in rows), title=result.sae_id)
    nulls = result.nulls
    print(
        "against shuffled-label contrasts (same passages, same denoising, no emotion): "
        f"best |cos| above their p99 ({nulls['shuffled_null_p99']:.3f}) for "
        f"{result.fraction_above_shuffled_null:.0%} of emotions; OMP R² at k={k_max} above "
        f"theirs for {result.fraction_omp_above_shuffled:.0%}; held-out best-feature AUROC "
        f"p < 0.05 for {result.fraction_heldout_auroc_p05:.0%}"
    )
    print(
        f"descriptive: above the p99 of random unit vectors ({nulls['random_p99']:.3f}) for "
        f"{result.fraction_above_random:.0%} (any direction in the data's subspace is)"
    )
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= k_max]
    render.print_rows(
        ["k", "OMP R² (mean)", "shuffled-label OMP R² (mean)"],
        ([k, result.mean_omp_r2[k - 1], result.mean_shuffled_omp_r2[k - 1]] for k in ks),
        title="sparse reconstruction of the vectors",
    )


def umap_command(
    layer: LayerOption = None,
    model: ModelOption = DEFAULT_MODEL,
    sae: SaeOption = None,
    corpus: CorpusOption = DEFAULT_CORPUS,
    method: MethodOption = "denoised",
    top_k: Annotated[
        int, typer.Option("--top", help="Aligned features per emotion.")
    ] = opts.UmapOptions.top_k,
    background: Annotated[
        int, typer.Option("--background", help="Random other features for context.")
    ] = opts.UmapOptions.background,
    neighbors: Annotated[
        int, typer.Option("--neighbors", help="UMAP n_neighbors.")
    ] = opts.UmapOptions.neighbors,
    min_dist: Annotated[
        float, typer.Option("--min-dist", help="UMAP min_dist.")
    ] = opts.UmapOptions.min_dist,
    seed: SeedOption = 0,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File name (.png and .html are written).")
    ] = None,
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """UMAP of the SAE's emotion-aligned decoder directions, with the emotion vectors."""
    layer = layer_or_default(layer, model)
    options = options_from(opts.UmapOptions, locals())

    from saefeatures.alignment import feature_map

    with workspace(db, out).open_store() as store:
        result = feature_map.draw(store, out, options)
    facts = {
        "layer": layer,
        "sae_id": result.sae_id,
        **result.points,
        "umap seconds": round(result.umap_seconds, 1),
    }
    render.print_rows(["fact", "value"], facts.items(), title="UMAP")
    print("figures: " + ", ".join(result.files))


def steer_command(
    model: ModelOption = DEFAULT_MODEL,
    layer: LayerOption = None,
    level: LevelOption = "both",
    emotions: Annotated[
        str, typer.Option("--emotions", help="Steering and target words.")
    ] = ",".join(opts.STEER_EMOTIONS),
    scales: Annotated[
        str, typer.Option("--scales", help="Comma-separated, x the layer's mean residual norm.")
    ] = ",".join(map(str, opts.SteerOptions.scales)),
    gen_scale: Annotated[
        float, typer.Option("--gen-scale", help="Scale of the generations.")
    ] = opts.SteerOptions.gen_scale,
    corpus: CorpusOption = DEFAULT_CORPUS,
    method: MethodOption = "denoised",
    sae: SaeOption = None,
    gen_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Tokens per generation at most.")
    ] = opts.SteerOptions.gen_tokens,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Steer with emotion directions and their aligned SAE features; score words and text."""
    options = options_from(opts.SteerOptions, locals())

    from saefeatures import steering

    with workspace(db, out).open_store() as store:
        result = steering.steer(store, out, options)
    summary = steering.summarize(result.summary)
    render.print_rows(
        list(summary[0]),
        (row.values() for row in summary),
        title=f"steering {result.model} at layer {result.layer}",
    )
    render.print_rows(
        ["level", "emotion", "valence (words)", "valence (axis)", "generation"],
        steering.examples(result.rows),
        title="generations under steering",
    )
    print(f"mean residual norm at layer {result.layer}: {result.norm:.2f}")
    print("figures: " + ", ".join(result.figures))


# The good- vs bad-news pairs that `patch` and `circuit` read.
PairsOption = Annotated[
    Path | None, typer.Option("--pairs", help="JSONL: id, condition, clean, corrupted.")
]
SituationsOption = Annotated[
    int | None, typer.Option("--limit", help="Only the first N situations.")
]
PairScoreOption = Annotated[
    opts.ReplyScore, typer.Option("--score", help="The pair score the patches change.")
]


def patch_command(
    model: ModelOption = DEFAULT_MODEL,
    pairs: PairsOption = None,
    level: Annotated[
        opts.PatchLevel,
        typer.Option("--level", help="Residual stream, heads, SAE features (attribution) or all."),
    ] = "all",
    score: PairScoreOption = "anchors",
    positions: Annotated[
        opts.PatchPositions,
        typer.Option(
            "--positions",
            help="Residual sweep: differing (the tokens where the prompts differ, and the "
            "last) or all the positions after the shared prefix.",
        ),
    ] = "differing",
    limit: SituationsOption = None,
    layers: Annotated[
        str | None,
        typer.Option("--layers", help="Feature level: e.g. 6,10 (default: every SAE layer)."),
    ] = None,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Activation patching of good- vs bad-news prompts: residual stream, heads, SAE features."""
    options = options_from(opts.PatchOptions, locals())

    from saefeatures.patching import patch

    with workspace(db, out).open_store() as store:
        result = patch.patch(store, out, options)
    for title, columns, rows in patch.tables(result.summary):
        render.print_rows(columns, rows, title=f"{result.model}: {title}")
    print("figures: " + ", ".join(result.figures))


def circuit_command(
    model: ModelOption = DEFAULT_MODEL,
    pairs: PairsOption = None,
    score: PairScoreOption = "anchors",
    limit: SituationsOption = None,
    layers: Annotated[
        str | None,
        typer.Option("--layers", help="SAE layers, e.g. 6,10 (default: every SAE layer)."),
    ] = None,
    sae: Annotated[
        str | None,
        typer.Option("--sae", help="SAE ids (a,b) for the layers that have several SAEs."),
    ] = None,
    nodes: Annotated[
        int, typer.Option("--nodes", help="Circuit size: nodes by integrated-gradients effect.")
    ] = opts.CircuitOptions.nodes,
    steps: Annotated[
        int, typer.Option("--steps", help="Integrated-gradients steps along the path.")
    ] = opts.CircuitOptions.steps,
    exact_pairs: Annotated[
        int,
        typer.Option("--exact-pairs", help="Selection pairs on which nodes are patched alone."),
    ] = opts.CircuitOptions.exact_pairs,
    exact_nodes: Annotated[
        int,
        typer.Option(
            "--exact-nodes", help="Top circuit nodes patched alone (and as many random ones)."
        ),
    ] = opts.CircuitOptions.exact_nodes,
    edge_pairs: Annotated[
        int, typer.Option("--edge-pairs", help="Selection pairs the edges are averaged over.")
    ] = opts.CircuitOptions.edge_pairs,
    edge_threshold: Annotated[
        float,
        typer.Option("--edge-threshold", help="Smallest |mean normalized effect| of an edge."),
    ] = opts.CircuitOptions.edge_threshold,
    draws: Annotated[
        int, typer.Option("--draws", help="Random node sets per size (the curves' baseline).")
    ] = opts.CircuitOptions.draws,
    null_directions: Annotated[
        int,
        typer.Option(
            "--null-directions",
            help="Random subspaces of the same rank (and random node sets of the same size) "
            "per null of the direction view.",
        ),
    ] = opts.CircuitOptions.null_directions,
    seed: SeedOption = 0,
    corpus: Annotated[
        str, typer.Option("--corpus", help="Corpus of the emotion vectors (direction view).")
    ] = DEFAULT_CORPUS,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Feature circuits of good- vs bad-news prompts across the residual-stream SAEs."""
    options = options_from(opts.CircuitOptions, locals(), saes="sae")

    from saefeatures.circuits import stage, summary

    with workspace(db, out).open_store() as store:
        result = stage.circuit(store, out, options)
    for title, columns, rows in summary.tables(result.summary):
        render.print_rows(columns, rows, title=f"{result.model}: {title}")
    print("figures: " + ", ".join(result.figures))
