"""Interventions (direction and SAE features) and the steering stage on tiny models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from saefeatures import activations, interventions, models, steering
from saefeatures.sae import loading
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli
from tests.tiny import save_sae

LAYER = 2
HOOK = f"blocks.{LAYER}.hook_resid_post"


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir) -> models.LoadedModel:
    return models.load(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def sae(tmp_path_factory):
    folder = save_sae(tmp_path_factory.mktemp("sae") / "sae", HOOK, 64, d_sae=48, k=6)
    return loading.read_saelens(folder, "cpu")


def _logits(model, ids, edits=()) -> torch.Tensor:
    with interventions.applied(model, list(edits)), torch.no_grad():
        return model.bridge(ids).float()


IDS = torch.tensor([[5, 60, 61, 62, 70, 71, 80, 81, 82, 83]])


@pytest.mark.parametrize("mode", ["add", "clamp", "ablate"])
def test_an_empty_feature_intervention_is_the_clean_model(tiny, sae, mode):
    empty = interventions.Intervention.at(LAYER, interventions.Features(sae, [], [], mode))
    clean = _logits(tiny, IDS)
    assert (_logits(tiny, IDS, [empty]) - clean).abs().max() <= 1e-5
    # Without the error term the SAE's reconstruction loss would change the output.
    x = torch.randn(2, 3, 64)
    assert (sae.decode(sae.encode(x)) - x).abs().max() > 1e-2


def test_adding_a_feature_adds_its_decoder_row(sae):
    x = torch.randn(2, 5, 64)
    edit = interventions.Features(sae, [3, 7], [1.5, -0.5], "add")
    expected = x + 1.5 * sae.W_dec[3] - 0.5 * sae.W_dec[7]
    torch.testing.assert_close(edit.edit(x), expected, atol=1e-5, rtol=0)


def test_clamp_sets_the_feature_activation(sae):
    x = torch.randn(1, 4, 64)
    edited = interventions.Features(sae, [5], [9.0], "clamp").edit(x)
    # The edited residual's own encoding may differ (TopK), but the reconstruction moved
    # by exactly (9 - old activation) x decoder row.
    old = sae.encode(x)[..., 5]
    torch.testing.assert_close(edited - x, (9.0 - old)[..., None] * sae.W_dec[5], atol=1e-4, rtol=0)


def test_ablating_a_feature_removes_its_decoder_row(sae):
    x = torch.randn(1, 4, 64)
    old = sae.encode(x)[..., 5]
    edited = interventions.Features(sae, [5], [0.0], "ablate").edit(x)
    torch.testing.assert_close(edited - x, -old[..., None] * sae.W_dec[5], atol=1e-4, rtol=0)


def test_direction_push_has_the_requested_length_on_chosen_rows():
    residual = torch.zeros(3, 6, 8)
    direction = interventions.Direction(torch.ones(8) * 3, scale=0.5, norm=4.0)
    middle = interventions.Intervention.at(1, direction, rows=slice(1, 2))
    pushed = middle.apply(residual)
    assert torch.allclose(pushed[1].norm(dim=-1), torch.full((6,), 2.0))
    assert pushed[0].abs().max() == 0 and pushed[2].abs().max() == 0


def test_a_patch_puts_values_at_its_positions_and_head():
    z = torch.zeros(2, 5, 3, 4)
    patch = interventions.Patch(torch.ones(2, 4), [1, 3], head=2)
    done = interventions.Intervention("blocks.0.attn.hook_z", patch).apply(z)
    assert done[:, [1, 3], 2].eq(1).all() and done.sum() == 2 * 2 * 4


def test_a_planted_direction_raises_its_word(tiny):
    """Pushing the last layer along a token's unembedding raises the word that ends in it."""
    prompt = tiny.format_prompt(steering.QUESTION, steering.ANSWER)
    batch = steering.word_batch(tiny, prompt, ["x", "q"])
    target = tiny.tokenizer(" x", add_special_tokens=False)["input_ids"][-1]
    unembed = tiny.hf_model.get_output_embeddings().weight[target].detach()
    base = steering.word_logprobs(tiny, batch)
    push = interventions.Intervention.at(3, interventions.Direction(unembed, 2.0, 10.0))
    with interventions.applied(tiny, [push]):
        delta = steering.word_logprobs(tiny, batch) - base
    assert delta[0] > 1.0 and delta[0] > delta[1] + 1.0


@pytest.mark.parametrize("steered", [False, True])
def test_word_logprobs_equal_a_direct_computation(tiny, steered):
    """Each word's row run whole, clean and under an edit, against the shared prompt."""
    prompt = tiny.format_prompt(steering.QUESTION, steering.ANSWER)
    batch = steering.word_batch(tiny, prompt, ["calm", "ok"])
    push = torch.randn(64, generator=torch.Generator().manual_seed(3))
    edits = [interventions.Intervention.at(LAYER, interventions.Direction(push, 2.0, 10.0))]
    edits = edits if steered else []
    for row, word in enumerate(["calm", "ok"]):
        ids = tiny.encode([prompt + " " + word])["input_ids"]
        logprobs = torch.log_softmax(_logits(tiny, ids, edits), dim=-1)[0]
        start = ids.shape[1] - len(
            tiny.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        )
        direct = sum(float(logprobs[p - 1, ids[0, p]]) for p in range(start, ids.shape[1]))
        with interventions.applied(tiny, edits):
            shared = steering.word_logprobs(tiny, batch)[row]
        assert shared == pytest.approx(direct, abs=1e-4)


def _greedy_alone(model, prompt, tokens, edit) -> list[int]:
    """One row, the whole sequence recomputed each step: what `generate` must equal."""
    ids = model.encode([prompt], chat_formatted=True)["input_ids"]
    start = ids.shape[1]
    steering_edits = [] if edit is None else [interventions.Intervention.at(LAYER, edit)]
    with interventions.applied(model, steering_edits), torch.no_grad():
        for _ in range(tokens):
            following = model.bridge(ids)[0, -1].argmax()
            if int(following) == model.tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, following.view(1, 1)], dim=1)
    return ids[0, start:].tolist()


def test_batched_generation_equals_each_row_alone(tiny, sae):
    prompt = tiny.format_prompt(steering.QUESTION, steering.ANSWER)
    push = torch.randn(64, generator=torch.Generator().manual_seed(1))
    edits = [
        None,
        interventions.Direction(push, 4.0, 10.0),
        interventions.Features(sae, [3, 7], [40.0, 25.0], "add"),
    ]
    batched = steering.generate(tiny, prompt, 12, LAYER, edits)
    alone = [_greedy_alone(tiny, prompt, 12, edit) for edit in edits]
    assert batched == alone
    assert alone[1] != alone[0] and alone[2] != alone[0]  # the edits change the text


def test_axis_projections_equal_each_generation_read_alone(tiny):
    prompt = tiny.format_prompt(steering.QUESTION, steering.ANSWER)
    generated = [[70, 71, 72], [], [80]]
    axis = torch.randn(64, generator=torch.Generator().manual_seed(2)).numpy()
    prompt_ids = tiny.encode([prompt], chat_formatted=True)["input_ids"]
    direct = []
    for tokens in generated:
        ids = torch.cat([prompt_ids, torch.tensor([tokens], dtype=torch.long)], dim=1)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        residual = activations.harvest(tiny, batch, [LAYER])[LAYER][0, prompt_ids.shape[1] :]
        direct.append(float(residual.mean(dim=0).numpy() @ axis) if tokens else 0.0)
    projected = steering.axis_projections(tiny, prompt, generated, LAYER, axis)
    assert projected == pytest.approx(direct, abs=1e-4)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_only_features_seen_firing_are_clamped(tmp_path, sae):
    """Clamping sets a feature to a multiple of its largest observed activation: a top
    aligned feature that never fired has none, so the clamp lever takes the next that did."""
    aligned = [3, 5, 7, 9]
    with Store(tmp_path / "w.duckdb") as store:
        store.insert(
            "alignments",
            {
                "run_id": ["r"] * 4,
                "model": ["m"] * 4,
                "sae_id": ["s"] * 4,
                "layer": [LAYER] * 4,
                "corpus": ["c"] * 4,
                "emotion": ["happy"] * 4,
                "method": ["decoder_cosine"] * 4,
                "feature": aligned,
                "score": [0.9, 0.8, 0.7, 0.6],
                "rank": [1, 2, 3, 4],
            },
        )
        fired = {5: 2.0, 9: 4.0, 11: 1.0, 12: 3.0}
        store.insert(
            "features",
            {
                "run_id": ["r"] * 5,
                "sae_id": ["s"] * 5,
                "feature": [*fired, 3],
                "max_activation": [*fired.values(), 0.0],
            },
        )
        row = {"sae_id": "s", "layer": LAYER}
        levers = steering.native_levers(store, row, "happy", "c", 1.0, sae, seed=0)
    clamps = {lever.k: lever for lever in levers if lever.level == "features clamp"}
    assert sorted(clamps) == [1, 2]  # k = 1, and k = 5 and 20 cut to the 2 that fired
    edit = clamps[1].make(2.0)
    assert (list(edit.features), list(edit.values)) == ([5], [4.0])
    randoms = [lever for lever in levers if lever.level == "random clamp"]
    assert all(set(lever.make(1.0).features) <= set(fired) for lever in randoms)


def test_steer_through_the_cli(tmp_path, tiny_llama_dir):
    env = {"SAEFEATURES_DB": str(tmp_path / "w.duckdb"), "SAEFEATURES_OUT": str(tmp_path / "o")}
    model = ("--model", str(tiny_llama_dir))
    emotions = ("--emotions", "happy,sad,calm")
    made = run_cli("vectors", *model, *emotions, "--layers", "1,2", "--offset", "10", env=env)
    assert made.code == 0, made.stderr
    args = (
        "steer",
        *model,
        *emotions,
        "--layer",
        "2",
        "--scales",
        "0.1,0.2",
        "--max-new-tokens",
        "3",
    )
    result = run_cli(*args, "--level", "direction", env=env)
    assert result.code == 0, result.stderr
    with Store(tmp_path / "w.duckdb", read_only=True) as store:
        counts = store.query(
            "SELECT metric, count(*) AS n FROM steering_results GROUP BY metric ORDER BY metric"
        ).to_pylist()
    assert counts == [
        {"metric": "delta_logprob", "n": 3 * 2 * 3},  # steering emotions x scales x words
        {"metric": "effective_scale", "n": 3 * 2},  # how far each push moved the residual
        {"metric": "generation_axis_valence", "n": 4},  # unsteered + 3 emotions
        {"metric": "generation_lexicon_valence", "n": 4},
    ]
    assert len(list((tmp_path / "o" / "steering").rglob("*.html"))) == 3
    before = _digest(tmp_path / "w.duckdb")
    assert_user_error(run_cli(*args, "--scales", "0.1,nan", env=env), "finite")
    assert_user_error(run_cli(*args, "--level", "features", env=env), "no SAE for", "train")
    assert_user_error(run_cli(*args, "--level", "sideways", env=env), "'sideways' is not one of")
    assert_user_error(run_cli(*args, "--layer", "7", env=env), "out of range")
    assert _digest(tmp_path / "w.duckdb") == before
