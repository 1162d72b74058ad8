"""`saefeatures validate ...`: the source study's validation experiments, at both levels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    LayersOption,
    LevelOption,
    MethodOption,
    ModelOption,
    SaeOption,
    SeedOption,
    SomeEmotionsOption,
    Typer,
    options_from,
    workspace,
)
from saefeatures.config import DEFAULT_CORPUS, DEFAULT_DB, DEFAULT_MODEL

if TYPE_CHECKING:
    from saefeatures.validation.preferences import PreferenceResult

validate_app = Typer(
    help="The original study's validation experiments, with directions and SAE features.",
    no_args_is_help=True,
)

TopOption = Annotated[int, typer.Option("--top", help="Aligned features summed per emotion.")]
PermutationsOption = Annotated[int, typer.Option("--permutations", help="Null draws.")]
SteerEmotionsOption = Annotated[str, typer.Option("--emotions", help="Steering emotions, a,b,c.")]
ScalesOption = Annotated[
    str, typer.Option("--scales", help="Comma-separated, x the layer's mean residual norm.")
]
ResamplesOption = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")]
SHOWN_ACTIVITIES = 5  # most and least preferred
Readout = opts.ReadoutOptions
Choice = opts.ChoiceOptions
CHOICE_SCALES = ",".join(map(str, Choice.scales))
BEHAVIOUR_EMOTIONS = ",".join(opts.BEHAVIOUR_EMOTIONS)
PREFERENCE_EMOTIONS = ",".join(opts.PREFERENCE_EMOTIONS)
QUANTITY_EMOTIONS = ",".join(opts.QUANTITY_EMOTIONS)


def _read_out(
    db: Path,
    options: opts.ReadoutOptions,
    experiment: Callable[..., dict[str, Any]],
    shown: Callable[[dict[str, Any]], tuple[list[dict[str, Any]], str, str]],
) -> None:
    """Run a read-out experiment; print the rows, title and tables that `shown` gives."""
    with workspace(db).open_store() as store:
        result = experiment(store, options)
    rows, title, tables = shown(result)
    render.print_rows(list(rows[0]), (row.values() for row in rows), title=title)
    print(f"run {result.run_id}: {tables}")


@validate_app.command("retrieval")
def validate_retrieval(
    model: ModelOption = DEFAULT_MODEL,
    corpus: CorpusOption = DEFAULT_CORPUS,
    emotions: SomeEmotionsOption = None,
    layers: LayersOption = "all",
    level: LevelOption = "both",
    split: Annotated[
        opts.Split,
        typer.Option(
            "--split",
            help="auto: the corpus's own train/heldout split, else passage; passage and topic: "
            "seeded halves.",
        ),
    ] = opts.RetrievalOptions.split,
    method: MethodOption = "denoised",
    sae: SaeOption = None,
    top_k: TopOption = Readout.top_k,
    permutations: PermutationsOption = Readout.permutations,
    batch_size: BatchOption = Readout.batch_size,
    seed: SeedOption = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Vectors from half a corpus rank the other half and neutral text: P@10, MAP, null."""
    options = options_from(opts.RetrievalOptions, locals())

    from saefeatures.validation import retrieval

    _read_out(
        db,
        options,
        retrieval.retrieve,
        lambda result: (
            retrieval.summarize(result.results),
            f"retrieval on unseen text ({result.model}, {result.candidates} candidates)",
            "per-emotion rows in retrieval_results, the top passages in retrieval_top_passages",
        ),
    )


@validate_app.command("quantity")
def validate_quantity(
    model: ModelOption = DEFAULT_MODEL,
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", help="JSONL families; default: corpora/quantity.jsonl."),
    ] = None,
    corpus: CorpusOption = DEFAULT_CORPUS,
    emotions: Annotated[
        str, typer.Option("--emotions", help="default, all, a file (one word a line) or a,b,c.")
    ] = QUANTITY_EMOTIONS,
    layers: LayersOption = "all",
    level: LevelOption = "both",
    method: MethodOption = "denoised",
    sae: SaeOption = None,
    top_k: TopOption = Readout.top_k,
    permutations: PermutationsOption = Readout.permutations,
    batch_size: BatchOption = opts.QuantityOptions.batch_size,
    headline_layer: Annotated[
        int | None,
        typer.Option("--headline-layer", help="The claim's layer; default: a third of the depth."),
    ] = None,
    null_directions: Annotated[
        int, typer.Option("--null-directions", help="Random directions per null.")
    ] = opts.QuantityOptions.null_directions,
    seed: SeedOption = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """As only a number in a prompt rises, does afraid rise and calm fall? Spearman, null."""
    options = options_from(opts.QuantityOptions, locals())

    from saefeatures.validation import quantity

    _read_out(
        db,
        options,
        quantity.run_test,
        lambda result: (
            quantity.summarize(result.summary),
            f"the quantity test ({result.model}, {result.prompts} prompts; the headline "
            "layer, fixed in advance, and the SAE layers)",
            "per family in quantity_results, over families in quantity_summary, read-outs in "
            "quantity_scores",
        ),
    )


@validate_app.command("behaviour")
def validate_behaviour(
    model: ModelOption = DEFAULT_MODEL,
    layer: LayerOption = None,
    level: LevelOption = "both",
    emotions: SteerEmotionsOption = BEHAVIOUR_EMOTIONS,
    scales: ScalesOption = CHOICE_SCALES,
    top_k: TopOption = Choice.top_k,
    scenarios: Annotated[
        Path | None,
        typer.Option("--scenarios", help="JSONL: id, scenario, option_a, option_b, unethical."),
    ] = None,
    corpus: CorpusOption = DEFAULT_CORPUS,
    method: MethodOption = "denoised",
    sae: SaeOption = None,
    resamples: ResamplesOption = Choice.resamples,
    seed: SeedOption = 0,
    batch_size: BatchOption = Choice.batch_size,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """P(unethical option) of pressure scenarios, unsteered and steered with emotions."""
    options = options_from(opts.BehaviourOptions, locals())

    from saefeatures.validation import behaviour

    with workspace(db).open_store() as store:
        result = behaviour.behaviour(store, options)
    columns = [
        "level",
        "emotion",
        "k",
        "scale",
        "p_unethical",
        "ci_low",
        "ci_high",
        "shift",
        "shift_ci_low",
        "shift_ci_high",
        "shift_q",
        "p_a",
    ]
    render.print_rows(
        columns,
        ([row[c] for c in columns] for row in result.summary),
        title=f"behaviour of {result.model} steered at layer {result.layer} "
        f"({result.scenarios} scenarios x 2 orders)",
    )
    print(
        f"run {result.run_id}: mean residual norm {result.norm:.2f}; rows in "
        "behaviour_results, behaviour_summary, comparisons"
    )


@validate_app.command("preferences")
def validate_preferences(
    model: ModelOption = DEFAULT_MODEL,
    layer: LayerOption = None,
    level: LevelOption = "both",
    emotions: SteerEmotionsOption = PREFERENCE_EMOTIONS,
    scales: ScalesOption = CHOICE_SCALES,
    top_k: TopOption = Choice.top_k,
    activities: Annotated[
        Path | None, typer.Option("--activities", help="CSV with header activity,category.")
    ] = None,
    pairs: Annotated[
        int,
        typer.Option(
            "--comparisons",
            help="Ordered pairs of activities asked (seeded sample; all if enough).",
        ),
    ] = opts.PreferenceOptions.pairs,
    steer_activities: Annotated[
        int, typer.Option("--steer-activities", help="Activities steered, one at a time.")
    ] = opts.PreferenceOptions.steer_activities,
    corpus: CorpusOption = DEFAULT_CORPUS,
    method: MethodOption = "denoised",
    sae: SaeOption = None,
    resamples: ResamplesOption = Choice.resamples,
    seed: SeedOption = 0,
    batch_size: BatchOption = Choice.batch_size,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Preferences between activities: Elo, its correlation with emotion vectors, steering."""
    options = options_from(opts.PreferenceOptions, locals())

    from saefeatures.validation import preferences

    with workspace(db).open_store() as store:
        result = preferences.preferences(store, options)
    _print_preferences(result)


def _print_preferences(result: PreferenceResult) -> None:
    ranked = sorted(result.scores, key=lambda row: -row["elo"])
    columns = ["activity", "category", "comparisons", "elo", "ci_low", "ci_high"]
    render.print_rows(
        columns,
        ([row[c] for c in columns] for row in render.ends(ranked, SHOWN_ACTIVITIES)),
        title=f"{result.model}: most and least preferred of "
        f"{len(ranked)} activities ({result.pairs} pairs; first-position "
        f"bias {result.bias:+.2f} logits)",
    )
    columns = ["layer", "positive", "positive_r", "negative", "negative_r"]
    render.print_rows(
        columns,
        ([row[c] for c in columns] for row in result.strongest),
        title="emotion projection on the activity's tokens vs its Elo",
    )
    columns = ["metric", "direction_value", "feature_value"]
    render.print_rows(
        columns,
        ([row[c] for c in columns] for row in result.effects),
        title=f"steering at layer {result.layer} on the activity's tokens",
    )
    print(
        f"run {result.run_id}: rows in preference_comparisons, preference_scores, "
        "preference_correlations, preference_steering, comparisons"
    )
