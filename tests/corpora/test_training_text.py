"""SAE training text never holds the text that SAE features are evaluated on."""

from __future__ import annotations

import hashlib
import json
import re

from saefeatures.config import project_data
from saefeatures.corpora import catalog, training_text

CORPORA = project_data("corpora")
SHINGLE = 8  # words: a run this long shared by two texts is not chance


def _evaluation_texts() -> list[str]:
    """Every text the suite scores: the built-in corpora and every prompt file."""
    texts = [p.text for name in catalog.BUILTIN for p in catalog.builtin_passages(name)]
    for line in (CORPORA / "news_pairs.jsonl").read_text().splitlines():
        pair = json.loads(line)
        texts += [pair["clean"], pair["corrupted"]]
    for line in (CORPORA / "quantity.jsonl").read_text().splitlines():
        texts.append(json.loads(line)["template"].replace("{q}", "1"))
    for line in (CORPORA / "pressure_scenarios.jsonl").read_text().splitlines():
        texts.append(json.loads(line)["scenario"])
    return texts


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _shingles(text: str) -> set[int]:
    words = _words(text)
    return {hash(" ".join(words[i : i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}


def test_the_default_training_text_holds_no_evaluation_text():
    documents = training_text.default_documents()
    evaluated = _evaluation_texts()
    assert len(evaluated) > 1000
    digest = lambda text: hashlib.sha256(text.strip().encode()).hexdigest()  # noqa: E731
    assert not {digest(d) for d in documents} & {digest(t) for t in evaluated}
    seen = set().union(*(_shingles(d) for d in documents))
    shared = [t[:60] for t in evaluated if len(_words(t)) >= SHINGLE and _shingles(t) & seen]
    assert not shared, shared[:5]
