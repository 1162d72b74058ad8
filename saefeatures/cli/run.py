"""`saefeatures run`: the main job, and what it prints."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.cli.common import (
    DbOption,
    DeviceOption,
    DtypeOption,
    EmotionsOption,
    LayersOption,
    ModelOption,
    OutOption,
    SetOption,
    TrainingTokensOption,
    parse_emotions,
    parse_layers,
    parse_names,
)
from saefeatures.config import DEFAULT_DB, DEFAULT_MODEL, DEFAULT_OUT

if TYPE_CHECKING:
    from saefeatures.pipeline.job import JobResult, ModelResult
    from saefeatures.store.workspace import Workspace


CORPORA = ",".join(opts.RunOptions.corpora)

ModelsOption = Annotated[
    str | None,
    typer.Option(
        "--models", help="Several models in turn, e.g. smollm2-135m-instruct,gemma-3-270m."
    ),
]
CorporaOption = Annotated[
    str,
    typer.Option(
        "--corpora",
        help="Corpora for vectors, e.g. templates,my-stories; the last is aligned, steered "
        "and validated.",
    ),
]
ModelStoriesOption = Annotated[
    bool,
    typer.Option(
        "--model-stories/--no-model-stories",
        help="An instruct model also writes its own stories (read after --corpora).",
    ),
]
SaeConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="SAE config (YAML file or preset); default: the model's preset."),
]
TrainOption = Annotated[
    bool, typer.Option("--train/--no-train", help="Train SAEs at the config's layers.")
]
Stage = Enum("Stage", {name: name for name in (*opts.STAGES, "all")}, type=str)
ForceOption = Annotated[
    list[Stage] | None,
    typer.Option("--force", help="Rerun a stage done before on the same inputs (repeatable)."),
]


def run_command(
    model: ModelOption = DEFAULT_MODEL,
    models_: ModelsOption = None,
    layers: LayersOption = "all",
    emotions: EmotionsOption = "default",
    corpora: CorporaOption = CORPORA,
    model_stories: ModelStoriesOption = opts.RunOptions.model_stories,
    config: SaeConfigOption = None,
    train: TrainOption = True,
    training_tokens: TrainingTokensOption = None,
    overrides: SetOption = None,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    force: ForceOption = None,
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Run the main job on one model or several: every stage, the comparison, the report.

    Stages done before on the same inputs are skipped; a failing stage leaves out only
    the stages that need it, and the job exits 1 after writing the report.
    """
    chosen = opts.RunOptions(
        models=(model,) if models_ is None else parse_names(models_),
        layers=parse_layers(layers),
        emotions=parse_emotions(emotions),
        corpora=parse_names(corpora) or (),
        model_stories=model_stories,
        sae_config=config,
        train=train,
        sae_tokens=training_tokens,
        sae_overrides=tuple(overrides or ()),
        force=frozenset(stage.value for stage in force or ()),
        dtype=dtype,
        device=device,
    )

    from saefeatures.pipeline import job
    from saefeatures.store.workspace import Workspace

    workspace = Workspace(db, out)
    result = job.run(workspace, chosen)
    _print_result(workspace, result)
    if result.failed:
        raise typer.Exit(1)


def _print_result(workspace: Workspace, result: JobResult) -> None:
    """What the main job did, the store's tables after it, and where to look next."""
    from saefeatures.pipeline.job import EXAMPLE_QUERIES

    for done in result.models:
        _print_model(done)
    if "skipped" in result.comparisons:
        print(f"comparisons skipped: {result.comparisons['skipped']}")
    with workspace.open_store(read_only=True) as store:
        render.print_rows(["table", "rows"], store.table_counts(), title="store tables")
    _print_stages(result)
    print(f"run {result.run_id}: database {workspace.db}, figures under {workspace.out}")
    if result.report:
        print(f"report: {result.report.path} (open it in a browser)")
    print("try:")
    for query in EXAMPLE_QUERIES:
        print(f'  saefeatures sql "{query}"')


def _print_stages(result: JobResult) -> None:
    render.print_rows(
        ["model", "stage", "part", "status", "seconds", "rows"],
        ([o.model, o.stage, o.part, o.status, f"{o.seconds:.1f}", o.rows] for o in result.outcomes),
        title="stages (skipped: done before on the same inputs; --force STAGE reruns)",
    )
    for outcome in result.failed:
        print(f"failed: {outcome.name} [{outcome.model}]: {outcome.error}")
    for outcome in result.blocked:
        print(f"not run: {outcome.name} [{outcome.model}]: {outcome.error}")
    if result.failed:
        print(
            f"{len(result.failed)} stage(s) failed and {len(result.blocked)} were not run; "
            "the report shows what exists. Rerun the same command to retry only those."
        )


def _print_model(done: ModelResult) -> None:
    """What the main job did for one model."""
    facts = done.facts
    name = facts["model"]
    if "error" in facts:
        print(f"model {name} did not load: {facts['error']}")
        return
    render.print_rows(["fact", "value"], facts.items(), title=f"model {name}")
    from saefeatures.pipeline.job import SAMPLE_PROMPT

    render.print_rows(
        ["layer", "resid_post shape", "mean norm"],
        done.residuals,
        title=f"residual stream on: {SAMPLE_PROMPT}",
    )
    render.print_rows(
        render.BEST_COLUMNS,
        (render.best_layer_row(corpus, best) for corpus, best in done.geometry.items()),
        title=f"geometry of the denoised emotion vectors ({name})",
    )
    _print_training(done.training)
    if done.alignment:
        render.print_rows(
            [
                "layer",
                "corpus",
                "SAE",
                "best |cos| > shuffled p99",
                "OMP R² > shuffled p99",
                "held-out AUROC p < .05",
                "UMAP",
            ],
            done.alignment,
            title="emotion vectors aligned with SAE features (share of emotions passing each "
            "null: contrasts built with shuffled labels)",
        )
    else:
        print("no SAE aligned at these layers: pass --config to train one, or `saefeatures load`")
    _print_steering(done.steering)
    _print_patching(done.patching)
    for experiment, outcome in done.validation.items():
        said = outcome.get("skipped") or f"in the store, run {outcome['run_id']}"
        print(f"validate {experiment}: {said}")


def _print_training(trained: dict) -> None:
    if "skipped" in trained:
        print(f"SAE training skipped: {trained['skipped']}")
        return
    saes = trained["saes"]
    render.print_rows(list(saes[0]), (row.values() for row in saes), title="SAEs trained")


def _print_steering(steered: dict) -> None:
    if "summary" not in steered:
        print(f"steering skipped: {steered.get('skipped')}")
        return
    summary = steered["summary"]
    left_out = (
        f" (left out, no vector: {', '.join(steered['left_out'])})"
        if steered.get("left_out")
        else ""
    )
    render.print_rows(
        list(summary[0]),
        (row.values() for row in summary),
        title=f"steering at layer {steered['layer']} with the {steered['corpus']} vectors"
        f"{left_out}",
    )


def _print_patching(patched: dict) -> None:
    if "skipped" in patched:
        print(f"patching skipped: {patched['skipped']}")
        return
    from saefeatures.patching import patch

    for title, columns, rows in patch.tables(patched["summary"]):
        render.print_rows(columns, rows, title=f"patching ({patched['pairs']} pairs): {title}")
