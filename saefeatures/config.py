"""Workspace locations, defaults, and where the project's own data files live."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_CORPUS = "stories"  # the project's own story corpus, corpora/stories.jsonl
DEFAULT_DB = Path("saefeatures.duckdb")
DEFAULT_OUT = Path("saefeatures-out")
REPORT_NAME = "report.html"  # the report, in the output folder of `run` and `report`

DB_ENV = "SAEFEATURES_DB"
OUT_ENV = "SAEFEATURES_OUT"
CACHE_ENV = "SAEFEATURES_CACHE"
DTYPE_ENV = "SAEFEATURES_DTYPE"  # the default of every --dtype, for a whole shell
DEVICE_ENV = "SAEFEATURES_DEVICE"  # the default of every --device, for a whole shell

_PACKAGE_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """Root of the converted-model cache (`SAEFEATURES_CACHE`, else ~/.cache/saefeatures)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "saefeatures"


def project_data(name: str) -> Path:
    """A top-level data folder (`db`, `corpora`, `sae_configs`).

    An installed wheel carries them under `saefeatures/_data/`; an editable
    install or a checkout reads them from the repository root.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"saefeatures data folder {name!r} is missing from the installation")
