"""Metric names against their vocabulary (the `metrics` table), so that every value in a
(metric, value) table has a documented meaning and unit.

A vocabulary name may hold placeholders in braces (`mean_danger_rho:{emotion}`): each stands
for any non-empty text filled in at run time.
"""

from __future__ import annotations

import re

from saefeatures.store.database import Store

_PLACEHOLDER = re.compile(r"\\\{\w+\\\}")  # `{emotion}` once escaped


def pattern(name: str) -> re.Pattern[str]:
    """The metric names a vocabulary name stands for."""
    return re.compile(_PLACEHOLDER.sub(".+", re.escape(name)))


def undocumented(store: Store) -> list[tuple[str, str]]:
    """(table, metric) of every stored metric name that no vocabulary name stands for."""
    vocabulary: dict[str, list[re.Pattern[str]]] = {}
    for row in store.query("SELECT stored_in, name FROM metrics").to_pylist():
        vocabulary.setdefault(row["stored_in"], []).append(pattern(row["name"]))
    missing = []
    for table, patterns in sorted(vocabulary.items()):
        names = store.query(f'SELECT DISTINCT metric FROM "{table}" ORDER BY metric')
        missing += [
            (table, name)
            for name in names["metric"].to_pylist()
            if not any(p.fullmatch(name) for p in patterns)
        ]
    return missing
