"""Retrieval on unseen text: the metrics, the split, a planted emotion found at both
levels on a tiny model, and bad input through the real command line."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise, permutations
from pathlib import Path

import numpy as np
import pytest

from saefeatures import models
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import RetrievalOptions
from saefeatures.report import readouts as report_readouts
from saefeatures.store.database import Store
from saefeatures.validation import readouts, retrieval
from tests.alignment.test_align import LAYER, _planted_corpus, _planted_sae, _vector
from tests.conftest import assert_refused, run_cli_here

EMOTIONS = "happy,sad,angry,calm"


# -- the metrics against direct computations ------------------------------------------------


def _direct_average_precision(order: list[int], relevant: list[bool]) -> float:
    """The textbook definition, one candidate at a time down a ranking."""
    hits, total = 0, 0.0
    for position, index in enumerate(order, start=1):
        if relevant[index]:
            hits += 1
            total += hits / position
    return total / sum(relevant)


def _direct_expected(scores: list[float], relevant: list[bool], k: int) -> tuple[float, float]:
    """Average precision and precision@k averaged over every ranking that the scores allow
    (every order of tied candidates), enumerated one by one."""
    rankings = [
        order
        for order in permutations(range(len(scores)))
        if all(scores[a] >= scores[b] for a, b in pairwise(order))
    ]
    ap = np.mean([_direct_average_precision(list(order), relevant) for order in rankings])
    hits = np.mean([sum(relevant[i] for i in order[:k]) for order in rankings])
    return float(ap), float(hits / k)


def test_precision_and_average_precision_equal_direct_computations():
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.normal(size=30)
        relevant = rng.random(30) < 0.3
        relevant[0] = True
        order = np.argsort(-scores)
        assert retrieval.precision_at(scores, relevant, 10) == pytest.approx(
            relevant[order[:10]].sum() / 10
        )
        assert retrieval.average_precision(scores, relevant) == pytest.approx(
            _direct_average_precision(order.tolist(), relevant.tolist())
        )


def test_average_precision_of_a_known_ranking():
    # relevant at ranks 1, 3 and 6: (1/1 + 2/3 + 3/6) / 3
    relevant = np.array([1, 0, 1, 0, 0, 1, 0], dtype=bool)
    scores = -np.arange(7.0)
    assert retrieval.average_precision(scores, relevant) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert retrieval.precision_at(scores, relevant, 5) == pytest.approx(2 / 5)


def test_tied_scores_count_every_order_alike():
    """With ties the metrics are their mean over the orders of the tied candidates, so they
    do not depend on the order the candidates come in."""
    # a hit tied at 0 with two misses after a miss at 1: ranks 2, 3, 4 alike
    scores, relevant = np.array([1.0, 0, 0, 0]), np.array([False, False, False, True])
    expected = (1 / 2 + 1 / 3 + 1 / 4) / 3
    assert retrieval.average_precision(scores, relevant) == pytest.approx(expected)
    assert retrieval.precision_at(scores, relevant, 2) == pytest.approx(1 / 3 / 2)
    rng = np.random.default_rng(0)
    for _ in range(25):
        scores = rng.integers(0, 3, 7).astype(float)
        relevant = rng.random(7) < 0.4
        relevant[rng.integers(7)] = True
        ap, p_at_3 = _direct_expected(scores.tolist(), relevant.tolist(), 3)
        assert retrieval.average_precision(scores, relevant) == pytest.approx(ap)
        assert retrieval.precision_at(scores, relevant, 3) == pytest.approx(p_at_3)
        mixed = rng.permutation(7)  # the candidates in another order
        assert retrieval.average_precision(scores[mixed], relevant[mixed]) == pytest.approx(ap)


def test_chance_is_the_mean_average_precision_of_random_rankings():
    for n_relevant in range(1, 7):
        hits = np.arange(6) < n_relevant
        direct = np.mean(
            [
                _direct_average_precision(list(order), hits.tolist())
                for order in permutations(range(6))
            ]
        )
        assert retrieval.chance_average_precision(n_relevant, 6) == pytest.approx(direct)
    chance = retrieval.chance_average_precision(6, 412)
    assert chance == pytest.approx(0.02799, abs=1e-5) and chance > 1.9 * 6 / 412
    null = retrieval.shuffled_label_null(np.arange(412) < 6, 2000, seed=0)
    assert retrieval.average_precision(-np.arange(412.0), null).mean() == pytest.approx(
        chance, rel=0.05
    )


def test_the_shuffled_label_null_and_its_p_value():
    relevant = np.array([True] * 4 + [False] * 16)
    shuffled = retrieval.shuffled_label_null(relevant, 2000, seed=0)
    assert shuffled.shape == (2000, 20) and (shuffled.sum(axis=1) == 4).all()
    null = retrieval.average_precision(-np.arange(20.0), shuffled)
    assert null.mean() == pytest.approx(retrieval.chance_average_precision(4, 20), rel=0.05)
    observed = 0.4567  # between attainable values: no rounding tie
    direct = (1 + sum(value >= observed for value in null)) / (1 + len(null))
    assert readouts.upper_tail_p(observed, null) == pytest.approx(direct)
    assert readouts.upper_tail_p(1.0, null) < 0.01 < readouts.upper_tail_p(0.2, null)
    # every score tied: each shuffle scores the chance value, and so does the observation
    tied = retrieval.average_precision(np.zeros(20), shuffled)
    assert readouts.upper_tail_p(retrieval.average_precision(np.zeros(20), relevant), tied) == 1


def test_upper_tail_p_counts_ties_of_negative_observations():
    """A null draw equal to the observation, up to rounding, counts as extreme for either sign."""
    null = np.array([-0.3, -0.31, 0.0, -0.1 - 0.2])  # -0.1 - 0.2 rounds to -0.30000000000000004
    for observed in (-0.3, 0.1 + 0.2 - 0.6):
        direct = (1 + sum(value >= observed - 1e-9 for value in null)) / (1 + len(null))
        assert readouts.upper_tail_p(observed, null) == pytest.approx(direct) == 4 / 5
    assert readouts.upper_tail_p(0.3, -null) == pytest.approx(4 / 5)


def test_split_by_passage_halves_each_emotion_and_is_seeded():
    passages = [catalog.Passage(f"{e} {i}", e, f"t{i % 3}") for e in "ab" for i in range(7)]
    split = retrieval.split_passages(passages, "passage", seed=1)
    assert sorted(p.text for p in split.train + split.held_out) == sorted(p.text for p in passages)
    assert [sum(p.emotion == e for p in split.held_out) for e in "ab"] == [3, 3]
    again = retrieval.split_passages(passages, "passage", seed=1)
    assert [p.text for p in again.held_out] == [p.text for p in split.held_out]
    by_topic = retrieval.split_passages(passages, "topic", seed=1)
    held_topics = {p.topic for p in by_topic.held_out}
    assert len(held_topics) == 1 and held_topics.isdisjoint({p.topic for p in by_topic.train})


def test_auto_takes_the_corpus_own_split_where_every_passage_has_one(tmp_path):
    """The shipped stories hold out whole topics: retrieval reads premises the vectors never
    saw, also after the corpus went through the store."""
    shipped = catalog.builtin_passages("stories")
    with Store(tmp_path / "w.duckdb") as store, store.run("seed", {}) as run_id:
        catalog.ensure_builtin(store, run_id, "stories")
        stored = catalog.read_corpus(store, "stories")
    for passages in (shipped, stored):
        assert retrieval.resolve_split(passages, "auto") == "corpus"
        split = retrieval.split_passages(passages, "corpus", seed=0)
        assert len(split.held_out) == len(passages) // 4  # 3 of each emotion's 12
        assert {p.topic for p in split.held_out}.isdisjoint({p.topic for p in split.train})
    plain = [catalog.Passage(f"{e} {i}", e) for e in "ab" for i in range(4)]
    assert retrieval.resolve_split(plain, "auto") == "passage"
    assert retrieval.resolve_split(plain, "topic") == "topic"
    with pytest.raises(SaefeaturesError, match="--split passage"):
        retrieval.split_passages(plain, "corpus", seed=0)


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


OTHER_CORPUS = "mean_average_precision (other, passage split)"  # another corpus's comparison


@pytest.fixture(scope="module")
def retrieved(tmp_path_factory, tiny_llama_dir) -> dict[str, object]:
    """Vectors of a corpus whose happy passages carry a marker, a planted SAE whose
    feature 7 is the happy vector, its alignment, then retrieval at both levels (with
    another corpus's comparison row in the store, which it must keep)."""
    root = tmp_path_factory.mktemp("retrieval")
    db = root / "w.duckdb"
    env = {"SAEFEATURES_DB": str(db), "SAEFEATURES_OUT": str(root / "out")}
    model = ("--model", str(tiny_llama_dir))
    steps = [
        ("corpus", "import", str(_marked_corpus(root / "planted.jsonl")), "--name", "planted"),
        (
            "vectors",
            *model,
            "--corpus",
            "planted",
            "--layers",
            "1,2",
            "--offset",
            "10",
            "--emotions",
            EMOTIONS,
        ),
    ]
    for step in steps:
        assert run_cli_here(*step, env=env).code == 0, step
    planted = _planted_sae(root / "planted-sae", _vector(db, "happy"))
    assert run_cli_here("load", "--path", str(planted), *model, env=env).code == 0
    align = ("align", "--layer", str(LAYER), *model, "--corpus", "planted", "--sample-rows", "0")
    aligned = run_cli_here(*align, "--null-directions", "100", "--k-max", "2", env=env)
    assert aligned.code == 0, aligned.stderr
    name = models.resolve(str(tiny_llama_dir)).name
    with Store(db) as store:
        store.insert(
            "comparisons",
            {"run_id": ["x"], "kind": [retrieval.KIND], "model": [name], "metric": [OTHER_CORPUS]},
        )
    result = run_cli_here(
        "validate",
        "retrieval",
        *model,
        "--corpus",
        "planted",
        "--top",
        "1",
        "--permutations",
        "200",
        env=env,
    )
    assert result.code == 0, result.stderr
    return {
        "env": env,
        "db": db,
        "stdout": result.stdout,
        "model": model,
        "name": name,
        "dir": str(tiny_llama_dir),
    }


def _rows(db: Path, sql: str, params: list | None = None) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.query(sql, params).to_pylist()


def test_the_planted_emotion_ranks_its_own_passages_first_at_both_levels(retrieved):
    rows = _rows(
        retrieved["db"],
        "SELECT * FROM retrieval_results WHERE layer = ? AND emotion = 'happy' ORDER BY level",
        [LAYER],
    )
    assert [row["level"] for row in rows] == ["direction", "features"]
    for row in rows:
        assert row["average_precision"] == pytest.approx(1.0), row
        assert row["precision_at_10"] == pytest.approx(row["n_relevant"] / 10)
        chance = retrieval.chance_average_precision(row["n_relevant"], row["n_candidates"])
        assert row["chance_average_precision"] == pytest.approx(chance)
        assert row["n_relevant"] / row["n_candidates"] < chance < 0.15
        assert row["p_value"] < 0.01
    top = _rows(
        retrieved["db"],
        "SELECT relevant, passage_emotion FROM retrieval_top_passages "
        "WHERE layer = ? AND emotion = 'happy' AND level = 'direction' ORDER BY rank",
        [LAYER],
    )
    n_relevant = rows[0]["n_relevant"]
    assert all(t["relevant"] and t["passage_emotion"] == "happy" for t in top[:n_relevant])


def test_rows_cover_every_emotion_layer_and_level(retrieved):
    counts = _rows(
        retrieved["db"],
        "SELECT level, count(*) AS n, count(DISTINCT emotion) AS e "
        "FROM retrieval_results GROUP BY level ORDER BY level",
    )
    assert counts == [{"level": "direction", "n": 8, "e": 4}, {"level": "features", "n": 4, "e": 4}]
    # Only unseen text is ranked: every emotion's held-out passages and the neutral ones.
    held_out = _rows(
        retrieved["db"], "SELECT DISTINCT emotion, n_relevant, n_candidates FROM retrieval_results"
    )
    texts = sum(row["n_relevant"] for row in held_out) + len(catalog.builtin_passages("neutral"))
    assert {row["n_candidates"] for row in held_out} == {texts}
    parts = _rows(
        retrieved["db"],
        "SELECT DISTINCT part FROM retrieval_top_passages WHERE emotion = 'happy' AND relevant",
    )
    assert parts == [{"part": "held-out"}]
    joined = "passages p ON p.corpus = t.source_corpus AND p.passage_id = t.passage_id"
    shown = _rows(
        retrieved["db"], f"SELECT count(*) AS n FROM retrieval_top_passages t JOIN {joined}"
    )
    assert shown[0]["n"] == 12 * retrieval.TOP_PASSAGES  # every top passage joins its text
    compared = _rows(
        retrieved["db"],
        "SELECT metric, direction_value, feature_value FROM "
        "comparisons WHERE kind = 'validation-retrieval' ORDER BY metric",
    )
    assert [c["metric"] for c in compared] == [
        OTHER_CORPUS,
        "mean_average_precision (planted, passage split)",
        "mean_precision_at_10 (planted, passage split)",
        "share_p_below_0.05 (planted, passage split)",
    ]
    assert "MAP" in retrieved["stdout"] and "chance MAP" in retrieved["stdout"]


def _copy(retrieved, tmp_path: Path) -> Path:
    """The fixture's store, to run on without changing what the other tests read."""
    return Path(shutil.copy(retrieved["db"], tmp_path / "copy.duckdb"))


def test_one_level_writes_only_its_rows_and_clears_the_comparisons(retrieved, tmp_path):
    db = _copy(retrieved, tmp_path)
    options = RetrievalOptions(
        model=retrieved["dir"], corpus="planted", level="features", top_k=1, permutations=50
    )
    with Store(db) as store:
        retrieval.retrieve(store, options)
    for table in ("retrieval_results", "retrieval_top_passages"):
        assert _rows(db, f"SELECT DISTINCT level FROM {table}") == [{"level": "features"}]
    compared = _rows(db, "SELECT metric FROM comparisons WHERE kind = 'validation-retrieval'")
    assert compared == [{"metric": OTHER_CORPUS}]  # this corpus's are gone, the other's stay


def test_an_emotion_subset_is_ranked_as_in_the_whole_vector_set(retrieved, tmp_path):
    """The contrast baseline, the split and the candidates are the vector set's: choosing
    emotions changes only which ones are scored."""
    db = _copy(retrieved, tmp_path)
    options = RetrievalOptions(
        model=retrieved["dir"],
        corpus="planted",
        emotions=("happy", "sad"),
        level="direction",
        permutations=50,
    )
    sql = (
        "SELECT emotion, layer, rank, passage_id, score FROM retrieval_top_passages WHERE "
        "level = 'direction' AND emotion IN ('happy', 'sad') ORDER BY ALL"
    )
    whole = _rows(db, sql)
    with Store(db) as store:
        retrieval.retrieve(store, options)
    subset = _rows(db, sql)
    assert [row["passage_id"] for row in subset] == [row["passage_id"] for row in whole]
    assert [row["score"] for row in subset] == pytest.approx([row["score"] for row in whole])


def test_bad_retrieval_input_is_one_line_and_changes_nothing(retrieved, tmp_path):
    env, db = retrieved["env"], retrieved["db"]
    base = ("validate", "retrieval", *retrieved["model"], "--corpus", "planted")
    assert_refused(
        db,
        env,
        base,
        [
            (("--emotions", "happy,glee"), ("unknown emotion", "glee")),
            (
                ("--emotions", "happy,afraid"),
                ("no denoised vectors for afraid", "saefeatures vectors"),
            ),
            (("--corpus", "templates"), ("no denoised vectors", "saefeatures vectors")),
            (("--layers", "1"), ("no SAE", "saefeatures train", "saefeatures load")),
            (("--split", "topic"), ("topics",)),
            (("--split", "sideways"), ("'--split'", "'sideways' is not one of")),
            (("--level", "up"), ("'--level'", "'up' is not one of")),
            (("--layers", "9"), ("out of range",)),
        ],
    )
    fresh = {**env, "SAEFEATURES_DB": str(tmp_path / "fresh.duckdb")}
    run_cli_here("corpus", "list", env=fresh)
    assert_refused(tmp_path / "fresh.duckdb", fresh, base, [((), ("saefeatures vectors",))])


def test_passages_short_of_the_offset_are_refused_before_the_run(retrieved, tmp_path):
    """Checked with the tokenizer alone: the store keeps no failed run."""
    db = _copy(retrieved, tmp_path)
    tokenizer = models.load_tokenizer(retrieved["dir"])
    with Store(db) as store:
        passages = catalog.read_corpus(store, "planted") + catalog.read_corpus(store, "neutral")
        shortest = min(len(ids) for ids in tokenizer([p.text for p in passages])["input_ids"])
        store.con.execute("UPDATE emotion_vectors SET token_offset = ?", [shortest])
    env = {**retrieved["env"], "SAEFEATURES_DB": str(db)}
    base = ("validate", "retrieval", *retrieved["model"], "--corpus", "planted")
    refused = ("no token past the vectors' offset", "saefeatures vectors --offset")
    assert_refused(db, env, base, [((), refused)])


def test_the_report_shows_the_scores_and_the_top_passages(retrieved):
    with Store(retrieved["db"], read_only=True) as store:
        section = report_readouts.retrieval(store)
    html = "".join(section.blocks)
    assert sum(block.startswith('<div class="figure">') for block in section.blocks) == 1
    assert "@@@@" in html  # a planted happy passage among the shown top passages
    assert "features" in html and "chance_map" in html
    # one chance trace per model, corpus, split and level, drawn over that group's layers
    assert html.count(': chance"') == 2
