"""What every command shares: option types, and parsers from strings to typed values.

Nothing here imports torch: `saefeatures --help` must answer at once.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer

from saefeatures import options as opts
from saefeatures.config import DB_ENV, DEFAULT_OUT, DEVICE_ENV, DTYPE_ENV, OUT_ENV
from saefeatures.errors import SaefeaturesError

if TYPE_CHECKING:
    from saefeatures.store.workspace import Workspace

T = TypeVar("T")

DbOption = Annotated[
    Path, typer.Option("--db", envvar=DB_ENV, help="DuckDB file of the workspace.")
]
OutOption = Annotated[
    Path, typer.Option("--out", envvar=OUT_ENV, help="Folder for artifacts (SAEs, figures).")
]
ModelOption = Annotated[
    str,
    typer.Option("--model", help="Embedded model name, Hugging Face name or local directory."),
]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        envvar=DTYPE_ENV,
        help="auto (bfloat16 where the hardware computes in it), float32 or bfloat16.",
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", envvar=DEVICE_ENV, help="auto (cuda, then mps, then cpu), cpu, cuda, mps."
    ),
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
LayersOption = Annotated[str, typer.Option("--layers", help="'all' or e.g. 4,8,10.")]
MethodOption = Annotated[str, typer.Option("--method", help="denoised or raw vectors.")]
LevelOption = Annotated[str, typer.Option("--level", help="direction, features or both.")]
SaeOption = Annotated[
    str | None, typer.Option("--sae", help="One SAE id; default: every SAE at the layer.")
]
SeedOption = Annotated[int, typer.Option("--seed")]
BatchOption = Annotated[int, typer.Option("--batch-size")]


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
