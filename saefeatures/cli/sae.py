"""Commands on sparse autoencoders: train, evaluate, list, load."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.cli.common import (
    DbOption,
    DeviceOption,
    DtypeOption,
    FormatOption,
    ModelOption,
    OutOption,
    SetOption,
    TrainingTokensOption,
    options_from,
    parse_layers,
    workspace,
)
from saefeatures.config import DEFAULT_DB, DEFAULT_MODEL, DEFAULT_OUT
from saefeatures.errors import SaefeaturesError

SaeIdArgument = Annotated[str, typer.Argument(help="An SAE id, as listed by `saefeatures saes`.")]
SaeDtypeOption = Annotated[
    opts.Dtype | None,
    typer.Option(
        "--dtype",
        help="auto: bfloat16 where the hardware computes in it, else float32; default: the "
        "dtype the SAE is (or was) trained in.",
    ),
]


def train_command(
    layer: Annotated[int | None, typer.Option("--layer", help="One layer.")] = None,
    layers: Annotated[
        str | None, typer.Option("--layers", help="'all' or e.g. 4,8,10 (one forward per batch).")
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
    config: Annotated[
        str | None, typer.Option("--config", help="YAML file or preset; default: the model's.")
    ] = None,
    hook: Annotated[
        opts.HookSite | None, typer.Option("--hook", help="Hook site; default: the config's.")
    ] = None,
    tokens: TrainingTokensOption = None,
    dtype: SaeDtypeOption = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Default: the config's.")] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Hugging Face dataset, or local .txt/.jsonl/.parquet."),
    ] = None,
    cache_activations: Annotated[
        bool, typer.Option("--cache-activations", help="Keep activations on disk for reruns.")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start clean instead of resuming.")
    ] = False,
    overrides: SetOption = None,
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Train one SAE per layer with SAELens' trainer, evaluate it on held-out text, register it."""
    options = opts.TrainOptions(
        model=model,
        layers=_train_layers(layer, layers),
        config=config,
        hook=hook,
        tokens=tokens,
        dtype=dtype,
        seed=seed,
        dataset=dataset,
        cache_activations=cache_activations,
        restart=restart,
        device=device,
        overrides=tuple(overrides or ()),
    )

    from saefeatures.sae import api, distributed

    team = distributed.from_env()  # under torchrun: only rank 0 opens the store and reports
    if team is not None and not team.leader:
        api.train_share(out, options, team)
        return
    with workspace(db, out).open_store() as store:
        trained = api.train(store, out, options, team=team)
    facts = {name: value for name, value in asdict(trained).items() if name != "saes"}
    render.print_rows(["fact", "value"], facts.items(), title="SAE training")
    saes = trained.saes
    render.print_rows(list(saes[0]), (row.values() for row in saes), title="SAEs")


def _train_layers(layer: int | None, layers: str | None) -> opts.Layers | str | None:
    """--layer N or --layers (a list or 'all'); neither: the config's layers."""
    if layer is not None and layers is not None:
        raise SaefeaturesError("pass --layer or --layers, not both")
    if layer is not None:
        return (layer,)
    if layers is None or layers.strip() == "all":
        return layers and "all"
    return parse_layers(layers)


def evaluate_command(
    sae_id: SaeIdArgument,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Held-out text source; default: training's.")
    ] = None,
    eval_tokens: Annotated[
        int | None, typer.Option("--eval-tokens", help="Held-out tokens; default: the training's.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Default: the training's eval batch size.")
    ] = None,
    dtype: SaeDtypeOption = None,
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Recompute an SAE's held-out metrics (L0, explained variance, CE loss recovered, ...)."""
    options = options_from(opts.EvaluateOptions, locals())

    from saefeatures.sae import api

    with workspace(db, out).open_store() as store:
        evaluated = api.evaluate(store, out, options)
    shown = {**asdict(evaluated), **evaluated.metrics}
    del shown["metrics"]
    render.print_rows(["metric", "value"], shown.items(), title=f"SAE {sae_id}")


def saes_command(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's SAEs.")] = None,
    fmt: FormatOption = "table",
    db: DbOption = DEFAULT_DB,
) -> None:
    """List the registered SAEs with their headline metrics."""
    from saefeatures.sae import api

    with workspace(db).open_store(read_only=True) as store:
        render.print_arrow(api.list_saes(store, model), fmt, title="SAEs")


def load_command(
    path: Annotated[Path | None, typer.Option("--path", help="An SAE folder.")] = None,
    layout: Annotated[
        opts.SaeFormat, typer.Option("--layout", help="The folder's layout.")
    ] = "saelens",
    release: Annotated[
        str | None, typer.Option("--release", help="SAELens pretrained release.")
    ] = None,
    saelens_id: Annotated[
        str | None, typer.Option("--saelens-id", help="The SAE's id within the release.")
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
    hook: Annotated[
        str | None, typer.Option("--hook", help="Hook name or site, overriding the SAE's.")
    ] = None,
    layer: Annotated[int | None, typer.Option("--layer", help="Layer, with --hook SITE.")] = None,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Register an SAE from a folder or SAELens' registry, after checking it fits the model."""
    options = options_from(opts.LoadOptions, locals(), format="layout", hub_sae_id="saelens_id")

    from saefeatures.sae import api

    with workspace(db, out).open_store() as store:
        render.print_facts(api.load(store, out, options), "SAE loaded")
