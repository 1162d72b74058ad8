"""The lexical control script against a direct computation, a planted signal and a null."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parents[2] / "scripts" / "lexical_valence.py"
SPEC = importlib.util.spec_from_file_location("lexical_valence", SCRIPT)
lexical_valence = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(lexical_valence)

LEXICON = {"sun": 0.8, "warm": 0.6, "cold": -0.6, "grave": -0.8, "table": 0.0}


def test_a_passage_scores_the_mean_of_its_known_words():
    assert lexical_valence.passage_valence("The Sun was warm; a table.", LEXICON) == (
        np.mean([0.8, 0.6, 0.0])
    )
    assert lexical_valence.passage_valence("nothing known here", LEXICON) == 0.0


def test_words_that_follow_the_ratings_give_r_one_and_a_small_p():
    ratings = {f"e{i}": v for i, v in enumerate(np.linspace(-1, 1, 12))}
    words = ["grave", "cold", "table", "warm", "sun"]
    passages = {e: [" ".join(words[: 1 + int((v + 1) * 2)])] for e, v in ratings.items()}
    direct = [
        np.mean([LEXICON[w] for w in words[: 1 + int((v + 1) * 2)]]) for v in ratings.values()
    ]
    r, p, n = lexical_valence.lexical_r(passages, LEXICON, ratings)
    assert n == 12 and p < 0.01
    assert r == np.corrcoef(direct, list(ratings.values()))[0, 1] and r > 0.8


def test_words_unrelated_to_the_ratings_are_not_a_finding():
    rng = np.random.default_rng(1)
    ratings = {f"e{i}": float(v) for i, v in enumerate(rng.uniform(-1, 1, 40))}
    passages = {e: [" ".join(rng.choice(list(LEXICON), 6))] for e in ratings}
    _, p, _ = lexical_valence.lexical_r(passages, LEXICON, ratings)
    assert p > 0.05
