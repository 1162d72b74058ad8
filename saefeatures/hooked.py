"""Any model a user holds, hooked by saefeatures' hook names: a `LoadedModel`, a
TransformerLens bridge, or a plain `transformers` model, whose decoder layers' outputs are
the residual stream (`blocks.L.hook_resid_post`). `interventions.applied` then steers
each of them with the same edits, and the unit of a scale is measured the same way."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import transformers

from saefeatures import activations, models
from saefeatures.errors import SaefeaturesError
from saefeatures.interventions import real_token_norms

Hook = Callable[..., torch.Tensor]
Hooks = list[tuple[str, Hook]]
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


@dataclass(frozen=True)
class Hooked:
    """What steering needs of a model: hooks by name, a forward on token ids, its
    tokenizer, device and depth, and the name the store keeps its results under."""

    add_hooks: Callable[[Hooks], AbstractContextManager[None]]
    forward: Callable[[torch.Tensor], Any]
    tokenizer: Any
    device: str
    n_layers: int
    name: str

    def hooks(self, fwd_hooks: Hooks) -> AbstractContextManager[None]:
        return self.add_hooks(fwd_hooks)

    def check_layer(self, layer: int) -> int:
        return activations.select_layers([layer], self.n_layers, self.name)[0]


def hooked(model: Any, tokenizer: Any = None, name: str | None = None) -> Hooked:
    """`model` with its hooks; `name` (as `--model` takes it) overrides the store name
    found from the model (a plain model's is the folder or hub name it was loaded from)."""
    name = name and models.store_name(name)
    if isinstance(model, models.LoadedModel):
        return Hooked(
            model.hooks,
            model.bridge,
            tokenizer or model.tokenizer,
            model.device,
            model.n_layers,
            name or model.name,
        )
    # A bridge can only be one if TransformerLens is loaded: checking costs no import.
    bridges = sys.modules.get("transformer_lens.model_bridge")
    if bridges is not None and isinstance(model, bridges.TransformerBridge):
        name = name or _loaded_from(model.original_model)
        # Not the bridge's own tokenizer: it prepends a BOS token where the model's does
        # not, which would change the unit of scale.
        return Hooked(
            model.hooks,
            model,
            tokenizer or models.load_tokenizer(name),
            str(model.original_model.device),
            int(model.cfg.n_layers),
            name,
        )
    if isinstance(model, transformers.PreTrainedModel):
        layers = _decoder_layers(model)
        return Hooked(
            partial(_decoder_hooks, layers),
            model,
            tokenizer,
            str(model.device),
            len(layers),
            name or _loaded_from(model),
        )
    raise SaefeaturesError(
        f"cannot steer a {type(model).__name__}: pass a model from saefeatures.models.load, "
        "a TransformerLens TransformerBridge, or a transformers model"
    )


def _loaded_from(hf_model: Any) -> str:
    return models.store_name(str(hf_model.config.name_or_path))


def _decoder_layers(hf_model: Any) -> torch.nn.ModuleList:
    """The model's decoder layers: `layers` (Llama, Gemma, Qwen, ...) or `h` (GPT-2)."""
    for attribute in ("layers", "h"):
        found = getattr(hf_model.base_model, attribute, None)
        if isinstance(found, torch.nn.ModuleList):
            return found
    raise SaefeaturesError(
        f"cannot find the decoder layers of {type(hf_model).__name__}; load the model with "
        "saefeatures.models.load and steer that instead"
    )


@contextmanager
def _decoder_hooks(layers: torch.nn.ModuleList, fwd_hooks: Hooks) -> Iterator[None]:
    """Each hook edits the output of its layer's decoder block while the block runs."""
    handles = []
    try:
        for name, hook in fwd_hooks:
            layer = _resid_post_layer(name, len(layers))
            handles.append(layers[layer].register_forward_hook(partial(_on_output, hook)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _on_output(hook: Hook, module: Any, inputs: Any, output: Any) -> Any:
    """A block returns its hidden states, alone or first in a tuple (older architectures)."""
    if isinstance(output, tuple):
        return (hook(output[0]), *output[1:])
    return hook(output)


def _resid_post_layer(name: str, n_layers: int) -> int:
    found = _RESID_POST.match(name)
    if not found:
        raise SaefeaturesError(
            f"a transformers model is hooked at its layers' residual outputs "
            f"(blocks.L.hook_resid_post) only, not {name}; load it with "
            "saefeatures.models.load for every hook point"
        )
    return activations.select_layers([int(found.group(1))], n_layers, "this model")[0]


@torch.no_grad()
def mean_residual_norm(model: Hooked, texts: list[str], layer: int) -> float:
    """The layer's mean residual norm over real tokens but the first: the unit of a scale,
    as `interventions.mean_residual_norm` defines it, read text by text (a user's
    tokenizer may have no padding token)."""
    if model.tokenizer is None:
        raise SaefeaturesError(
            "measuring the unit of scale needs the model's tokenizer: pass tokenizer= "
            "(or norm= to give the unit yourself)"
        )
    norms = []

    def capture(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
        norms.append(real_token_norms(activation, torch.ones(activation.shape[:2])))
        return activation

    with model.hooks([(activations.hook_name(layer), capture)]):
        for text in texts:
            model.forward(model.tokenizer(text, return_tensors="pt")["input_ids"].to(model.device))
    return float(torch.cat(norms).mean())
