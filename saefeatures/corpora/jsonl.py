"""Input files read line by line: one JSON object per line (the shared first check of every
JSONL input file), and entries with line-numbered errors."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from saefeatures.errors import SaefeaturesError

T = TypeVar("T")
_UNUSABLE = "not usable JSON (a number too long, or nesting too deep)"


def numbered_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """The file's non-blank lines with their numbers, read as UTF-8.

    Lines end at `\\n`, `\\r\\n` or `\\r` (JSON text holds neither raw), not at the other
    breaks of `str.splitlines`: a JSON string may hold U+2028 or U+0085 as they are. Text
    that is not UTF-8 is an error naming the line of its first bad byte.
    """
    try:
        data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    except OSError as error:
        raise SaefeaturesError(f"cannot read {what} {path}: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SaefeaturesError(
            f"{what} {path} line {line}: not UTF-8 text (byte {data[error.start]:#04x}); "
            "save the file as UTF-8"
        ) from None
    for number, line in enumerate(re.split(r"\r\n?|\n", text), start=1):
        if line.strip():
            yield number, line


def object_of_line(where: str, line: str) -> dict[str, Any]:
    """The line's JSON object; anything else is an error naming `where` (file and line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise SaefeaturesError(f"{where}: not valid JSON ({error.msg})") from None
    except (ValueError, RecursionError):  # a number of > 4300 digits, or nesting too deep
        raise SaefeaturesError(f"{where}: {_UNUSABLE}") from None
    if not isinstance(record, dict):
        raise SaefeaturesError(f"{where}: expected a JSON object")
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" escapes decode to text that cannot be stored
        raise SaefeaturesError(
            f"{where}: holds an unpaired surrogate escape (e.g. \\ud800), which is not text"
        ) from None
    except RecursionError:
        raise SaefeaturesError(f"{where}: {_UNUSABLE}") from None
    return record


def read_entries(
    path: Path,
    what: str,
    parse: Callable[[str, str], T],
    noun: str,
    key: Callable[[T], str],
    header: Callable[[str, str], None] | None = None,
) -> list[T]:
    """Every non-blank line of the file as `parse(where, line)` makes it, where `where`
    names the file and the line; with `header`, the first line is `header(where, line)`'s
    to check instead. A missing file, one without entries, or two entries with the same
    `key` (the repeat's line named) is an error."""
    if not path.is_file():
        raise SaefeaturesError(f"{what} {path} does not exist")
    lines = [(f"{what} {path} line {number}", line) for number, line in numbered_lines(path, what)]
    if header is not None:
        header(f"{what} {path}", lines.pop(0)[1] if lines else "")
    found: dict[str, T] = {}
    for where, line in lines:
        entry = parse(where, line)
        if key(entry) in found:
            raise SaefeaturesError(f"{where}: {noun} {key(entry)!r} appears twice")
        found[key(entry)] = entry
    if not found:
        raise SaefeaturesError(f"{what} {path} has no entries")
    return list(found.values())
