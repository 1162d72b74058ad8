"""What every command shares: option types, parsers from strings to typed values, and the
former names of renamed options.

Nothing here imports torch: `saefeatures --help` must answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer
from typer.core import TyperCommand

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.config import DB_ENV, DEFAULT_OUT, DEVICE_ENV, DTYPE_ENV, OUT_ENV
from saefeatures.errors import SaefeaturesError

if TYPE_CHECKING:
    from saefeatures.store.workspace import Workspace

T = TypeVar("T")

# The former names of renamed options: each still works, with a warning, for one release,
# in the commands that have the new name.
FORMER_NAMES: dict[str, tuple[str, ...]] = {
    "--training-tokens": ("--tokens", "--sae-tokens"),
    "--set": ("--sae-set",),
    "--top": ("--top-k",),
    "--layout": ("--format",),
    "--saelens-id": ("--sae-id",),
    "--null-directions": ("--null-samples",),
    "--max-new-tokens": ("--gen-tokens",),
    "--comparisons": ("--pairs",),
}


def warn_renamed(old: str, new: str) -> None:
    print(f"warning: {old} is deprecated; use {new}", file=sys.stderr)


def current_names(flags: Iterable[str], args: list[str]) -> list[str]:
    """The arguments with each former option name replaced by its new one (warned once):
    `flags` are the command's option names, so a name renamed elsewhere keeps its meaning."""
    renamed = {old: new for new in flags for old in FORMER_NAMES.get(new, ())}
    warned: set[str] = set()
    current = []
    for index, arg in enumerate(args):
        if arg == "--":  # what follows is not an option
            return current + args[index:]
        name, equals, value = arg.partition("=")
        if name in renamed:
            if name not in warned:
                warn_renamed(name, renamed[name])
                warned.add(name)
            arg = renamed[name] + equals + value
        current.append(arg)
    return current


class Command(TyperCommand):
    """A command that still accepts the former names of its renamed options."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        flags = [flag for param in self.params for flag in getattr(param, "opts", ())]
        return super().parse_args(ctx, current_names(flags, args))


class Typer(typer.Typer):
    """A typer app whose commands accept the former names of renamed options."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


DbOption = Annotated[
    Path, typer.Option("--db", envvar=DB_ENV, help="DuckDB file of the workspace.")
]
OutOption = Annotated[
    Path,
    typer.Option(
        "--out", envvar=OUT_ENV, help="Folder for artifacts (SAEs, figures, report.html)."
    ),
]
ModelOption = Annotated[
    str,
    typer.Option("--model", help="Embedded model name, Hugging Face name or local directory."),
]
DtypeOption = Annotated[
    opts.Dtype,
    typer.Option(
        "--dtype",
        envvar=DTYPE_ENV,
        help="auto: bfloat16 where the hardware computes in it, else float32.",
    ),
]
DeviceOption = Annotated[
    opts.Device,
    typer.Option("--device", envvar=DEVICE_ENV, help="auto: cuda, then mps, then cpu."),
]
CorpusOption = Annotated[
    str, typer.Option("--corpus", help="Corpus name: templates, stories, or one you imported.")
]
EmotionsOption = Annotated[
    str, typer.Option("--emotions", help="default, all, a file (one word a line) or a,b,c.")
]
SomeEmotionsOption = Annotated[
    str | None,
    typer.Option("--emotions", help="a,b,c, default, all or a file; default: all with vectors."),
]
FormatOption = Annotated[render.Format, typer.Option("--format", help="How rows are printed.")]
TrainingTokensOption = Annotated[
    int | None,
    typer.Option(
        "--training-tokens", help="Training tokens per SAE; default: the config's training_tokens."
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="KEY=VALUE override of the SAE config's keys (repeatable)."),
]
LayersOption = Annotated[str, typer.Option("--layers", help="'all' or e.g. 4,8,10.")]
MethodOption = Annotated[opts.Method, typer.Option("--method", help="Which vectors.")]
LevelOption = Annotated[
    opts.Level, typer.Option("--level", help="Emotion directions, SAE features or both.")
]
SaeOption = Annotated[
    str | None, typer.Option("--sae", help="One SAE id; default: every SAE at the layer.")
]
LayerOption = Annotated[
    int | None, typer.Option("--layer", help="The layer; default: a third of the model's depth.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the random draws.")]
BatchOption = Annotated[int, typer.Option("--batch-size", help="Rows per forward pass.")]


def parse_layers(text: str) -> opts.Layers | None:
    """`all` (None: every layer) or comma-separated indices, sorted and each once."""
    if text.strip() == "all":
        return None
    try:
        layers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise SaefeaturesError(
            f"cannot read layers {text!r}: give comma-separated numbers like 4,8,10 or 'all'"
        ) from None
    if not layers:
        raise SaefeaturesError(f"cannot read layers {text!r}: give numbers like 4,8,10 or 'all'")
    return layers


def parse_emotions(text: str | None) -> opts.Emotions | None:
    """`default`, `all`, a file with one word per line, or `a,b,c` (None stays None)."""
    if text is None:
        return None
    if text == "all":
        return opts.all_emotions()
    if text == "default":
        return opts.default_emotions()
    path = Path(text)
    words = opts.read_lines(path) if _is_file(path) else [w.strip() for w in text.split(",")]
    words = list(dict.fromkeys(word for word in words if word))
    if not words:
        raise SaefeaturesError(f"no emotion words in {text!r}")
    return tuple(words)


def parse_floats(flag: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SaefeaturesError(
            f"cannot read {flag} {text!r}: give numbers like 0.25,0.5,1"
        ) from None


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """Comma-separated names (None stays None)."""
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        return False


def layer_or_default(layer: int | None, model: str) -> int:
    """The layer asked for, else the model's default layer (read from its config alone)."""
    if layer is not None:
        return layer
    from saefeatures import models

    return opts.default_layer(models.shape_of(models.resolve(model))["n_layers"])


def workspace(db: Path, out: Path = DEFAULT_OUT) -> Workspace:
    """The workspace of a command: its database and its folder of artifacts."""
    from saefeatures.store.workspace import Workspace

    return Workspace(db, out)


def options_from(make: type[T], given: dict[str, Any], **renamed: str) -> T:
    """Typed options from a command's parameters (`locals()`), named as the fields: text
    fields parsed (emotions, layers, lists of numbers or names), lists made tuples, every
    other value passed as it is. `renamed` maps a field to a parameter of another name."""
    hints = get_type_hints(make)
    values = {}
    for item in fields(make):
        name = renamed.get(item.name, item.name)
        if name not in given:
            continue
        value = given[name]
        if isinstance(value, str):
            value = _parsed(item.name, hints[item.name], value)
        elif isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return make(**values)


def _parsed(name: str, hint: object, text: str) -> object:
    if name == "emotions":
        return parse_emotions(text)
    if name == "layers":
        return parse_layers(text)
    if hint in (tuple[float, ...], "tuple[float, ...]"):
        return parse_floats("--" + name.replace("_", "-"), text)
    if hint in (tuple[str, ...], tuple[str, ...] | None):
        return parse_names(text)
    return text
