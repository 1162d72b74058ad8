"""The quantity test: the statistics against direct computations, the prompt file's
checks, a planted monotone trend recovered at both levels on a tiny chat model, and bad
input through the real command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from saefeatures import activations, models, stats
from saefeatures.errors import SaefeaturesError
from saefeatures.options import QuantityOptions
from saefeatures.report import readouts as report_readouts
from saefeatures.store.database import Store
from saefeatures.validation import quantity, readouts
from saefeatures.vectors import extraction
from tests.alignment.test_align import LAYER, PLANTED, _planted_sae
from tests.conftest import assert_refused, run_cli_here

# -- the statistics --------------------------------------------------------------------------


def test_spearman_with_the_order_equals_spearman_with_log_quantity():
    rng = np.random.default_rng(0)
    log_quantity = np.log([0.2, 0.5, 1, 2, 4, 6, 10, 20])
    values = rng.normal(size=(5, 8))
    values[0, :3] = values[0, 3]  # ties share their average rank
    direct = [stats.spearman(log_quantity, row) for row in values]
    assert quantity.spearman_with_order(values) == pytest.approx(direct)
    assert np.isnan(quantity.spearman_with_order(np.ones((1, 8))))[0]


def test_the_order_null_and_its_p_value_equal_a_direct_loop():
    rng = np.random.default_rng(1)
    x, y = np.log(np.arange(1, 9) * 3.0), rng.normal(size=8)
    orders = quantity.permuted_orders(8, 300, np.random.default_rng(2))
    null = quantity.order_correlation(y, orders)
    assert null == pytest.approx([stats.spearman(x[order], y) for order in orders])
    trend = quantity.family_trends([y], np.array([-1.0]), 300, seed=5)
    # the same seeded shuffles of the order, each scored by scipy, one at a time
    shuffles = np.random.default_rng(5).permuted(np.tile(np.arange(8), (300, 1)), axis=1)
    again = [spearmanr(x[order], y).statistic for order in shuffles]
    observed = abs(spearmanr(x, y).statistic)
    direct = (1 + sum(abs(value) >= observed for value in again)) / (1 + len(again))
    assert trend.p_value[0] == pytest.approx(direct)
    assert trend.danger_null[:, 0] == pytest.approx([-value for value in again])


def test_the_mean_over_families_is_signed_by_stakes():
    rising = np.arange(8.0)
    trend = quantity.family_trends([rising, rising, np.ones(8)], np.array([1.0, -1.0, 1.0]), 200, 0)
    mean, p = quantity.mean_danger(trend, np.array([1.0, -1.0, 1.0]))
    assert mean == pytest.approx(0.0)  # +1 and -1; the constant family is left out
    alone, p_alone = quantity.mean_danger(
        quantity.family_trends([rising, rising], np.ones(2), 500, 0), np.ones(2)
    )
    assert alone == pytest.approx(1.0) and p_alone < 0.01 and p > 0.5


def test_the_shipped_families_read_and_format():
    families = quantity.read_families(quantity.shipped_prompts())
    assert len(families) == 26 and all(len(f.quantities) == 8 for f in families)
    assert sum(f.stakes == "fall" for f in families) == 13
    assert families[0].prompts()[0].startswith("I just took 250 mg")
    assert quantity.shown(0.5) == "0.5" and quantity.shown(2000.0) == "2000"


def _synthetic(reading: str, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Final-token residuals of the shipped prompts in 32 dimensions, with one direction
    reading either the number's rank (`drift`: what size, digits or length give) or the
    rank signed by the family's stakes (`stakes`: danger itself); and the emotion vectors,
    the first along that direction."""
    rng = np.random.default_rng(seed)
    families = quantity.read_families(quantity.shipped_prompts())
    rank = np.concatenate([np.arange(8.0) for _ in families])
    sign = np.concatenate([np.full(8, quantity.STAKES[f.stakes]) for f in families])
    axis = quantity.unit_rows(rng.standard_normal(32))
    signal = rank if reading == "drift" else sign * rank
    residual = rng.standard_normal((len(rank), 32)) + np.outer(signal, axis)
    vectors = np.vstack([axis, rng.standard_normal((5, 32))])
    return residual, vectors, families


@pytest.mark.parametrize("reading", ["drift", "stakes"])
def test_only_a_reading_of_the_stakes_beats_directions_of_the_same_span(reading):
    """A direction that drifts with the number (a planted null) passes no null; one that
    reads danger (a planted signal) passes both. With rising families alone (the old
    shipped set) the drift would have looked like danger."""
    significant = []
    for seed in range(10):
        residual, vectors, families = _synthetic(reading, seed)
        rng = np.random.default_rng(seed)
        observed = quantity.mean_danger_of(residual @ vectors[:1].T, families)[0]
        nulls = {
            kind: quantity.mean_danger_of(residual @ d.T, families)
            for kind, d in quantity.null_directions(vectors, 200, rng).items()
        }
        p = [stats.two_sided_p(observed, nulls[kind]) for kind in ("subspace", "random")]
        significant.append(max(p) < 0.05)
        rising = [f for f in families if f.stakes == "rise"]
        rows = np.concatenate(
            [np.arange(8) + 8 * i for i, f in enumerate(families) if f.stakes == "rise"]
        )
        alone = quantity.mean_danger_of(residual[rows] @ vectors[:1].T, rising)[0]
        assert alone > 0.8  # rising families alone cannot tell the two readings apart
    assert np.mean(significant) == (0.0 if reading == "drift" else 1.0)


GOOD_LINE = {
    "family": "dose",
    "template": "I took {q} pills.",
    "quantities": [1, 2, 4],
    "stakes": "rise",
}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"template": "I took pills."}, "exactly one {q}"),
        ({"quantities": [1, 2]}, "at least 3"),
        ({"quantities": [1, "2", 3]}, "positive numbers"),
        ({"quantities": [1, 3, 2]}, "strictly ascending"),
        ({"stakes": "sideways"}, "`stakes`"),
        ({"family": ""}, "`family`"),
    ],
)
def test_a_malformed_family_names_its_line(tmp_path, change, fragment):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(GOOD_LINE) + "\n\n" + json.dumps({**GOOD_LINE, **change}) + "\n")
    with pytest.raises(SaefeaturesError, match="line 3") as error:
        quantity.read_families(path)
    assert fragment in str(error.value)


# -- a planted trend on a tiny chat model -----------------------------------------------------

FAMILIES = [
    {
        "family": "rising",
        "template": "My dog ate {q} grapes.",
        "stakes": "rise",
        "quantities": [1, 2, 3, 5, 8, 13, 21, 34],
    },
    {
        "family": "falling",
        "template": "There are {q} hours left to fix the boat.",
        "stakes": "fall",
        "quantities": [1, 2, 4, 8, 16, 32, 64, 128],
    },
]


def _final_residuals(model: models.LoadedModel, texts: list[str]) -> np.ndarray:
    """Each prompt alone (no padding), its last token's residual at LAYER."""
    rows = []
    for text in texts:
        batch = model.encode([model.format_prompt(text)], chat_formatted=True)
        rows.append(activations.harvest(model, batch, [LAYER])[LAYER][0, -1].float().numpy())
    return np.stack(rows)


def _planted_direction(model: models.LoadedModel) -> np.ndarray:
    """A direction on which every family's prompts project to their quantity's rank."""
    families = [quantity._family_of_line("test", json.dumps(f)) for f in FAMILIES]
    residuals = _final_residuals(model, [p for f in families for p in f.prompts()])
    targets = np.concatenate([np.arange(len(f.quantities), dtype=float) for f in families])
    return np.linalg.lstsq(residuals, targets, rcond=None)[0].astype(np.float32)


def _store_vectors(db: Path, model_name: str, direction: np.ndarray) -> None:
    """`afraid` along the planted direction and `calm` against it, as `vectors` stores them."""
    planted = np.stack([direction, -direction])[:, None].repeat(2, axis=1)  # layers 1 and 2
    with Store(db) as store, store.run("seed", {}) as run_id:
        common = {
            "run_id": run_id,
            "model": model_name,
            "corpus": "templates",
            "hook": "resid_post",
            "token_offset": 10,
            "method": "denoised",
        }
        counts = {"afraid": 12, "calm": 12}
        table = extraction.vector_rows(
            planted, ["afraid", "calm"], [1, LAYER], counts, common, [0, 0]
        )
        store.insert("emotion_vectors", table)


@pytest.fixture(scope="module")
def tested(tmp_path_factory, tiny_chat_dir) -> dict[str, object]:
    root = tmp_path_factory.mktemp("quantity")
    db = root / "w.duckdb"
    env = {"SAEFEATURES_DB": str(db), "SAEFEATURES_OUT": str(root / "out")}
    model = ("--model", str(tiny_chat_dir))
    loaded = models.load(str(tiny_chat_dir))
    direction = _planted_direction(loaded)
    _store_vectors(db, loaded.name, direction)
    prompts = root / "families.jsonl"
    prompts.write_text("\n".join(json.dumps(f) for f in FAMILIES) + "\n")
    sae = _planted_sae(root / "sae", direction)
    assert run_cli_here("load", "--path", str(sae), *model, env=env).code == 0
    align = ("align", "--layer", str(LAYER), *model, "--corpus", "templates", "--sample-rows", "0")
    align = (*align, "--k-max", "2")
    aligned = run_cli_here(*align, "--null-directions", "100", "--top", "5", env=env)
    assert aligned.code == 0, aligned.stderr
    args = (
        "validate",
        "quantity",
        *model,
        "--prompts",
        str(prompts),
        "--emotions",
        "afraid,calm",
        "--corpus",
        "templates",
        "--layers",
        str(LAYER),
        "--dtype",
        "float32",  # a planted trend is recovered exactly in float32 arithmetic only
    )
    result = run_cli_here(
        *args, "--top", "1", "--permutations", "300", "--batch-size", "5", env=env
    )
    assert result.code == 0, result.stderr
    return {
        "env": env,
        "db": db,
        "args": args,
        "stdout": result.stdout,
        "name": loaded.name,
        "dir": str(tiny_chat_dir),
        "prompts": prompts,
    }


def _rows(db: Path, sql: str) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.query(sql).to_pylist()


def test_the_planted_trend_is_recovered_at_both_levels(tested):
    rows = _rows(
        tested["db"],
        "SELECT level, family, emotion, spearman_rho, danger_rho, p_value "
        "FROM quantity_results ORDER BY level, family, emotion",
    )
    assert [(r["level"], r["family"], r["emotion"]) for r in rows] == [
        (level, family, emotion)
        for level in ("direction", "features")
        for family in ("falling", "rising")
        for emotion in ("afraid", "calm")
    ]
    for row in rows:
        sign = 1 if row["emotion"] == "afraid" else -1
        stakes = 1 if row["family"] == "rising" else -1
        assert row["spearman_rho"] == pytest.approx(sign), row
        assert row["danger_rho"] == pytest.approx(sign * stakes), row
        assert row["p_value"] < 0.02
    summary = _rows(
        tested["db"],
        "SELECT level, emotion, families, families_rising, "
        "mean_danger_rho FROM quantity_summary ORDER BY level, emotion",
    )
    assert all(
        s["mean_danger_rho"] == pytest.approx(0.0) and s["families_rising"] == 1 for s in summary
    )
    used = _rows(
        tested["db"],
        "SELECT DISTINCT feature FROM alignments WHERE rank = 1 AND method = 'decoder_cosine'",
    )
    assert used == [{"feature": PLANTED}]


def test_scores_and_comparisons_are_stored(tested):
    scores = _rows(
        tested["db"],
        "SELECT level, count(*) AS n FROM quantity_scores GROUP BY level ORDER BY level",
    )
    assert scores == [{"level": "direction", "n": 2 * 16}, {"level": "features", "n": 2 * 16}]
    compared = _rows(
        tested["db"],
        "SELECT metric, direction_value, feature_value FROM "
        "comparisons WHERE kind = 'validation-quantity' ORDER BY metric",
    )
    assert [c["metric"] for c in compared] == ["mean_danger_rho:afraid", "mean_danger_rho:calm"]
    assert "families rising" in tested["stdout"]


def test_one_level_writes_only_its_rows_and_clears_the_comparisons(tested, tmp_path):
    db = Path(shutil.copy(tested["db"], tmp_path / "copy.duckdb"))
    options = QuantityOptions(
        model=tested["dir"],
        prompts=tested["prompts"],
        emotions=("afraid", "calm"),
        layers=(LAYER,),
        level="features",
        corpus="templates",
        top_k=1,
        permutations=20,
    )
    with Store(db) as store:
        quantity.run_test(store, options)
    for table in ("quantity_scores", "quantity_results", "quantity_summary"):
        assert _rows(db, f"SELECT DISTINCT level FROM {table}") == [{"level": "features"}]
    assert _rows(db, "SELECT * FROM comparisons WHERE kind = 'validation-quantity'") == []


def test_batching_reads_the_same_final_token_as_a_lone_prompt(tiny_chat_dir):
    model = models.load(str(tiny_chat_dir))
    texts = ["Short.", "A much longer prompt than the first one is."]
    alone = _final_residuals(model, texts)
    formatted = [model.format_prompt(t) for t in texts]
    batched = readouts.read_out(
        model,
        formatted,
        [LAYER],
        [],
        readouts.final_token_weights,
        batch_size=2,
        chat_formatted=True,
    )
    assert batched.residual[:, 0] == pytest.approx(alone, abs=1e-4)


def test_bad_quantity_input_is_one_line_and_changes_nothing(tested, tmp_path):
    env, db, args = tested["env"], tested["db"], tested["args"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(FAMILIES[0]) + "\n{not json\n")
    assert_refused(
        db,
        env,
        args,
        [
            (("--emotions", "afraid,glee"), ("unknown emotion", "glee")),
            (("--emotions", "afraid,sad"), ("no denoised vectors for sad", "saefeatures vectors")),
            (("--layers", "3"), ("no denoised vectors", "saefeatures vectors")),
            (("--layers", "1"), ("no SAE", "saefeatures train", "saefeatures load")),
            (("--prompts", str(broken)), ("line 2", "not valid JSON")),
            (("--prompts", str(tmp_path / "none.jsonl")), ("does not exist",)),
            (("--permutations", "0"), ("at least 1",)),
        ],
    )


def test_the_report_shows_both_levels(tested):
    with Store(tested["db"], read_only=True) as store:
        section = report_readouts.quantity(store)
    html = "".join(section.blocks)
    assert sum(block.startswith('<div class="figure">') for block in section.blocks) == 1
    assert "Both levels at the headline layer" in html and "rising" in html
    assert f"{Path(tested['name']).name}: mean danger rho over families" in html  # not a tuple
