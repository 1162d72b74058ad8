"""A workspace: one DuckDB file and one folder of artifacts (SAEs, figures, reports, logs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saefeatures.store.database import Store


@dataclass(frozen=True)
class Workspace:
    db: Path
    out: Path

    def open_store(self, read_only: bool = False) -> Store:
        return Store(self.db, read_only=read_only)

    @property
    def logs(self) -> Path:
        """Where the main job writes the traceback of a stage that failed."""
        return self.out / "logs"
