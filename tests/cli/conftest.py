"""What the command-line tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from saefeatures.store.database import Store


@pytest.fixture
def db(tmp_path) -> Path:
    """A store with one finished run: a workspace a command can open."""
    path = tmp_path / "w.duckdb"
    with Store(path) as store, store.run("seed", {}):
        pass
    return path
