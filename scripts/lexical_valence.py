"""The lexical control for PC1-valence: how far a corpus's words alone carry valence.

For each emotion, the mean lexicon valence of the words of its passages; then Pearson's r
of those means with the emotion ratings, beside a permutation p (ratings shuffled). A
model's PC1-valence r on the same corpus is read against this: a model that only reads
the words cannot do much better than its words.

    python scripts/lexical_valence.py LEXICON.tsv corpora/stories.jsonl other.jsonl ...

LEXICON.tsv: `word<TAB>value` lines with values in 0..1 (for example NRC-VAD's English
valence file, which the project does not ship). Corpora: JSONL lines with `emotion` and
`text`, or `emotion` and `stories` (a list).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import DEFAULT_EMOTIONS

WORD = re.compile(r"[a-z']+")


def read_lexicon(path: Path) -> dict[str, float]:
    """Word -> valence on -1..1 (the file's 0..1 rescaled as 2x - 1)."""
    lexicon = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, _, value = line.partition("\t")
        try:
            lexicon[word.lower()] = 2 * float(value) - 1
        except ValueError:
            continue  # a header line
    return lexicon


def read_passages(path: Path) -> dict[str, list[str]]:
    passages: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            texts = row["stories"] if "stories" in row else [row["text"]]
            passages.setdefault(row["emotion"], []).extend(texts)
    return passages


def passage_valence(text: str, lexicon: dict[str, float]) -> float:
    values = [lexicon[word] for word in WORD.findall(text.lower()) if word in lexicon]
    return float(np.mean(values)) if values else 0.0


def lexical_r(
    passages: dict[str, list[str]], lexicon: dict[str, float], valence: dict[str, float]
) -> tuple[float, float, int]:
    """r of each emotion's mean passage valence with its rating, its permutation p, and
    the number of emotions."""
    emotions = [e for e in passages if e in valence]
    words = np.array(
        [np.mean([passage_valence(t, lexicon) for t in passages[e]]) for e in emotions]
    )
    ratings = np.array([valence[e] for e in emotions])
    r = float(np.corrcoef(words, ratings)[0, 1])
    rng = np.random.default_rng(0)
    null = [abs(np.corrcoef(words, rng.permutation(ratings))[0, 1]) for _ in range(999)]
    p = (1 + sum(value >= abs(r) for value in null)) / (1 + len(null))
    return r, p, len(emotions)


def main(lexicon_path: str, *corpora: str) -> None:
    lexicon = read_lexicon(Path(lexicon_path))
    valence = catalog.load_ratings().valence
    print("corpus | emotions | lexical r | p")
    for path in corpora:
        passages = read_passages(Path(path))
        for label, chosen in (("all", passages), ("default", None)):
            if chosen is None:
                chosen = {e: t for e, t in passages.items() if e in DEFAULT_EMOTIONS}
            r, p, n = lexical_r(chosen, lexicon, valence)
            print(f"{path} ({label}) | {n} | {r:.2f} | {p:.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        main(*sys.argv[1:])
    except (OSError, SaefeaturesError) as error:  # a wrong path, model or corpus
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
