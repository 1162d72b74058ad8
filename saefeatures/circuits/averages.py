"""Effects averaged over pairs, and normalized by the pairs' score gaps.

A normalized effect is a ratio of means: mean(effect) / mean(gap) over the pairs that
have the effect, the gap being a pair's clean score minus its corrupted score. It is not
a mean of per-pair ratios, which one pair whose prompts score almost alike (a gap near 0)
would swamp; the faithfulness curves normalize the same way.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class PairMean:
    """A mean effect over pairs and its ratio to their mean gap (None: the mean gap is 0)."""

    effect: float
    normalized: float | None
    pairs: int


def pair_means(per_pair: Sequence[dict[Key, float]], gaps: Sequence[float]) -> dict[Key, PairMean]:
    """Each key's mean effect, and mean effect / mean gap, over the pairs that have it."""
    found: dict[Key, list[tuple[float, float]]] = {}
    for values, gap in zip(per_pair, gaps, strict=True):
        for key, value in values.items():
            found.setdefault(key, []).append((value, gap))
    means = {}
    for key, items in found.items():
        effect, gap = np.mean(items, axis=0)
        means[key] = PairMean(float(effect), float(effect / gap) if gap else None, len(items))
    return means


def filled(values: dict[Key, float], keys: Iterable[Key]) -> dict[Key, float]:
    """The values of `keys`, 0 where a pair has none (no effect there)."""
    return {key: values.get(key, 0.0) for key in keys}
