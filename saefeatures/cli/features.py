"""Commands that read single features from the store: feature, export-neuronpedia."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saefeatures.cli import render
from saefeatures.cli.common import DbOption, workspace
from saefeatures.cli.sae import SaeIdArgument
from saefeatures.config import DEFAULT_DB

ExamplesOption = Annotated[
    int, typer.Option("--examples", min=1, help="Top-activating passages shown per feature.")
]


def feature_command(
    sae_id: SaeIdArgument,
    feature: Annotated[int, typer.Argument(help="The feature's index in the SAE.")],
    examples: ExamplesOption = 10,
    db: DbOption = DEFAULT_DB,
) -> None:
    """One feature's dashboard: the text it fires on most, token by token, its activation
    histogram, the emotions it aligns with, the tokens it promotes and suppresses."""
    from saefeatures.features import dashboard, terminal

    with workspace(db).open_store(read_only=True) as store:
        shown = dashboard.dashboard(store, sae_id, feature, examples)
    terminal.show(render.console, shown)


def export_neuronpedia_command(
    sae_id: SaeIdArgument,
    to: Annotated[Path, typer.Option("--to", help="A new folder for the Neuronpedia files.")],
    examples: ExamplesOption = 20,
    source_set: Annotated[
        str, typer.Option("--source-set", help="Neuronpedia source set: <layer>-<this>.")
    ] = "saefeatures-res",
    model_id: Annotated[
        str | None,
        typer.Option("--model-id", help="Neuronpedia model id; default: the model's name."),
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Every feature of an SAE that fired, as Neuronpedia's feature and activation batches
    (docs/neuronpedia.md lists the fields)."""
    from saefeatures.features import neuronpedia

    with workspace(db).open_store(read_only=True) as store:
        exported = neuronpedia.export(store, sae_id, to, examples, source_set, model_id)
    render.print_facts(exported, f"exported SAE {sae_id} for Neuronpedia")
