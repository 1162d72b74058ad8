"""A tiny chat model with SAEs at two consecutive residual layers, and one prepared pair."""

from __future__ import annotations

import pytest

from saefeatures import models
from saefeatures.circuits.graph import CircuitSae
from saefeatures.patching import reply_scores, sweeps
from saefeatures.sae import loading
from tests.tiny import CLEAN, CORRUPTED, save_sae

SAE_LAYERS = (1, 2)


@pytest.fixture(scope="module")
def tiny_chat(tiny_chat_dir) -> models.LoadedModel:
    return models.load(str(tiny_chat_dir), dtype="float32")


@pytest.fixture(scope="module")
def score(tiny_chat) -> reply_scores.Score:
    return reply_scores.anchor_score(tiny_chat)


@pytest.fixture(scope="module")
def circuit_saes(tiny_chat, tmp_path_factory) -> list[CircuitSae]:
    """Random standard (ReLU) SAEs of 48 latents at each of SAE_LAYERS, saved and read back
    by SAELens."""
    found = []
    for layer in SAE_LAYERS:
        hook = f"blocks.{layer}.hook_resid_post"
        folder = save_sae(
            tmp_path_factory.mktemp(f"sae{layer}") / "sae", hook, tiny_chat.d_model, 48, None
        )
        found.append(CircuitSae(layer, f"tiny-{layer}", hook, loading.read_saelens(folder, "cpu")))
    return found


def prompt_ids(model: models.LoadedModel, text: str) -> list[int]:
    return model.encode([reply_scores.prompt_text(model, text)], True)["input_ids"][0].tolist()


@pytest.fixture(scope="module")
def pair(tiny_chat) -> sweeps.PreparedPair:
    """Clean and corrupted prompts of equal length: every suffix position is patched."""
    return sweeps.prepare(tiny_chat, prompt_ids(tiny_chat, CLEAN), prompt_ids(tiny_chat, CORRUPTED))
