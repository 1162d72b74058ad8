"""One JSON object per line: the shared first check of every JSONL input file."""

from __future__ import annotations

import json
from typing import Any

from saefeatures.errors import SaefeaturesError


def object_of_line(where: str, line: str) -> dict[str, Any]:
    """The line's JSON object; anything else is an error naming `where` (file and line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise SaefeaturesError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise SaefeaturesError(f"{where}: expected a JSON object")
    return record
