"""The `saefeatures` command line: the app, its command groups, and the entry point.

Every command parses strings into typed options (`saefeatures.options`) and calls one
library function; heavy modules (torch, transformers, SAELens) load only inside the
command that runs, so `--help` answers at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

# Typer vendors its own click; its exception types live there (a private module, so
# pyproject.toml keeps typer below its next minor).
from typer._click.exceptions import ClickException, UsageError

from saefeatures import __version__
from saefeatures.cli import data, db, experiments, features, run, sae, validate
from saefeatures.cli.common import Typer
from saefeatures.errors import SaefeaturesError

app = Typer(
    help="Emotion directions and SAE features in open language models, in one DuckDB store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(shown: bool) -> None:
    if shown:
        print(f"saefeatures {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Emotion directions and SAE features in open language models, in one DuckDB store."""


MAIN = "The main job"
DATA = "Corpora and vectors"
SAES = "Sparse autoencoders"
EXPERIMENTS = "Features and interventions"
STORE = "The store and what is read from it"

app.command("run", rich_help_panel=MAIN)(run.run_command)
app.add_typer(data.models_app, name="models", rich_help_panel=DATA)
app.add_typer(data.corpus_app, name="corpus", rich_help_panel=DATA)
app.command("vectors", rich_help_panel=DATA)(data.vectors_command)
app.command("geometry", rich_help_panel=DATA)(data.geometry_command)
app.command("train", rich_help_panel=SAES)(sae.train_command)
app.command("evaluate", rich_help_panel=SAES)(sae.evaluate_command)
app.command("saes", rich_help_panel=SAES)(sae.saes_command)
app.command("load", rich_help_panel=SAES)(sae.load_command)
app.command("align", rich_help_panel=EXPERIMENTS)(experiments.align_command)
app.command("umap", rich_help_panel=EXPERIMENTS)(experiments.umap_command)
app.command("feature", rich_help_panel=EXPERIMENTS)(features.feature_command)
app.command("steer", rich_help_panel=EXPERIMENTS)(experiments.steer_command)
app.command("patch", rich_help_panel=EXPERIMENTS)(experiments.patch_command)
app.command("circuit", rich_help_panel=EXPERIMENTS)(experiments.circuit_command)
app.add_typer(validate.validate_app, name="validate", rich_help_panel=EXPERIMENTS)
app.command("compare", rich_help_panel=STORE)(db.compare_command)
app.command("report", rich_help_panel=STORE)(db.report_command)
app.command("sql", rich_help_panel=STORE)(db.sql_command)
app.command("queries", rich_help_panel=STORE)(db.queries_command)
app.command("schema", rich_help_panel=STORE)(db.schema_command)
app.add_typer(db.db_app, name="db", rich_help_panel=STORE)
app.command("export", rich_help_panel=STORE)(db.export_command)
app.command("export-neuronpedia", rich_help_panel=STORE)(features.export_neuronpedia_command)
app.command("import-results", rich_help_panel=STORE)(db.import_results_command)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except SaefeaturesError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except UsageError as error:
        if not error.format_message():  # help was shown for a bare group: not an error
            sys.exit(0)
        command = error.ctx.command_path if error.ctx else "saefeatures"
        print(f"error: {error.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except ClickException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    # Outside standalone mode typer turns Ctrl-C into a returned exit code 130, and
    # typer.Exit into its code.
    if code == 130:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
