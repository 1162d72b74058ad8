"""Strings into typed options: what the command line parses, and what options refuse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saefeatures import options
from saefeatures.cli.common import parse_emotions, parse_floats, parse_layers, parse_names
from saefeatures.errors import SaefeaturesError

REQUIRED = "happy sad angry afraid calm proud loving joyful excited desperate"


def test_emotion_lists_are_parsed_then_checked(tmp_path):
    default = parse_emotions("default")
    assert len(default) == 30 and set(REQUIRED.split()) <= set(default)
    assert len(parse_emotions("all")) == 171
    assert parse_emotions("sad, happy,sad") == ("sad", "happy")
    listed = tmp_path / "mine.txt"
    listed.write_text("# my emotions\ncalm\n\nafraid\n")
    assert parse_emotions(str(listed)) == ("calm", "afraid")
    assert parse_emotions(None) is None
    with pytest.raises(SaefeaturesError, match="unknown emotion word"):
        options.check_emotions(parse_emotions("happy,glorptious"))
    with pytest.raises(SaefeaturesError, match="no emotion words"):
        parse_emotions(" , ")


def test_layers_scales_and_names():
    assert parse_layers("all") is None
    assert parse_layers("10, 4,4") == (4, 10)
    assert parse_floats("--scales", "0.1,1") == (0.1, 1.0)
    assert parse_names("a, b,,") == ("a", "b") and parse_names(None) is None
    for text in ("x", "", "4;8"):
        with pytest.raises(SaefeaturesError, match="layers"):
            parse_layers(text)
    with pytest.raises(SaefeaturesError, match="--scales"):
        parse_floats("--scales", "x")
    for scales in ((), (float("nan"),), (0.1, float("inf")), (0.0,)):
        with pytest.raises(SaefeaturesError, match="--scales"):
            options.check_scales("--scales", scales)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: options.SteerOptions(level="all"), "unknown --level 'all'"),
        (lambda: options.VectorOptions(dtype="float16"), "unknown --dtype 'float16'"),
        (lambda: options.VectorOptions(device="tpu"), "unknown --device 'tpu'"),
        (lambda: options.VectorOptions(denoise_var=1.0), "--denoise-var"),
        (lambda: options.VectorOptions(min_passages=0), "--min-passages must be at least 1"),
        (lambda: options.PatchOptions(level="mlp"), "unknown --level"),
        (lambda: options.RetrievalOptions(split="half"), "unknown --split"),
        (lambda: options.TrainOptions(dtype="float16"), "unknown --dtype 'float16'"),
        (lambda: options.RunOptions(models=()), "no model given"),
        (lambda: options.RunOptions(force=frozenset({"vectorz"})), "unknown stage vectorz"),
        (lambda: options.StoryOptions(temperature=0.0), "--temperature"),
    ],
)
def test_options_refuse_bad_values_on_creation(make, fragment):
    with pytest.raises(SaefeaturesError, match=fragment):
        make()


def test_good_options_are_accepted_with_their_defaults():
    made = options.RunOptions(force=frozenset({"all"}))
    assert made.forced == frozenset(options.STAGES)
    assert options.TrainOptions(dtype=None, layers="all").layers == "all"
    assert (
        options.TrainOptions(dtype="auto").dtype
        == options.EvaluateOptions(sae_id="s", dtype="auto").dtype
        == "auto"
    )
    assert options.SteerOptions().scales == (0.05, 0.1, 0.2, 0.4)


def test_the_command_line_answers_help_without_torch():
    """`--help` must be instant: the CLI imports no torch, transformers or SAELens."""
    code = (
        "import sys, saefeatures.cli.app; "
        "heavy = [m for m in ('torch', 'transformers', 'sae_lens', 'transformer_lens') "
        "if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
