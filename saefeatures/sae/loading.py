"""Reading SAEs from disk (SAELens or EleutherAI sparsify format) or SAELens' pretrained registry.

Every SAE is read into a SAELens `SAE` object and checked against the model it
is registered for: its hook must be one of the model's hooks, and its input
width must equal the width of that hook's activations (measured on a
one-token forward, so any hook the bridge exposes can be checked).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saefeatures import models
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel

FORMATS = ("saelens", "sparsify")
SAELENS_FILES = ("cfg.json", "sae_weights.safetensors")
SPARSIFY_FILES = ("cfg.json", "sae.safetensors")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def _read_cfg(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((path / "cfg.json").read_text())
    except json.JSONDecodeError as error:
        raise SaefeaturesError(f"{path / 'cfg.json'} is not valid JSON ({error})") from None
    if not isinstance(cfg, dict):
        raise SaefeaturesError(f"{path / 'cfg.json'} must hold a JSON object")
    return cfg


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SaefeaturesError(
            f"cannot read SAE weights {path}: the file is corrupt or not safetensors "
            f"({_one_line(error)})"
        ) from None


def check_files(path: Path, fmt: str) -> None:
    if fmt not in FORMATS:
        raise SaefeaturesError(f"unknown SAE format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not path.is_dir():
        raise SaefeaturesError(f"SAE folder {path} does not exist")
    needed = SAELENS_FILES if fmt == "saelens" else SPARSIFY_FILES
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        other = "sparsify" if fmt == "saelens" else "saelens"
        raise SaefeaturesError(
            f"{path} is not a {fmt} SAE folder (missing {', '.join(missing)}); "
            f"for the other layout pass --format {other}"
        )


@dataclass(frozen=True)
class FolderInfo:
    d_in: int
    hook_name: str | None


def folder_info(path: Path, fmt: str) -> FolderInfo:
    """Input width and hook of an SAE folder from its cfg.json, and a readable weights file.

    Read without SAELens, so a folder that cannot fit is refused before anything heavy runs.
    """
    check_files(path, fmt)
    cfg = _read_cfg(path)
    weights = path / ("sae_weights.safetensors" if fmt == "saelens" else "sae.safetensors")
    _check_header(weights)
    try:
        d_in = int(cfg["d_in"])
    except (KeyError, TypeError, ValueError):
        raise SaefeaturesError(f"{path / 'cfg.json'} has no integer d_in") from None
    if fmt == "sparsify":
        return FolderInfo(d_in, None)
    hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    return FolderInfo(d_in, str(hook) if hook else None)


def _check_header(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            list(handle.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SaefeaturesError(
            f"cannot read SAE weights {path}: the file is corrupt or not safetensors "
            f"({_one_line(error)})"
        ) from None


def read_saelens(path: Path, device: str = "cpu") -> Any:
    """`sae_lens.SAE.load_from_disk`, with unreadable files turned into user errors."""
    check_files(path, "saelens")
    _read_cfg(path)
    _read_safetensors(path / "sae_weights.safetensors")  # a clear error for a corrupt file
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(path), device=models.concrete_device(device))
    except SaefeaturesError:
        raise
    except Exception as error:  # SAELens raises many types for one cause: an unusable folder
        detail = _one_line(error)
        raise SaefeaturesError(f"SAELens cannot load the SAE in {path}: {detail}") from None


def sparsify_layer(path: Path) -> int | None:
    """The layer of a sparsify folder named like `layers.10` or `model.layers_10`."""
    found = re.search(r"layers[._](\d+)$", path.name)
    return int(found.group(1)) if found else None


def read_sparsify(path: Path, device: str = "cpu") -> Any:
    """An EleutherAI sparsify TopK SAE as a SAELens `TopKSAE`.

    sparsify computes `top_k(relu(encoder(x - b_dec)))` and decodes with
    `latents @ W_dec + b_dec`, `encoder.weight` being `[d_sae, d_in]` and
    `W_dec` `[d_sae, d_in]`; that is SAELens' TopK SAE with `W_enc = encoder.weight.T`.
    """
    from sae_lens.saes import TopKSAE, TopKSAEConfig

    check_files(path, "sparsify")
    cfg = _read_cfg(path)
    unsupported = [
        key
        for key, bad in (("transcode", True), ("skip_connection", True), ("signed", True))
        if cfg.get(key) is bad
    ]
    if cfg.get("activation", "topk") != "topk":
        unsupported.append(f"activation={cfg['activation']}")
    if unsupported:
        raise SaefeaturesError(
            f"sparsify SAE {path} uses {', '.join(unsupported)}, which saefeatures does not "
            "read; only plain TopK sparse autoencoders are supported"
        )
    weights = _read_safetensors(path / "sae.safetensors")
    try:
        d_in = int(cfg["d_in"])
        k = int(cfg["k"])
        encoder = weights["encoder.weight"]
        state = {
            "W_enc": encoder.T.contiguous().float(),
            "b_enc": weights["encoder.bias"].float(),
            "W_dec": weights["W_dec"].float(),
            "b_dec": weights["b_dec"].float(),
        }
    except KeyError as error:
        raise SaefeaturesError(f"sparsify SAE {path} lacks {error}: not a sparsify SAE") from None
    d_sae = int(cfg.get("num_latents") or encoder.shape[0])
    if encoder.shape != (d_sae, d_in) or state["W_dec"].shape != (d_sae, d_in):
        raise SaefeaturesError(
            f"sparsify SAE {path}: weight shapes {tuple(encoder.shape)} do not match "
            f"d_in {d_in} and {d_sae} latents in cfg.json"
        )
    sae = TopKSAE(
        TopKSAEConfig(
            d_in=d_in,
            d_sae=d_sae,
            k=k,
            apply_b_dec_to_input=True,
            normalize_activations="none",
            device=models.concrete_device(device),
        )
    )
    sae.load_state_dict(state)
    return sae


def read_pretrained(release: str, sae_id: str, device: str = "cpu") -> Any:
    """SAELens' pretrained registry: `SAE.from_pretrained(release, sae_id)`.

    Online it downloads into the Hugging Face cache; with `HF_HUB_OFFLINE=1` it reads
    that cache alone (`HF_HOME`, `HF_HUB_CACHE`), as a machine without network does."""
    from huggingface_hub import constants
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from saefeatures.corpora.training_text import _hub_reachable

    directory = get_pretrained_saes_directory()
    if release not in directory and "/" not in release:
        close = [name for name in directory if release.lower() in name.lower()][:5]
        hint = f" (close: {', '.join(close)})" if close else ""
        raise SaefeaturesError(
            f"unknown SAELens release {release!r}{hint}; see the releases in SAELens' "
            "pretrained_saes.yaml"
        )
    if release in directory and sae_id not in directory[release].saes_map:
        valid = list(directory[release].saes_map)
        raise SaefeaturesError(
            f"release {release} has no SAE {sae_id!r}; it has e.g. {', '.join(valid[:4])}"
        )
    if not _hub_reachable():
        raise SaefeaturesError(
            f"cannot reach the Hugging Face hub to download {release}/{sae_id} (no network); "
            "set HF_HUB_OFFLINE=1 to read it from the Hugging Face cache, or pass its folder "
            "with --path"
        )
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        with _tensor_shapes_from_cache(offline):
            return SAE.from_pretrained(release, sae_id, device=models.concrete_device(device))
    except Exception as error:  # the hub raises many types for one cause
        if offline and isinstance(error, EntryNotFoundError | FileNotFoundError):
            raise SaefeaturesError(
                f"{release}/{sae_id} is not in the Hugging Face cache {constants.HF_HUB_CACHE}, "
                "and HF_HUB_OFFLINE=1 forbids downloading it; download it where the hub is "
                "reachable, or pass the SAE's folder with --path"
            ) from None
        raise SaefeaturesError(
            f"could not load {release}/{sae_id} from the hub: {_one_line(error)}"
        ) from None


@contextmanager
def _tensor_shapes_from_cache(offline: bool) -> Iterator[None]:
    """Offline, SAELens' loaders read tensor shapes from the cached safetensors file.

    For some releases (Gemma Scope 2) SAELens reads the shapes of the weights with HTTP
    range requests, which bypass the Hugging Face cache and fail without network; the
    header of the same file, once in the cache, says the same. Online nothing changes.
    """
    from sae_lens.loading import pretrained_sae_loaders as loaders

    original = getattr(loaders, "get_safetensors_tensor_shapes", None)
    if not offline or original is None:
        yield
        return
    loaders.get_safetensors_tensor_shapes = _cached_tensor_shapes
    try:
        yield
    finally:
        loaders.get_safetensors_tensor_shapes = original


def _cached_tensor_shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
    """Shapes of the tensors of a safetensors file of a hub repo, read from the cache."""
    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    path = hf_hub_download(repo_id, filename)
    with safe_open(path, framework="pt") as handle:
        return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118


# -- fitting an SAE to a model ---------------------------------------------------------


def layer_of(hook_name: str) -> int:
    found = re.match(r"blocks\.(\d+)\.", hook_name)
    if not found:
        raise SaefeaturesError(
            f"hook {hook_name} is not inside a transformer block; saefeatures registers "
            "SAEs on block hooks such as blocks.10.hook_resid_post"
        )
    return int(found.group(1))


@torch.no_grad()
def hook_width(model: LoadedModel, hook_name: str) -> int:
    """The width of the activations at a hook, from a one-token forward."""
    if hook_name not in model.bridge.hook_dict:
        raise SaefeaturesError(
            f"{model.name} has no hook {hook_name}; its hooks are listed by "
            f"`saefeatures models info {model.name}`"
        )
    seen: dict[str, torch.Tensor] = {}

    def capture(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        seen["act"] = activation
        return activation

    ids = torch.tensor([[model.tokenizer.eos_token_id or 0]], device=model.device)
    with model.hooks([(hook_name, capture)]):
        model.bridge(ids, attention_mask=torch.ones_like(ids))
    act = seen["act"]
    return int(act.shape[-1] if act.dim() == 3 else act[0, 0].numel())


def check_fit(model: LoadedModel, d_in: int, hook_name: str) -> int:
    """The layer of `hook_name`, after checking the hook exists and `d_in` fits it."""
    layer = layer_of(hook_name)
    model.check_layer(layer)
    width = hook_width(model, hook_name)
    if d_in != width:
        raise SaefeaturesError(
            f"the SAE's d_in is {d_in} but {model.name} has width {width} at {hook_name}; "
            "this SAE was trained on another model or hook"
        )
    return layer
