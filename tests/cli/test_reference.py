"""docs/cli.md: the output of its generator, and every command and option of the live
command line in it (the former names of renamed options left out)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from saefeatures.cli import reference
from saefeatures.cli.common import FORMER_NAMES
from tests.cli.test_vocabulary import LEAVES
from tests.conftest import run_cli_here

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_the_generator_output():
    done = subprocess.run(
        [sys.executable, "-m", "saefeatures.cli.reference"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert DOC.read_text() == done.stdout, (
        f"docs/cli.md is out of date with the command line; regenerate it with "
        f"`{reference.REGENERATE}` (or `make docs`)"
    )


def _sections(text: str) -> dict[str, str]:
    """Each command's section, by its words after `saefeatures`."""
    parts = re.split(r"^#{3,4} saefeatures (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_command_has_its_help_and_exactly_its_options():
    sections = _sections(reference.markdown())
    assert set(LEAVES) <= set(sections)
    for path, command in LEAVES.items():
        section = sections[path]
        assert reference._one_line(command.help) in section, path
        listed = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))
        expected = {
            param.name.upper()
            if param.param_type_name == "argument"
            else "/".join((*param.opts, *param.secondary_opts))
            if param.secondary_opts
            else ", ".join(param.opts)
            for param in command.params
            if not param.hidden
        }
        assert listed == expected, path


def test_commands_come_in_the_order_of_saefeatures_help():
    text = reference.markdown()
    headings = re.findall(r"^### saefeatures (\S+)$", text, flags=re.MULTILINE)
    shown = run_cli_here("--help", env={"COLUMNS": "400"}).stdout
    assert headings == re.findall(r"^│ ([a-z][\w-]*) ", shown, flags=re.MULTILINE)
    panels = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert panels == re.findall(r"^╭─ (.+?) ─", shown, flags=re.MULTILINE)[1:]  # after Options


def test_former_names_and_hidden_options_are_left_out():
    text = reference.markdown()
    for olds in FORMER_NAMES.values():
        for old in olds:
            documented = [p for c in LEAVES.values() for p in c.params if old in p.opts]
            assert (f"`{old}`" in text) == bool(documented), old  # only where still current
    assert "--output" not in _sections(text)["report"]  # hidden: the former file option
