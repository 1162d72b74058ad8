"""Word valence from human ratings, to score generated text without any model.

The VADER lexicon (about 7,500 words and emoticons, each the mean of 10 human ratings on
-4..4) ships in the vaderSentiment 3.3.2 source distribution that the SAE text sources
already fetch; it is read from the archive, never imported.
"""

from __future__ import annotations

import re
import tarfile
from functools import cache

import numpy as np

from saefeatures.corpora import training_text

_WORD = re.compile(r"[a-z']+")


@cache
def word_valence() -> dict[str, float]:
    """Each rated word's mean valence, rescaled from -4..4 to -1..1."""
    with tarfile.open(training_text.fetch_sdist(training_text.VADER)) as archive:
        name = next(n for n in archive.getnames() if n.endswith("/vader_lexicon.txt"))
        raw = archive.extractfile(name).read().decode("utf-8", errors="replace")
    valence = {}
    for line in raw.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and _WORD.fullmatch(parts[0]):
            valence[parts[0]] = float(parts[1]) / 4
    return valence


def text_valence(passage: str) -> float:
    """Mean valence of the rated words in a passage; 0 when none is rated."""
    ratings = word_valence()
    scores = [ratings[w] for w in _WORD.findall(passage.lower()) if w in ratings]
    return float(np.mean(scores)) if scores else 0.0
