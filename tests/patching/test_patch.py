"""Activation patching: equality with TransformerLens and with hand-made patches, the scores,
the conclusions on hand-made numbers, and bad input through the real CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import transformer_lens.patching as tl_patching

from saefeatures import models
from saefeatures.errors import SaefeaturesError
from saefeatures.patching import attribution, conclusions, layerwise, patch, reply_scores, sweeps
from saefeatures.sae import loading
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli
from tests.tiny import BAD, CLEAN, CORRUPTED, GOOD, model_row, save_sae, write_pairs

# Equal length under the byte-level tiny tokenizer: every character is a token.


@pytest.fixture(scope="module")
def tiny_chat(tiny_chat_dir) -> models.LoadedModel:
    return models.load(str(tiny_chat_dir), dtype="float32")


@pytest.fixture(scope="module")
def tiny_llama(tiny_llama_dir) -> models.LoadedModel:
    return models.load(str(tiny_llama_dir), dtype="float32")


@pytest.fixture(scope="module")
def tiny_gemma(tiny_gemma_dir) -> models.LoadedModel:
    return models.load(str(tiny_gemma_dir), dtype="float32")


def _columns(score: reply_scores.Score, logits: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits cut to the score's columns, as `reduce` takes them."""
    return logits if score.tokens is None else logits[..., list(score.tokens)]


def _ids(model, text: str) -> list[int]:
    return model.encode([reply_scores.prompt_text(model, text)], True)["input_ids"][0].tolist()


def _prompts(model, pairs, score: reply_scores.Score) -> list[sweeps.Prompts]:
    """The pairs' prompts run for one score (the swept one), hook_z captured."""
    return sweeps.run_prompts(model, pairs, {score.name: score}, score.name, heads=True)


def _score(model) -> reply_scores.Score:
    """The anchor score where the model has one (chat), else two fixed tokens."""
    if model.is_chat:
        return reply_scores.anchor_score(model)
    return reply_scores.Score("anchors", ((),), (40, 41), (50,), "test tokens")


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gemma"])
def test_resid_sweep_equals_transformer_lens(name, request):
    model = request.getfixturevalue(name)
    score = _score(model)
    clean_ids, corrupted_ids = _ids(model, CLEAN), _ids(model, CORRUPTED)
    pair = sweeps.prepare(model, clean_ids, corrupted_ids)
    prompts = _prompts(model, [pair], score)
    clean_score, corrupted = prompts[0].values[score.name]
    ours = torch.full((model.n_layers, len(corrupted_ids)), corrupted)
    ours[:, pair.prefix_length :] = sweeps.resid_sweep(model, [pair], score, prompts, True)[0]
    # By default only where the prompts differ and at the last position: the same numbers.
    (default,) = sweeps.resid_sweep(model, [pair], score, prompts)
    chosen = sweeps.resid_positions(pair)
    differing = [
        i for i, (c, x) in enumerate(zip(pair.clean, pair.corrupted, strict=True)) if c != x
    ]
    assert [target for target, _ in chosen] == [*differing, len(pair.corrupted) - 1]
    torch.testing.assert_close(
        default, ours[:, [pair.prefix_length + target for target, _ in chosen]], atol=1e-5, rtol=0
    )

    _, cache = model.bridge.run_with_cache(torch.tensor([clean_ids]))
    theirs = tl_patching.get_act_patch_resid_pre(
        model.bridge,
        torch.tensor([corrupted_ids]),
        cache,
        lambda lg: score.reduce(_columns(score, lg[:, -1:]))[0],
    )
    gap = clean_score - corrupted
    assert abs(gap) > 1e-3  # a pair that differs, or the normalisation means nothing
    torch.testing.assert_close(
        (ours - corrupted) / gap, (theirs - corrupted) / gap, atol=1e-4, rtol=0
    )


def test_head_patch_equals_a_hand_made_one_head_patch(tiny_chat):
    model, score = tiny_chat, _score(tiny_chat)
    clean_ids, corrupted_ids = _ids(model, CLEAN), _ids(model, CORRUPTED)
    pair = sweeps.prepare(model, clean_ids, corrupted_ids)
    (swept,) = sweeps.head_sweep(model, [pair], score, _prompts(model, [pair], score))
    layer, head = 2, 3
    d_head = model.d_model // model.n_heads
    # By hand, with a plain PyTorch pre-hook on the output projection (no bridge hook):
    # the head's slice of its input, taken from the clean run.
    projection = model.hf_model.model.layers[layer].self_attn.o_proj
    columns = slice(head * d_head, (head + 1) * d_head)
    taken = {}

    def take(module, args):
        taken["clean"] = args[0].detach().clone()

    def put(module, args):
        patched = args[0].clone()
        patched[..., columns] = taken["clean"][..., columns]
        return (patched,)

    with torch.no_grad():
        handle = projection.register_forward_pre_hook(take)
        model.bridge(torch.tensor([clean_ids]))
        handle.remove()
        handle = projection.register_forward_pre_hook(put)
        logits = model.bridge(torch.tensor([corrupted_ids]))
        handle.remove()
    assert (
        abs(float(swept[layer, head]) - float(score.reduce(_columns(score, logits[:, -1:]))[0]))
        < 1e-4
    )
    assert swept.shape == (model.n_layers, model.n_heads)


def test_scores_match_a_direct_full_forward(tiny_chat):
    model = tiny_chat
    ids = _ids(model, CLEAN)
    pair = sweeps.prepare(model, ids, _ids(model, CORRUPTED))
    replies, anchors = reply_scores.replies_score(model), reply_scores.anchor_score(model)
    scores = {"replies": replies, "anchors": anchors}
    (prompts,) = sweeps.run_prompts(model, [pair], scores, "anchors", heads=False)
    with torch.no_grad():
        logprobs = [
            torch.log_softmax(model.bridge(torch.tensor([ids + list(reply)]))[0].float(), -1)
            for reply in replies.continuations
        ]
    total = [
        sum(float(lp[len(ids) - 1 + j, t]) for j, t in enumerate(reply))
        for lp, reply in zip(logprobs, replies.continuations, strict=True)
    ]
    expected = np.mean(total[:3]) - np.mean(total[3:])
    assert prompts.values["replies"][0] == pytest.approx(expected, abs=1e-4)
    # The anchor score reads raw logits at the prompt's end.
    with torch.no_grad():
        last = model.bridge(torch.tensor([ids]))[0, -1].float()
    expected = last[list(anchors.positive)].mean() - last[list(anchors.negative)].mean()
    assert prompts.values["anchors"][0] == pytest.approx(float(expected), abs=1e-4)
    assert prompts.values["anchors"][1] == pytest.approx(
        _direct_score(model, anchors, _ids(model, CORRUPTED)), abs=1e-4
    )


def test_anchors_are_first_tokens_of_capitalised_words_deduplicated(tiny_chat):
    score = reply_scores.anchor_score(tiny_chat, ("happy", "hooray"), ("okay",))
    assert [tiny_chat.tokenizer.decode([t]) for t in score.positive] == ["H"]
    with pytest.raises(SaefeaturesError, match="tokenizes to nothing"):
        reply_scores.anchor_score(tiny_chat, ("happy", " "), ("okay",))
    with pytest.raises(SaefeaturesError, match="must not share"):
        reply_scores.anchor_score(tiny_chat, ("happy",), ("hello",))


def test_unequal_lengths_fall_back_to_the_last_position(tiny_chat):
    score = _score(tiny_chat)
    pair = sweeps.prepare(tiny_chat, _ids(tiny_chat, CLEAN), _ids(tiny_chat, "Bad news."))
    assert not pair.aligned
    prompts = _prompts(tiny_chat, [pair], score)
    (grid,) = sweeps.resid_sweep(tiny_chat, [pair], score, prompts)
    assert grid.shape == (tiny_chat.n_layers, 1)
    # Layer 0 at the last position sees the same token in both prompts: nothing moves.
    corrupted = prompts[0].values[score.name][1]
    assert abs(float(grid[0, 0]) - corrupted) < 1e-5


# Three pairs of different suffix lengths, the last of unequal lengths (last position only).
BATCHED = [
    (CLEAN, CORRUPTED),
    ("Great news, my old friend!", "Awful news, my old friend!"),
    (CLEAN, "Bad news."),
]


def _direct_score(model, score: reply_scores.Score, ids: list[int], hooks=()) -> float:
    """The score of a prompt run whole through the bridge, once per continuation, with no
    cache and no batching, and `hooks` on every run."""
    kept = []
    for continuation in score.continuations:
        with torch.no_grad(), model.hooks(list(hooks)):
            logits = model.bridge(torch.tensor([ids + list(continuation)]))[0]
        rows = logits[len(ids) - 1 : len(ids) - 1 + score.keep]
        kept.append(torch.cat([rows, rows[-1:].expand(score.keep - len(rows), -1)]))
    return float(score.reduce(_columns(score, torch.stack(kept)))[0])


def _clean_activation(model, ids: list[int], name: str) -> torch.Tensor:
    """An activation of a whole clean run through the bridge, [positions, ...]."""
    taken = {}

    def take(activation, hook=None):
        taken["value"] = activation[0].detach().clone()
        return activation

    with torch.no_grad(), model.hooks([(name, take)]):
        model.bridge(torch.tensor([ids]))
    return taken["value"]


def _put(positions: list[int], values: torch.Tensor, head: int | None = None):
    def put(activation, hook=None):
        activation = activation.clone()
        if head is None:
            activation[0, positions] = values
        else:
            activation[0, positions, head] = values
        return activation

    return put


def _direct_resid(model, score, clean_ids, corrupted_ids, pair, layer, target, origin):
    """One residual patch by hand: clean resid_pre at `origin` into the corrupted prompt
    at `target` (suffix positions), in a whole run."""
    name = sweeps.resid_hook(layer)
    value = _clean_activation(model, clean_ids, name)[pair.prefix_length + origin]
    at = [pair.prefix_length + target]
    return _direct_score(model, score, corrupted_ids, [(name, _put(at, value))])


def _direct_head(model, score, clean_ids, corrupted_ids, pair, layer, head):
    """One head patch by hand: the head's clean hook_z at every patched position."""
    name = sweeps.z_hook(layer)
    positions = sweeps.patch_positions(pair)
    values = _clean_activation(model, clean_ids, name)[
        [pair.prefix_length + origin for _, origin in positions], head
    ]
    at = [pair.prefix_length + target for target, _ in positions]
    return _direct_score(model, score, corrupted_ids, [(name, _put(at, values, head))])


@pytest.mark.parametrize(
    ("name", "score_name"),
    [("tiny_llama", "fixed"), ("tiny_gemma", "fixed"), ("tiny_chat", "replies")],
)
def test_sweeps_of_pairs_of_different_lengths_batched_equal_patches_by_hand(
    name, score_name, request, monkeypatch
):
    """Pairs of different lengths in one batch (packed positions, rows joining at their
    layer, layer calls on chunks of rows, a sliding window in Gemma, reply continuations
    on their own branches) give the scores of patches made by hand in whole unbatched
    runs, and those of one pair alone."""
    monkeypatch.setattr(layerwise, "TOKENS_PER_CALL", 64)
    model = request.getfixturevalue(name)
    score = _score(model) if score_name == "fixed" else reply_scores.replies_score(model)
    ids = [(_ids(model, clean), _ids(model, corrupted)) for clean, corrupted in BATCHED]
    pairs = [sweeps.prepare(model, c, x) for c, x in ids]
    prompts = _prompts(model, pairs, score)
    assert [p.aligned for p in pairs] == [True, True, False]
    assert len({len(p.corrupted) for p in pairs}) == 3
    resid = sweeps.resid_sweep(model, pairs, score, prompts, every_position=True)
    heads = sweeps.head_sweep(model, pairs, score, prompts)
    for (clean_ids, corrupted_ids), pair, prompt, grid, by_head in zip(
        ids, pairs, prompts, resid, heads, strict=True
    ):
        clean_value, corrupted_value = prompt.values[score.name]
        assert clean_value == pytest.approx(_direct_score(model, score, clean_ids), abs=1e-4)
        assert corrupted_value == pytest.approx(
            _direct_score(model, score, corrupted_ids), abs=1e-4
        )
        positions = sweeps.patch_positions(pair)
        checked = sorted({0, 1, len(positions) - 1} & set(range(len(positions))))
        for layer in range(model.n_layers):
            for column in checked:
                target, origin = positions[column]
                expected = _direct_resid(
                    model, score, clean_ids, corrupted_ids, pair, layer, target, origin
                )
                assert float(grid[layer, column]) == pytest.approx(expected, abs=1e-4)
            for head in range(model.n_heads):
                expected = _direct_head(model, score, clean_ids, corrupted_ids, pair, layer, head)
                assert float(by_head[layer, head]) == pytest.approx(expected, abs=1e-4)
        (alone,) = sweeps.resid_sweep(model, [pair], score, [prompt], every_position=True)
        torch.testing.assert_close(alone, grid, atol=1e-4, rtol=0)
        (alone,) = sweeps.head_sweep(model, [pair], score, [prompt])
        torch.testing.assert_close(alone, by_head, atol=1e-4, rtol=0)


def test_packed_layouts_see_only_their_own_sequence_and_context():
    prompt = torch.arange(6)
    layout = layerwise.prompt_layout(prompt, [(7, 8, 9), (10, 11)], keep=4)
    # Branches: 7, 8 (its last token 9 is read by no output) and 10; each sees the prompt.
    assert layout.tokens.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 10]
    assert layout.positions.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 6]
    assert layout.sees[8].tolist() == [True] * 6 + [False, False, True]
    assert layout.kept.tolist() == [[5, 6, 7, 5], [5, 8, 5, 5]]
    packed = layerwise.pack([layerwise.cut(layout, 4), layerwise.cut(layout, 5)])
    assert packed.firsts.tolist() == [0, 5]
    assert packed.source.tolist() == [4, 5, 6, 7, 8, 5, 6, 7, 8]
    assert packed.context.tolist() == [4] * 5 + [5] * 4
    assert not packed.sees[:5, 5:].any() and not packed.sees[5:, :5].any()
    assert packed.kept.tolist() == [[1, 2, 3, 1], [1, 4, 1, 1], [5, 6, 7, 5], [5, 8, 5, 5]]


# -- the conclusions on hand-made numbers ------------------------------------------------


MODEL = "m"


def _stored(tmp_path, effects, gaps, selection=()) -> Store:
    """A store holding score rows and resid rows (one differing position per layer) for
    pairs `<situation>-<condition>`; `selection` names the situations that choose the layer."""
    scores, sweeps_ = [], []
    for pair_id, by_layer in effects.items():
        situation, condition = pair_id.rsplit("-", 1)
        common = {"run_id": "r", "model": MODEL, "pair_id": pair_id, "condition": condition}
        scores += [
            {
                **common,
                "situation": situation,
                "topic": None,
                "score_name": name,
                "score_definition": "d",
                "clean_score": gaps[pair_id],
                "corrupted_score": 0.0,
                "aligned": True,
                "prefix_length": 2,
                "clean_tokens": 9,
                "corrupted_tokens": 9,
                "selection": situation in selection,
            }
            for name in reply_scores.SCORES
        ]
        sweeps_ += [
            {
                **common,
                "level": "resid",
                "layer": layer,
                "position": 9,
                "head": None,
                "feature": None,
                "effect": e,
                "normalized": None,
                "differs": True,
                "extra": '{"score": "anchors", "aligned": true}',
            }
            for layer, e in enumerate(by_layer)
        ]
    store = Store(tmp_path / "w.duckdb")
    store.register_model("r", model_row(MODEL, 3))
    store.insert("pair_scores", pa.Table.from_pylist(scores))
    store.insert("patching_results", pa.Table.from_pylist(sweeps_))
    return store


def test_peaks_flips_and_correlation_on_a_hand_made_set(tmp_path):
    effects = {
        "a-good": [0.0, 2.0, 1.0],
        "a-bad": [0.0, -1.0, -0.5],  # flips at layer 1
        "b-good": [0.0, 0.5, 1.0],
        "b-bad": [0.0, 0.5, -1.0],  # bad pushes up at layer 1
        "c-good": [0.0, 3.0, 2.0],
        "c-bad": [0.0, -2.0, -4.0],  # flips
        "d-good": [1.0, 0.2, 0.1],
        "d-bad": [-1.0, -3.0, -2.0],  # flips
        "s-good": [0.0, 1.0, 0.0],  # the selection situation: chooses layer 1, not scored
        "s-bad": [0.0, 1.0, 0.0],
    }
    gaps = {
        "a-good": 1.0,
        "a-bad": -1.0,
        "b-good": 2.0,
        "b-bad": -2.0,
        "c-good": 2.5,
        "c-bad": -3.0,
        "d-good": 1.0,
        "d-bad": -4.0,
        "s-good": 1.0,
        "s-bad": -1.0,
    }
    with _stored(tmp_path, effects, gaps, selection={"s"}) as store:
        summary = patch.summarize(store, MODEL, n_layers=3, swept="anchors")
    assert summary["flips"]["layer"] == 1
    assert summary["flips"]["situations"] == {"a": True, "b": False, "c": True, "d": True}
    good = summary["peaks"]["good"]  # the effect towards the clean score, not divided by it
    assert good["layers"] == [1, 2, 1, 0, 1]
    assert good["depths"] == [0.5, 1.0, 0.5, 0.0, 0.5]
    assert good["effects"] == pytest.approx([2.0, 1.0, 3.0, 1.0, 1.0])
    bad = summary["peaks"]["bad"]
    assert bad["effects"] == pytest.approx([1.0, 1.0, 4.0, 3.0, 0.0])
    expected = np.corrcoef(bad["effects"], [1.0, 2.0, 3.0, 4.0, 1.0])[0, 1]
    assert bad["correlation"]["r"] == pytest.approx(expected)
    assert bad["correlation"]["ci_low"] <= bad["correlation"]["r"] <= bad["correlation"]["ci_high"]
    sep = summary["separation"]["anchors"]["clean"]
    assert sep["good"] == {"n": 5, "right": 5, "mean": pytest.approx(7.5 / 5)}
    # The reply set was chosen on the selection situations: its separation leaves them out.
    assert summary["separation"]["replies"]["clean"]["good"]["n"] == 4


def test_a_pair_without_a_gap_has_no_peak_and_leaves_the_correlation_defined(tmp_path):
    """A clean prompt that scores 0 gives no direction to move towards: that pair is left
    out of the peaks and the correlation (it once turned the whole correlation into n/a)."""
    effects = {
        "a-bad": [0.0, -1.0, -0.5],
        "b-bad": [0.0, -2.0, -1.0],
        "c-bad": [0.0, -1.0, -3.0],
        "d-bad": [0.0, 0.1, 0.2],
        "a-good": [0.0, 1.0, 0.5],
    }
    gaps = {"a-bad": -1.0, "b-bad": -4.0, "c-bad": -3.0, "d-bad": 0.0, "a-good": 1.0}
    with _stored(tmp_path, effects, gaps) as store:
        bad = patch.summarize(store, MODEL, n_layers=3, swept="anchors")["peaks"]["bad"]
    assert bad["n"] == 3 and bad["layers"] == [1, 1, 2]
    assert bad["effects"] == pytest.approx([1.0, 2.0, 3.0])
    expected = np.corrcoef([1.0, 2.0, 3.0], [1.0, 4.0, 3.0])[0, 1]
    assert bad["correlation"]["r"] == pytest.approx(expected)


def test_sign_summary_counts_the_right_sign_per_condition():
    summary = conclusions.sign_summary(["good", "good", "bad", "bad"], [1.0, -1.0, -2.0, 0.0])
    assert summary == {
        "good": {"n": 2, "right": 1, "mean": 0.0},
        "bad": {"n": 2, "right": 1, "mean": -1.0},
    }


# -- the stage through the CLI ------------------------------------------------------------


def test_patch_command_stores_scores_and_sweeps(tiny_chat_dir, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", [GOOD, BAD])
    db = tmp_path / "w.duckdb"
    args = [
        "patch",
        "--model",
        str(tiny_chat_dir),
        "--pairs",
        str(pairs),
        "--db",
        str(db),
        "--out",
        str(tmp_path / "out"),
        "--dtype",
        "float32",
    ]
    for _ in range(2):  # a rerun replaces the model's rows
        result = run_cli(*args)
        assert result.code == 0, result.stderr
    assert "separation" in result.stdout and "peak layer" in result.stdout
    with Store(db, read_only=True) as store:
        scores = store.query("SELECT score_name, count(*) AS n FROM pair_scores GROUP BY 1")
        counts = store.query("SELECT level, count(*) AS n FROM patching_results GROUP BY 1")
        differs = store.query(
            "SELECT count(*) FILTER (differs) AS yes, count(differs) AS known "
            "FROM patching_results WHERE level = 'resid'"
        ).to_pylist()[0]
        peaks = store.query("SELECT count(*) AS n FROM patching_peaks")["n"][0].as_py()
    assert dict(zip(*scores.to_pydict().values(), strict=True)) == {"anchors": 2, "replies": 2}
    # 4 layers x (positions after the shared prefix, one each) and 4 layers x 4 heads per pair.
    levels = dict(zip(*counts.to_pydict().values(), strict=True))
    assert levels["heads"] == 2 * 4 * 4 and levels["resid"] % 4 == 0
    # Every resid row says whether the prompts differ there; each pair has a peak among those.
    assert differs["known"] == levels["resid"] and 0 < differs["yes"] < levels["resid"]
    assert peaks == 2
    assert (tmp_path / "out" / "patching").is_dir()

    # By default the residual is patched where the prompts differ and at the last position;
    # `--positions all` adds every position in between, with the same effects where both are.
    default = _resid_effects(db)
    assert run_cli(*args, "--positions", "all").code == 0
    every = _resid_effects(db)
    for pair_id, effects in default.items():
        positions = {position for _, position in effects}
        last = max(p for _, p in every[pair_id])
        with Store(db, read_only=True) as store:
            differing = store.query(
                "SELECT DISTINCT position FROM patching_results WHERE pair_id = ? AND differs",
                [pair_id],
            )["position"].to_pylist()
        assert positions == {*differing, last}
        assert len({p for _, p in every[pair_id]}) > len(positions)
        for key, effect in effects.items():
            assert effect == pytest.approx(every[pair_id][key], abs=1e-5)


def _resid_effects(db: Path) -> dict[str, dict[tuple[int, int], float]]:
    """Each pair's residual effects by (layer, position)."""
    with Store(db, read_only=True) as store:
        rows = store.query(
            "SELECT pair_id, layer, position, effect FROM patching_results WHERE level = 'resid'"
        ).to_pylist()
    effects: dict[str, dict[tuple[int, int], float]] = {}
    for row in rows:
        effects.setdefault(row["pair_id"], {})[(row["layer"], row["position"])] = row["effect"]
    return effects


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("lines", "options", "fragments"),
    [
        ([GOOD, "{not json"], [], ["line 2", "not valid JSON"]),
        ([{**GOOD, "condition": "neutral"}], [], ["line 1", "good or bad"]),
        ([{k: v for k, v in GOOD.items() if k != "clean"}], [], ["line 1", "`clean`"]),
        ([GOOD], ["--level", "mlp"], ["'--level'", "'mlp' is not one of"]),
        ([GOOD], ["--score", "vibes"], ["'--score'", "'vibes' is not one of"]),
        ([GOOD], ["--positions", "some"], ["'--positions'", "'some' is not one of"]),
        ([GOOD], ["--limit", "0"], ["--limit must be at least 1"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_database_alone(
    tiny_chat_dir, tmp_path, lines, options, fragments
):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    before = _digest(db)
    pairs = write_pairs(tmp_path / "pairs.jsonl", lines)
    result = run_cli(
        "patch",
        "--model",
        str(tiny_chat_dir),
        "--pairs",
        str(pairs),
        "--db",
        str(db),
        "--out",
        str(tmp_path / "out"),
        *options,
    )
    assert_user_error(result, *fragments)
    assert _digest(db) == before


# -- feature level ------------------------------------------------------------------------

FEATURE_LAYER = 1


@pytest.fixture(scope="module")
def tiny_sae_dir(tiny_chat, tmp_path_factory) -> Path:
    hook = f"blocks.{FEATURE_LAYER}.hook_resid_post"
    folder = tmp_path_factory.mktemp("sae") / "sae"
    return save_sae(folder, hook, tiny_chat.d_model, d_sae=48, k=None)


def _hand_patched_score(model, pair, score, hook, targets, residual) -> tuple[float, torch.Tensor]:
    """Score and d score / d residual at `targets`, with a plain forward hook on the layer."""
    block = model.hf_model.model.layers[FEATURE_LAYER]
    leaf = residual.clone().requires_grad_(True)

    def put(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[:, targets] = leaf
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = block.register_forward_hook(put)
    try:
        with torch.enable_grad():
            value = sweeps.scored_forward(model, pair.prefix(model), pair.corrupted, score, 1, [])
            (grad,) = torch.autograd.grad(value.sum(), [leaf])
    finally:
        handle.remove()
    return float(value[0].detach()), grad


def test_feature_attribution_and_exact_patches_match_a_hand_made_computation(
    tiny_chat, tiny_sae_dir
):
    model, score = tiny_chat, _score(tiny_chat)
    sae = loading.read_saelens(tiny_sae_dir, "cpu")
    hook = f"blocks.{FEATURE_LAYER}.hook_resid_post"
    pair = sweeps.prepare(model, _ids(model, CLEAN), _ids(model, CORRUPTED))
    (prompts,) = _prompts(model, [pair], score)
    clean_score, corrupted_score = prompts.values[score.name]
    gap = clean_score - corrupted_score
    result = attribution.attribute(model, pair, score, sae, hook, corrupted_score, gap)

    # The residual after the layer is the next layer's resid_pre, captured by the clean run.
    targets = list(range(len(pair.corrupted)))
    x_clean = prompts.clean.resid_pre[FEATURE_LAYER + 1]
    with torch.no_grad():
        taken = {}

        def take(module, args, output) -> None:
            taken["x"] = (output[0] if isinstance(output, tuple) else output)[0]

        handle = model.hf_model.model.layers[FEATURE_LAYER].register_forward_hook(take)
        sweeps.scored_forward(model, pair.prefix(model), pair.corrupted, score, 1, [])
        handle.remove()
    x_corrupted = taken["x"][: len(targets)].clone()
    value, grad = _hand_patched_score(model, pair, score, hook, targets, x_corrupted)
    assert value == pytest.approx(corrupted_score, abs=1e-5)
    delta = sae.encode(x_clean) - sae.encode(x_corrupted)
    # Attribution: gradient at the residual times each feature's decoded difference.
    expected = torch.einsum("pd,pf,fd->f", grad, delta, sae.W_dec)
    torch.testing.assert_close(result.attribution, expected.detach(), atol=1e-4, rtol=1e-3)
    assert set(result.changed.tolist()) == set(torch.nonzero(delta.abs().sum(0)).flatten().tolist())
    # The whole layer patched at every position after the shared prefix is the clean run.
    assert result.layer_effect == pytest.approx(gap, abs=1e-4)
    # One feature patched alone: the decoder is linear, so it adds its row times its delta.
    for feature, effect in list(result.verified.items())[:3]:
        patched = x_corrupted + delta[:, feature, None] * sae.W_dec[feature]
        by_hand, _ = _hand_patched_score(model, pair, score, hook, targets, patched.detach())
        assert effect == pytest.approx(by_hand - corrupted_score, abs=1e-4)
    assert len(result.verified) == min(attribution.VERIFIED, len(result.changed))
    # Top-k features are ranked towards the clean run: the best one moves the score that way.
    (best,) = torch.argsort(result.attribution[result.changed] * np.sign(gap))[-1:]
    assert float(result.attribution[result.changed[best]]) * gap > 0


def test_feature_rows_normalise_by_the_gap_and_report_recovery():
    result = attribution.FeaturePatch(
        attribution=torch.tensor([0.0, 2.0, -1.0]),
        error_attribution=0.5,
        changed=torch.tensor([1, 2]),
        layer_effect=4.0,
        top_k_effects={1: 2.0, 5: 3.0},
        verified={1: 1.5},
        error_effect=0.25,
        random_k_effects={1: -1.0, 5: 5.0},
    )
    features, faithfulness = attribution.rows(result, {"pair_id": "p"}, gap=2.0)
    assert [(r["feature"], r["normalized_attribution"], r["exact_effect"]) for r in features] == [
        (1, 1.0, 1.5),
        (2, -0.5, None),
        (None, 0.25, 0.25),
    ]
    assert [(r["k"], r["recovered"]) for r in faithfulness] == [(1, 0.5), (5, 0.75)]
    # Recovery is clipped to [0, 1]: away from the clean run counts 0, overshooting counts 1.
    assert [r["random_recovered"] for r in faithfulness] == [0.0, 1.0]


def test_the_feature_table_prints_from_a_summary_read_back_from_json():
    """The job stores each stage's summary as JSON and prints it from there."""
    result = attribution.FeaturePatch(
        attribution=torch.tensor([0.0, 2.0, -1.0]),
        error_attribution=0.5,
        changed=torch.tensor([1, 2]),
        layer_effect=4.0,
        top_k_effects={k: 2.0 for k in attribution.TOP_KS},
        verified={1: 1.5},
        error_effect=0.25,
        random_k_effects={k: 1.0 for k in attribution.TOP_KS},
    )
    at = {"sae_id": "s", "layer": 1, "pair_id": "p", "condition": "good"}
    features, faithfulness = attribution.rows(result, at, gap=2.0)
    summary = {"separation": {}, "swept": "anchors"}
    summary["features"] = attribution.summarize(features, faithfulness)
    ((title, _, (row,)),) = patch.tables(json.loads(json.dumps(summary)))[1:]
    assert "layer 1 features" in title and row[2] == "0.50 (0.25)"


def test_patch_command_at_the_feature_level(tiny_chat_dir, tiny_sae_dir, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", [GOOD, BAD])
    db, out = tmp_path / "w.duckdb", tmp_path / "out"
    common = ["--model", str(tiny_chat_dir), "--db", str(db), "--out", str(out)]
    patch = ["patch", *common, "--pairs", str(pairs), "--dtype", "float32"]
    assert_user_error(run_cli(*patch, "--level", "features"), "no SAE", "saefeatures train")
    loaded = run_cli("load", *common, "--path", str(tiny_sae_dir))
    assert loaded.code == 0, loaded.stderr
    assert_user_error(run_cli(*patch, "--level", "features", "--layers", "0"), "no SAE")
    result = run_cli(*patch, "--level", "features")
    assert result.code == 0, result.stderr
    assert "recovered k=1" in result.stdout
    with Store(db, read_only=True) as store:
        nodes = store.query(
            "SELECT node, count(*) AS n, count(exact_effect) AS exact "
            "FROM feature_patching GROUP BY node ORDER BY node"
        ).to_pylist()
        ks = store.query("SELECT DISTINCT k FROM patching_faithfulness ORDER BY k")["k"]
        levels = store.query("SELECT count(*) AS n FROM patching_results")["n"]
    assert nodes[0] == {"node": "error", "n": 2, "exact": 2}
    assert nodes[1]["n"] > 0 and 0 < nodes[1]["exact"] <= 2 * attribution.VERIFIED
    assert ks.to_pylist() == list(attribution.TOP_KS)
    assert levels.to_pylist() == [0]  # the feature level alone leaves the sweeps alone
