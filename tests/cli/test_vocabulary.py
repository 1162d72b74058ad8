"""One name per concept: renamed options still answer to their former names with a warning,
closed choices are listed by `--help` and refused in one line, `--layer` has one default,
and `report` writes where `run` does."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import typer
import yaml

from saefeatures import models
from saefeatures import options as opts
from saefeatures.cli.app import app
from saefeatures.cli.common import FORMER_NAMES, layer_or_default
from saefeatures.cli.render import Format
from saefeatures.config import OUT_ENV, project_data
from tests.conftest import assert_user_error, run_cli, run_cli_here

ROOT = typer.main.get_command(app)


def _leaves(command: Any = ROOT, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every command that runs, by its words (`validate retrieval`)."""
    children = getattr(command, "commands", None)
    if children is None:
        return {" ".join(path): command}
    return {
        name: leaf
        for word, child in children.items()
        for name, leaf in _leaves(child, (*path, word)).items()
    }


LEAVES = _leaves()


def _flags(command: Any) -> set[str]:
    return {flag for param in command.params for flag in getattr(param, "opts", ())}


def _parsed(path: str, args: list[str]) -> dict[str, Any]:
    """The values the command's parameters get from `args`, without running it."""
    return LEAVES[path].make_context(path, list(args)).params


# (command, former name, value, new name)
RENAMED = [
    ("train", "--tokens", "4096", "--training-tokens"),
    ("run", "--sae-tokens", "4096", "--training-tokens"),
    ("run", "--sae-set", "k=8", "--set"),
    ("validate retrieval", "--top-k", "3", "--top"),
    ("validate quantity", "--top-k", "3", "--top"),
    ("validate behaviour", "--top-k", "3", "--top"),
    ("validate preferences", "--top-k", "3", "--top"),
    ("validate preferences", "--pairs", "30", "--comparisons"),
    ("load", "--format", "sparsify", "--layout"),
    ("load", "--sae-id", "layer_2/width_16k", "--saelens-id"),
    ("align", "--null-samples", "200", "--null-directions"),
    ("steer", "--gen-tokens", "3", "--max-new-tokens"),
]


@pytest.mark.parametrize(("path", "old", "value", "new"), RENAMED)
def test_a_former_name_sets_the_same_value_and_warns_once(capsys, path, old, value, new):
    assert _parsed(path, [new, value]) != _parsed(path, [])  # the value reaches a parameter
    warning = f"warning: {old} is deprecated; use {new}\n"
    for given in ([old, value], [f"{old}={value}"], [old, value, old, value]):
        current = [new if arg == old else arg for arg in given]
        current = [arg.replace(f"{old}=", f"{new}=") for arg in current]
        assert _parsed(path, current) == _parsed(path, given), given
        assert capsys.readouterr().err == warning  # once per command, never for the new name


def test_every_rename_is_tested_and_the_table_lists_no_other():
    assert {(old, new) for _, old, _, new in RENAMED} == {
        (old, new) for new, olds in FORMER_NAMES.items() for old in olds
    }


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_no_command_has_a_former_name_as_an_option_of_its_own(path):
    """A former name stays with the option it named: it never shadows a current option."""
    flags = _flags(LEAVES[path])
    assert not {old for new in flags for old in FORMER_NAMES.get(new, ())} & flags


def test_a_former_name_keeps_its_meaning_where_nothing_was_renamed():
    assert _parsed("sql", ["SELECT 1", "--format", "csv"])["fmt"] == "csv"
    assert _parsed("patch", ["--pairs", "p.jsonl"])["pairs"].name == "p.jsonl"


def test_the_former_name_works_through_the_real_command_line(tmp_path):
    db = tmp_path / "w.duckdb"
    result = run_cli("train", "--tokens", "0", "--db", str(db))
    assert result.code == 2, result.stderr
    assert result.stderr.splitlines() == [
        "warning: --tokens is deprecated; use --training-tokens",
        "error: --training-tokens must be at least 1, got 0",
    ]
    assert not db.exists()


# (command, option, its closed choices)
CHOICES = [
    ("run", "--dtype", get_args(opts.Dtype)),
    ("models info", "--device", get_args(opts.Device)),
    ("sql", "--format", get_args(Format)),
    ("saes", "--format", get_args(Format)),
    ("load", "--layout", get_args(opts.SaeFormat)),
    ("train", "--hook", get_args(opts.HookSite)),
    ("steer", "--level", get_args(opts.Level)),
    ("patch", "--level", get_args(opts.PatchLevel)),
    ("patch", "--score", get_args(opts.ReplyScore)),
    ("patch", "--positions", get_args(opts.PatchPositions)),
    ("align", "--method", get_args(opts.Method)),
    ("validate retrieval", "--split", get_args(opts.Split)),
    ("run", "--force", (*opts.STAGES, "all")),
]


@pytest.mark.parametrize(("path", "option", "choices"), CHOICES)
def test_help_lists_the_choices_and_a_wrong_one_is_one_line(path, option, choices):
    shown = run_cli_here(*path.split(), "--help", env={"COLUMNS": "400"})  # one row a line
    assert shown.code == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if f"│ {option} " in line]
    assert "|".join(choices) in line
    args = ["SELECT 1"] if path == "sql" else ["smollm2-135m-instruct"] * (path == "models info")
    refused = run_cli_here(*path.split(), *args, option, "sideways")
    assert_user_error(refused, f"'{option}'", "'sideways' is not one of", repr(choices[-1]))


def test_a_wrong_choice_is_one_line_through_the_real_command_line(tmp_path):
    db = tmp_path / "w.duckdb"
    assert_user_error(
        run_cli("steer", "--level", "sideways", "--db", str(db)), "'--level'", "'both'"
    )
    assert not db.exists()


def test_the_default_layer_is_a_third_of_the_depth_where_the_presets_sit():
    for name, spec in models.EMBEDDED.items():
        preset = yaml.safe_load((project_data("sae_configs") / f"{name}.yaml").read_text())
        assert opts.default_layer(spec.shape["n_layers"]) in preset["layers"], name
        assert layer_or_default(None, name) == round(spec.shape["n_layers"] / 3)
        assert layer_or_default(0, name) == 0


@pytest.mark.parametrize("path", ["align", "umap", "steer", "validate behaviour"])
def test_layer_is_optional_with_one_help_wherever_a_layer_is_studied(path):
    (layer,) = [p for p in LEAVES[path].params if p.name == "layer"]
    assert not layer.required and layer.default is None
    assert layer.help == "The layer; default: a third of the model's depth."


def test_corpus_help_lists_every_subcommand():
    shown = run_cli_here("corpus", "--help").stdout
    assert {"list", "show", "import", "generate"} == set(ROOT.commands["corpus"].commands)
    for name in ROOT.commands["corpus"].commands:
        assert f"│ {name} " in shown, name


def test_report_writes_into_the_out_folder_as_run_does(tmp_path, db):
    out = tmp_path / "results"
    written = run_cli_here("report", "--db", str(db), env={OUT_ENV: str(out)})
    assert written.code == 0, written.stderr
    assert written.stdout.startswith(f"report: {out / 'report.html'} (")
    assert "saefeatures report" in (out / "report.html").read_text()

    other = tmp_path / "other"
    chosen = run_cli_here("report", "--out", str(other), "--db", str(db))
    assert chosen.stdout.startswith(f"report: {other / 'report.html'} (")
    assert (other / "report.html").read_text().count("<section") == (
        (out / "report.html").read_text().count("<section")
    )


def test_report_output_still_names_the_file_and_warns(tmp_path, db):
    page = tmp_path / "mine.html"
    written = run_cli_here("report", "-o", str(page), "--db", str(db))
    assert written.code == 0, written.stderr
    assert written.stderr == "warning: --output is deprecated; use --out\n"
    assert written.stdout.startswith(f"report: {page} (") and page.is_file()
