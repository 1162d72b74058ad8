"""`validate preferences` on tiny models: Bradley-Terry, token spans and projections, the
position mask, steering a planted preference direction, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from saefeatures import activations, interventions, models, stats
from saefeatures.cli import render
from saefeatures.errors import SaefeaturesError
from saefeatures.options import PreferenceOptions
from saefeatures.report import choices as report_choices
from saefeatures.store.database import Store
from saefeatures.store.read import VectorSet
from saefeatures.validation import choices, preferences
from tests.conftest import assert_refused, run_cli_here

LAYER = 1


@pytest.fixture(scope="module")
def tiny_chat(tiny_chat_dir) -> models.LoadedModel:
    return models.load(str(tiny_chat_dir))


@pytest.fixture(scope="module")
def six() -> list[preferences.Activity]:
    return preferences.read_activities()[:6]


def _all_pairs(n: int) -> np.ndarray:
    return preferences.sample_pairs(n, n * n, seed=0)


# -- Bradley-Terry ---------------------------------------------------------------------


def test_bradley_terry_recovers_planted_strengths_and_bias():
    planted = np.array([1.5, -0.5, 0.0, 2.0, -1.0, -2.0, 0.7, -0.7])
    pairs = _all_pairs(len(planted))
    p_first = choices.sigmoid(0.4 + planted[pairs[:, 0]] - planted[pairs[:, 1]])
    strengths, bias = preferences.fit_bradley_terry(pairs[:, 0], pairs[:, 1], p_first, 8)
    np.testing.assert_allclose(strengths, planted - planted.mean(), atol=0.01)
    assert bias == pytest.approx(0.4, abs=0.01)


def test_bradley_terry_recovers_a_planted_ranking_from_noisy_choices():
    planted = np.linspace(-2, 2, 12)[np.random.default_rng(1).permutation(12)]
    pairs = preferences.sample_pairs(12, 120, seed=2)
    truth = choices.sigmoid(planted[pairs[:, 0]] - planted[pairs[:, 1]])
    won = (np.random.default_rng(3).uniform(size=len(pairs)) < truth).astype(float)
    elo = preferences.fitted_elo(pairs, won, 12)
    assert stats.spearman(elo, planted) > 0.9
    assert elo.mean() == pytest.approx(preferences.ELO_BASE)


def test_bradley_terry_matches_a_direct_maximisation():
    rng = np.random.default_rng(4)
    pairs = preferences.sample_pairs(5, 14, seed=4)
    p_first = rng.uniform(0.05, 0.95, len(pairs))

    def loss(w):  # the penalized negative log-likelihood, written out
        z = w[-1] + w[pairs[:, 0]] - w[pairs[:, 1]]
        log_p, log_q = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        return -np.sum(p_first * log_p + (1 - p_first) * log_q) + preferences.RIDGE / 2 * np.sum(
            w[:-1] ** 2
        )

    direct = minimize(loss, np.zeros(6), method="BFGS", options={"gtol": 1e-10}).x
    strengths, bias = preferences.fit_bradley_terry(pairs[:, 0], pairs[:, 1], p_first, 5)
    np.testing.assert_allclose(strengths, direct[:-1] - direct[:-1].mean(), atol=1e-5)
    assert bias == pytest.approx(direct[-1], abs=1e-5)


def test_elo_intervals_equal_a_direct_percentile_bootstrap():
    """Noisy choices, so resamples disagree; an activity in few pairs is missing from some
    resamples, and its interval is over the resamples that compare it."""
    planted = np.linspace(-1, 1, 8)
    pairs = preferences.sample_pairs(8, 14, seed=1)  # every activity in 2 to 7 pairs
    truth = choices.sigmoid(planted[pairs[:, 0]] - planted[pairs[:, 1]])
    noise = np.random.default_rng(2).normal(0, 0.25, len(pairs))
    p_first = np.clip(truth + noise, 0.02, 0.98)
    activities = [preferences.Activity(f"a{i}", "c") for i in range(8)]
    strengths, _ = preferences.fit_bradley_terry(pairs[:, 0], pairs[:, 1], p_first, 8)
    options = PreferenceOptions(resamples=200, seed=3)
    rows = preferences._score_rows(activities, pairs, p_first, strengths, options)
    rng = np.random.default_rng(3)  # the resamples, drawn as the code draws them
    found: list[list[float]] = [[] for _ in activities]
    for _ in range(200):
        index = rng.integers(0, len(pairs), len(pairs))
        fitted = preferences.fitted_elo(pairs[index], p_first[index], 8)
        for activity in set(pairs[index].ravel().tolist()):
            found[activity].append(fitted[activity])
    assert min(len(values) for values in found) < 190  # some resamples miss an activity
    for row, values in zip(rows, found, strict=True):
        assert row["elo"] == pytest.approx(preferences.elo(strengths[int(row["activity"][1:])]))
        assert row["ci_low"] == pytest.approx(np.percentile(values, 2.5))
        assert row["ci_high"] == pytest.approx(np.percentile(values, 97.5))
        assert row["ci_high"] - row["ci_low"] > 10  # Elo points: the noise shows
    assert [r["comparisons"] for r in rows] == np.bincount(pairs.ravel(), minlength=8).tolist()


def test_the_most_and_least_preferred_are_each_shown_once():
    assert render.ends(list(range(6)), 5) == list(range(6))
    assert render.ends(list(range(12)), 5) == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]


# -- inputs ----------------------------------------------------------------------------


def test_the_shipped_activities_and_pair_samples():
    activities = preferences.read_activities()
    assert len(activities) == 64 and len({a.category for a in activities}) == 8
    assert len(preferences.sample_pairs(56, 10_000, 0)) == 56 * 55
    sample = preferences.sample_pairs(56, 100, 7)
    assert len({tuple(p) for p in sample}) == 100 and np.all(sample[:, 0] != sample[:, 1])
    np.testing.assert_array_equal(sample, preferences.sample_pairs(56, 100, 7))


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (["activity,category", "read a book,restful", "nap,restful,extra"], "line 3"),
        (["activity,category", "read a book,restful", "read a book,restful"], "line 3"),
        (["name,kind", "read a book,restful"], "first line"),
        (["activity,category", "a,b", "", "c,"], "line 4"),
    ],
)
def test_a_malformed_activities_line_names_its_number(tmp_path, lines, fragment):
    path = tmp_path / "a.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SaefeaturesError, match=fragment):
        preferences.read_activities(path)


def test_pair_prompt_spans_are_the_activities_tokens(tiny_chat, six):
    row = preferences.pair_prompt(tiny_chat, six[0].name, six[1].name)
    decode = lambda span: tiny_chat.tokenizer.decode([row.ids[i] for i in span])  # noqa: E731
    assert [decode(span) for span in row.spans] == [six[0].name, six[1].name]
    assert tiny_chat.tokenizer.decode(row.ids).endswith("?\nassistant: (")


def test_projections_equal_a_direct_computation(tiny_chat, six):
    """Each activity's mean residual over its tokens and prompts, on each vector, computed
    here prompt by prompt with `activations.harvest`."""
    three = six[:3]
    pairs = _all_pairs(3)
    rows = [preferences.pair_prompt(tiny_chat, three[i].name, three[j].name) for i, j in pairs]
    means = preferences.ActivityMeans(rows, pairs, 3, [0, 2])
    choices.letter_logits(tiny_chat, rows, 4, capture=[0, 2], read=means.read)
    vectors = np.random.default_rng(0).normal(size=(2, 2, 64)).astype(np.float32)
    found = preferences.projections(means.means(), VectorSet(["calm", "sad"], [0, 2], vectors))
    direct = np.zeros((3, 2, 64))
    for row, (i, j) in zip(rows, pairs, strict=True):
        batch = {
            "input_ids": torch.tensor([row.ids]),
            "attention_mask": torch.ones(1, len(row.ids)),
        }
        harvested = activations.harvest(tiny_chat, batch, [0, 2])
        for side, activity in ((0, i), (1, j)):
            for li, layer in enumerate((0, 2)):
                direct[activity, li] += harvested[layer][0, row.spans[side]].mean(0).numpy() / 4
    np.testing.assert_allclose(found, np.einsum("ald,eld->ale", direct, vectors), atol=1e-4)


# -- steering on chosen tokens ---------------------------------------------------------


def test_a_token_mask_edits_only_the_chosen_tokens():
    residual = torch.zeros(2, 5, 8)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)
    direction = interventions.Direction(torch.ones(8), scale=0.5, norm=4.0)
    pushed = interventions.Intervention.at(1, direction, token_mask=mask).apply(residual)
    np.testing.assert_allclose(pushed.norm(dim=-1).numpy(), 2.0 * mask.numpy(), atol=1e-6)


def _planted_direction(model, rows, pairs, steered, target) -> torch.Tensor:
    """The gradient of the target's summed advantage (its letter's logit minus the other's)
    with respect to one vector added on its tokens: a direction that, to first order,
    makes the model prefer the target."""
    delta = torch.zeros(model.d_model, requires_grad=True)
    batch = choices.pad(model, [rows[i] for i in steered.prompt_of_row])
    mask = choices.positions_mask(steered.positions, batch.ids.shape[1])
    hook = lambda residual, hook=None: residual + mask[..., None] * delta  # noqa: E731
    with model.bridge.hooks(fwd_hooks=[(activations.hook_name(LAYER), hook)]):
        logits = model.bridge(batch.ids, attention_mask=batch.mask)
    a, b = choices.letter_ids(model)
    final = logits[torch.arange(len(batch.ids)), batch.last]
    first = torch.tensor(pairs[steered.prompt_of_row, 0] == target)
    (torch.where(first, 1.0, -1.0) * (final[:, a] - final[:, b])).sum().backward()
    return delta.grad.detach()


def test_steering_a_planted_preference_direction_moves_elo_in_its_sign(tiny_chat, six):
    pairs = _all_pairs(6)
    rows = [preferences.pair_prompt(tiny_chat, six[i].name, six[j].name) for i, j in pairs]
    p_base = choices.first_probability(choices.letter_logits(tiny_chat, rows, 8))
    steered = preferences.steered_rows(rows, pairs, [2])
    assert len(steered.prompt_of_row) == 10  # 5 other activities x 2 orders
    planted = _planted_direction(tiny_chat, rows, pairs, steered, 2)
    norm = interventions.mean_residual_norm(tiny_chat, ["A short neutral line of text."], [LAYER])[
        LAYER
    ]
    shifts = {}
    for sign in (1, -1):
        edit = interventions.Direction(sign * planted, 0.05, norm)
        steering = preferences.steering_for(LAYER, edit, steered)
        logits = choices.letter_logits(
            tiny_chat, [rows[i] for i in steered.prompt_of_row], 4, steering
        )
        [(target, before, after)] = preferences.target_shifts(
            pairs,
            p_base,
            preferences.fitted_elo(pairs, p_base, 6),
            steered,
            choices.first_probability(logits),
        )
        assert target == 2
        shifts[sign] = after - before
    assert shifts[1] > 0 > shifts[-1], shifts


def test_effect_rows_correlate_mean_shifts_with_the_preference_correlation():
    r_at_layer = {"happy": 0.6, "calm": 0.2, "sad": -0.5}
    correlations = [{"layer": 3, "emotion": e, "pearson_r": r} for e, r in r_at_layer.items()]
    correlations.append({"layer": 4, "emotion": "happy", "pearson_r": -1.0})  # another layer
    shifts = [
        {"level": "direction", "emotion": e, "k": None, "scale": 0.1, "shift": value}
        for e, values in {"happy": (9, 11), "calm": (1, 5), "sad": (-4, -2)}.items()
        for value in values
    ]
    rows = preferences.effect_rows(shifts, correlations, layer=3)
    by_metric = {row["metric"]: row for row in rows}
    assert by_metric["mean Elo shift (calm, scale 0.1)"]["direction_value"] == 3
    across = by_metric["Elo shift vs preference r across emotions (scale 0.1)"]
    assert across["direction_value"] == pytest.approx(
        stats.pearson(np.array([10, 3, -3]), np.array([0.6, 0.2, -0.5]))
    )
    assert across["feature_value"] is None  # no feature-level rows


# -- the command line ------------------------------------------------------------------


def test_preferences_through_the_cli(tmp_path, tiny_llama_dir, six):
    env = {"SAEFEATURES_DB": str(tmp_path / "w.duckdb"), "SAEFEATURES_OUT": str(tmp_path / "o")}
    model = ("--model", str(tiny_llama_dir))
    made = run_cli_here(
        "vectors",
        *model,
        "--emotions",
        "happy,calm,afraid,sad",
        "--layers",
        "1,2",
        "--offset",
        "10",
        env=env,
    )
    assert made.code == 0, made.stderr
    listed = tmp_path / "a.csv"
    listed.write_text("activity,category\n" + "".join(f"{a.name},{a.category}\n" for a in six))
    args = (
        "validate",
        "preferences",
        *model,
        "--layer",
        "2",
        "--scales",
        "0.1",
        "--emotions",
        "happy,calm,afraid,sad",
        "--activities",
        str(listed),
        "--comparisons",
        "30",
        "--steer-activities",
        "2",
        "--resamples",
        "50",
    )
    done = run_cli_here(*args, "--level", "direction", env=env)
    assert done.code == 0, done.stderr
    with Store(tmp_path / "w.duckdb", read_only=True) as store:
        count = lambda table: store.query(f"SELECT count(*) AS n FROM {table}")["n"][0].as_py()  # noqa: E731
        assert count("preference_scores") == 6
        assert count("preference_correlations") == 2 * 4  # layers x emotions with vectors
        assert count("preference_steering") == 4 * 2  # emotions x targets at one scale
        assert count("preference_comparisons") == 30 + 4 * 2 * 10
        assert count("comparisons") == 4 + 1  # mean shift per emotion, shift vs r
        section = report_choices.preferences(store)
    assert sum(block.startswith('<div class="figure">') for block in section.blocks) == 3
    [scores] = [block for block in section.blocks if "<th>activity</th><th>category</th>" in block]
    assert scores.count("<tr>") == 1 + 6  # the header, then each activity once
    malformed = tmp_path / "bad.csv"
    malformed.write_text("activity,category\nread a book,restful\nnap,restful,extra\n")
    assert_refused(
        tmp_path / "w.duckdb",
        env,
        args,
        [
            (("--emotions", "hungry"), ("unknown emotion",)),
            (("--emotions", "proud"), ("saefeatures vectors",)),
            (("--level", "features"), ("saefeatures train", "saefeatures load")),
            (("--activities", str(malformed)), ("line 3",)),
        ],
    )
