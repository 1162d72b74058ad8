"""Retrieval on unseen text: the metrics, the split, a planted emotion found at both
levels on a tiny model, and bad input through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from saefeatures import corpora, report_readouts, retrieval, validation
from saefeatures.store import Store
from tests.conftest import assert_user_error, run_cli
from tests.test_alignment import LAYER, _digest, _planted_corpus, _planted_sae, _vector

EMOTIONS = "happy,sad,angry,calm"


# -- the metrics against direct computations ------------------------------------------------


def _direct_average_precision(scores: list[float], relevant: list[bool]) -> float:
    """The textbook definition, one candidate at a time."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total = 0, 0.0
    for position, index in enumerate(order, start=1):
        if relevant[index]:
            hits += 1
            total += hits / position
    return total / sum(relevant)


def test_precision_and_average_precision_equal_direct_computations():
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.normal(size=30)
        relevant = rng.random(30) < 0.3
        relevant[0] = True
        ranked = retrieval.ranked_relevance(scores, relevant)
        top = np.argsort(-scores)[:10]
        assert retrieval.precision_at(ranked, 10) == pytest.approx(relevant[top].sum() / 10)
        assert retrieval.average_precision(ranked) == pytest.approx(
            _direct_average_precision(scores.tolist(), relevant.tolist())
        )


def test_average_precision_of_a_known_ranking():
    # relevant at ranks 1, 3 and 6: (1/1 + 2/3 + 3/6) / 3
    ranked = np.array([1, 0, 1, 0, 0, 1, 0], dtype=float)
    assert retrieval.average_precision(ranked) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert retrieval.precision_at(ranked, 5) == pytest.approx(2 / 5)


def test_the_shuffled_label_null_and_its_p_value():
    relevant = np.array([True] * 4 + [False] * 16)
    null = retrieval.shuffled_label_null(relevant, 2000, seed=0)
    assert null.shape == (2000,)
    # a random ranking's AP averages close to the share of relevant candidates and more
    assert 0.2 < null.mean() < 0.35 and null.max() <= 1.0
    observed = 0.4567  # between attainable values: no rounding tie
    direct = (1 + sum(value >= observed for value in null)) / (1 + len(null))
    assert validation.upper_tail_p(observed, null) == pytest.approx(direct)
    assert validation.upper_tail_p(1.0, null) < 0.01 < validation.upper_tail_p(0.2, null)


def test_split_by_passage_halves_each_emotion_and_is_seeded():
    passages = [corpora.Passage(f"{e} {i}", e, f"t{i % 3}") for e in "ab" for i in range(7)]
    split = retrieval.split_passages(passages, "passage", seed=1)
    assert sorted(p.text for p in split.train + split.held_out) == sorted(p.text for p in passages)
    assert [sum(p.emotion == e for p in split.held_out) for e in "ab"] == [3, 3]
    again = retrieval.split_passages(passages, "passage", seed=1)
    assert [p.text for p in again.held_out] == [p.text for p in split.held_out]
    by_topic = retrieval.split_passages(passages, "topic", seed=1)
    held_topics = {p.topic for p in by_topic.held_out}
    assert len(held_topics) == 1 and held_topics.isdisjoint({p.topic for p in by_topic.train})


# -- a planted emotion on a tiny model -------------------------------------------------------


def _marked_corpus(path: Path) -> Path:
    """The planted corpus of the alignment tests, with the marker between every two words
    of a happy passage: strong enough to survive pooling over a whole passage."""
    rows = [json.loads(line) for line in _planted_corpus(path).read_text().splitlines()]
    for row in rows:
        if row["emotion"] == "happy":
            row["text"] = " @@@@ ".join(row["text"].split())
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def retrieved(tmp_path_factory, tiny_llama_dir) -> dict[str, object]:
    """Vectors of a corpus whose happy passages carry a marker, a planted SAE whose
    feature 7 is the happy vector, its alignment, then retrieval at both levels."""
    root = tmp_path_factory.mktemp("retrieval")
    db = root / "w.duckdb"
    env = {"SAEFEATURES_DB": str(db), "SAEFEATURES_OUT": str(root / "out")}
    model = ("--model", str(tiny_llama_dir))
    steps = [
        ("corpus", "import", str(_marked_corpus(root / "planted.jsonl")), "--name", "planted"),
        ("vectors", *model, "--corpus", "planted", "--layers", "1,2", "--offset", "10",
         "--emotions", EMOTIONS),
    ]  # fmt: skip
    for step in steps:
        assert run_cli(*step, env=env).code == 0, step
    planted = _planted_sae(root / "planted-sae", _vector(db, "happy"))
    assert run_cli("load", "--path", str(planted), *model, env=env).code == 0
    align = ("align", "--layer", str(LAYER), *model, "--corpus", "planted", "--sample-rows", "0")
    aligned = run_cli(*align, "--null-samples", "200", "--k-max", "4", env=env)
    assert aligned.code == 0, aligned.stderr
    result = run_cli("validate", "retrieval", *model, "--corpus", "planted",
                     "--top-k", "1", "--permutations", "200", env=env)  # fmt: skip
    assert result.code == 0, result.stderr
    return {"env": env, "db": db, "stdout": result.stdout, "model": model}


def _rows(db: Path, sql: str, params: list | None = None) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.query(sql, params).to_pylist()


def test_the_planted_emotion_ranks_its_own_passages_first_at_both_levels(retrieved):
    rows = _rows(retrieved["db"], "SELECT * FROM retrieval_results WHERE layer = ? AND "
                 "emotion = 'happy' ORDER BY level", [LAYER])  # fmt: skip
    assert [row["level"] for row in rows] == ["direction", "features"]
    for row in rows:
        assert row["average_precision"] == pytest.approx(1.0), row
        assert row["precision_at_10"] == pytest.approx(row["n_relevant"] / 10)
        assert row["p_value"] < 0.01 and row["chance"] < 0.15
    top = _rows(retrieved["db"], "SELECT relevant, passage_emotion FROM retrieval_top_passages "
                "WHERE layer = ? AND emotion = 'happy' AND level = 'direction' ORDER BY rank",
                [LAYER])  # fmt: skip
    n_relevant = rows[0]["n_relevant"]
    assert all(t["relevant"] and t["passage_emotion"] == "happy" for t in top[:n_relevant])


def test_rows_cover_every_emotion_layer_and_level(retrieved):
    counts = _rows(retrieved["db"], "SELECT level, count(*) AS n, count(DISTINCT emotion) AS e "
                   "FROM retrieval_results GROUP BY level ORDER BY level")  # fmt: skip
    assert counts == [{"level": "direction", "n": 8, "e": 4}, {"level": "features", "n": 4, "e": 4}]
    # every text but the emotion's own training passages: both halves, neutral, other emotions
    sizes = _rows(retrieved["db"], "SELECT emotion, count(*) AS n FROM passages WHERE corpus = "
                  "'planted' GROUP BY emotion")  # fmt: skip
    texts = sum(row["n"] for row in sizes) + len(corpora.builtin_passages("neutral"))
    for row in _rows(retrieved["db"], "SELECT DISTINCT emotion, n_relevant, n_candidates FROM "
                     "retrieval_results"):  # fmt: skip
        own = next(s["n"] for s in sizes if s["emotion"] == row["emotion"])
        assert row["n_candidates"] == texts - (own - row["n_relevant"]), row
    parts = _rows(retrieved["db"], "SELECT DISTINCT part FROM retrieval_top_passages "
                  "WHERE emotion = 'happy' AND relevant")  # fmt: skip
    assert parts == [{"part": "held-out"}]
    joined = "passages p ON p.corpus = t.source_corpus AND p.passage_id = t.passage_id"
    shown = _rows(
        retrieved["db"], f"SELECT count(*) AS n FROM retrieval_top_passages t JOIN {joined}"
    )
    assert shown[0]["n"] == 12 * retrieval.TOP_PASSAGES  # every top passage joins its text
    compared = _rows(retrieved["db"], "SELECT metric, direction_value, feature_value FROM "
                     "comparisons WHERE kind = 'validation-retrieval' ORDER BY metric")  # fmt: skip
    assert [c["metric"] for c in compared] == [
        "mean_average_precision", "mean_precision_at_10", "share_p_below_0.05"
    ]  # fmt: skip
    assert "MAP" in retrieved["stdout"]


def test_bad_retrieval_input_is_one_line_and_changes_nothing(retrieved, tmp_path):
    env, db = retrieved["env"], retrieved["db"]
    base = ("validate", "retrieval", *retrieved["model"], "--corpus", "planted")
    before = _digest(db)
    for args, fragments in [
        (("--emotions", "happy,glee"), ("unknown emotion", "glee")),
        (("--emotions", "happy,afraid"), ("no denoised vectors for afraid", "saefeatures vectors")),
        (("--corpus", "templates"), ("no denoised vectors", "saefeatures vectors")),
        (("--layers", "1"), ("no SAE", "saefeatures train", "saefeatures load")),
        (("--split", "topic"), ("topics",)),
        (("--split", "sideways"), ("unknown split",)),
        (("--level", "up"), ("unknown level",)),
        (("--layers", "9"), ("out of range",)),
    ]:
        assert_user_error(run_cli(*base, *args, env=env), *fragments)
    assert _digest(db) == before
    fresh = {**env, "SAEFEATURES_DB": str(tmp_path / "fresh.duckdb")}
    run_cli("corpus", "list", env=fresh)
    fresh_before = _digest(tmp_path / "fresh.duckdb")
    assert_user_error(run_cli(*base, env=fresh), "saefeatures vectors")
    assert _digest(tmp_path / "fresh.duckdb") == fresh_before


def test_the_report_shows_the_scores_and_the_top_passages(retrieved):
    with Store(retrieved["db"], read_only=True) as store:
        section = report_readouts.retrieval(store)
    html = "".join(section.blocks)
    assert sum(block.startswith('<div class="figure">') for block in section.blocks) == 1
    assert "@@@@" in html  # a planted happy passage among the shown top passages
    assert "features" in html and "chance" in html
