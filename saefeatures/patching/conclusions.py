"""Prompt pairs in, patching conclusions out: reading pairs, and the numbers drawn from sweeps.

Definitions (all on the residual sweep at the score position, i.e. the last prompt
token, which every pair has whatever its tokenized lengths):

- normalized effect = (patched - corrupted) / (clean - corrupted): 0 is the corrupted
  run, 1 the clean run.
- peak layer of a prompt: the layer with the largest normalized effect; its relative
  depth is layer / (n_layers - 1).
- max patch effect of a prompt: that largest normalized effect.
- flip test, per situation (a good and a bad pair sharing one corrupted prompt), at the
  model's flip layer (the layer with the largest mean normalized effect over all
  prompts): patching in the good-news run raises the score above the corrupted one and
  patching in the bad-news run lowers it below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saefeatures import stats
from saefeatures.config import project_data
from saefeatures.corpora import jsonl
from saefeatures.errors import SaefeaturesError

SELECTION = 20  # situations on which choices are made, never scored
CONDITIONS = ("good", "bad")


@dataclass(frozen=True)
class Pair:
    id: str
    condition: str
    clean: str
    corrupted: str
    situation: str | None = None
    topic: str | None = None


def shipped_pairs() -> Path:
    return project_data("corpora") / "news_pairs.jsonl"


def read_pairs(path: Path | None = None) -> list[Pair]:
    """Pairs from JSONL (id, condition, clean, corrupted; situation and topic optional).

    A malformed line is an error naming its line number; nothing is skipped silently.
    """
    path = path or shipped_pairs()
    if not path.is_file():
        raise SaefeaturesError(f"pairs file {path} does not exist")
    pairs = []
    for number, line in jsonl.numbered_lines(path, "pairs file"):
        pairs.append(_pair_of_line(f"{path} line {number}", line))
    if not pairs:
        raise SaefeaturesError(f"pairs file {path} holds no pairs")
    ids = [pair.id for pair in pairs]
    if len(set(ids)) != len(ids):
        raise SaefeaturesError(f"pairs file {path}: pair ids must be unique")
    return pairs


def _pair_of_line(where: str, line: str) -> Pair:
    record = jsonl.object_of_line(where, line)
    for key in ("id", "condition", "clean", "corrupted"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise SaefeaturesError(f"{where}: `{key}` must be a non-empty string")
    if record["condition"] not in CONDITIONS:
        raise SaefeaturesError(
            f"{where}: condition must be good or bad, not {record['condition']!r}"
        )
    optional = {key: record.get(key) for key in ("situation", "topic")}
    if any(value is not None and not isinstance(value, str) for value in optional.values()):
        raise SaefeaturesError(f"{where}: `situation` and `topic` must be strings when given")
    return Pair(
        record["id"],
        record["condition"],
        record["clean"].strip(),
        record["corrupted"].strip(),
        **optional,
    )


def first_situations(pairs: list[Pair], limit: int | None) -> list[Pair]:
    """The pairs of the first `limit` situations (a pair without one is its own)."""
    if limit is None:
        return pairs
    if limit < 1:
        raise SaefeaturesError(f"--limit must be at least 1, got {limit}")
    kept = list(dict.fromkeys(pair.situation or pair.id for pair in pairs))[:limit]
    return [pair for pair in pairs if (pair.situation or pair.id) in set(kept)]


# -- conclusions ------------------------------------------------------------------------


def sign_summary(conditions: list[str], scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Per condition: prompts, right-signed share (good > 0, bad < 0) and mean score."""
    scores = np.asarray(scores, dtype=float)
    summary = {}
    for condition in CONDITIONS:
        chosen = scores[[c == condition for c in conditions]]
        if len(chosen):
            right = chosen > 0 if condition == "good" else chosen < 0
            summary[condition] = {
                "n": len(chosen),
                "right": int(right.sum()),
                "mean": float(chosen.mean()),
            }
    return summary


def selection_situations(pairs: list[Pair]) -> set[str]:
    """The first SELECTION situations of a pairs file: where choices are made (the reply
    set of the `replies` score, the flip layer), so that results on them are not scored."""
    situations = list(dict.fromkeys(pair.situation or pair.id for pair in pairs))
    return set(situations[:SELECTION])


def flip_layer(moves: list[tuple[int, float]], n_layers: int) -> int:
    """The layer of the middle third where patching moves the score furthest towards the
    clean prompt's, on average over the (layer, move) pairs given (the selection
    situations'); without any, the middle layer. Away from the output, where patching the
    last layers reduces to copying the clean run."""
    middle = range(n_layers // 3, max(2 * n_layers // 3, n_layers // 3 + 1))
    means = {
        layer: np.mean([move for at, move in moves if at == layer])
        for layer in middle
        if any(at == layer for at, _ in moves)
    }
    return max(means, key=means.get) if means else n_layers // 2


def flips(good_effect: np.ndarray, bad_effect: np.ndarray) -> np.ndarray:
    """Per situation: the good-news patch pushes up and the bad-news patch pushes down."""
    return (np.asarray(good_effect) > 0) & (np.asarray(bad_effect) < 0)


def correlation(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float] | None:
    """Pearson r with its 95% bootstrap CI; None where r is undefined (too few, constant)."""
    try:
        r = stats.pearson(x, y)
        low, high = stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=1000, seed=seed)
    except SaefeaturesError:
        return None
    return {"n": len(x), "r": r, "ci_low": low, "ci_high": high}
