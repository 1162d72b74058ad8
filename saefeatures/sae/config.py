"""SAE training presets: `sae_configs/<model>.yaml`, validated by one pydantic schema.

A preset names the SAE (architecture, width, sparsity), the optimiser (lr and
schedule), the data (tokens, context size, batch sizes, held-out share) and
the harvest (dtype, hook site). Unknown keys and impossible values are refused
with a one-line `SaefeaturesError`; command-line options override file values
and go through the same validation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from saefeatures.config import project_data
from saefeatures.errors import SaefeaturesError

ARCHITECTURES = ("topk", "batchtopk", "standard", "jumprelu")
HOOK_SITES = ("resid_post", "resid_pre", "mlp_out", "attn_out")
DEFAULT_EXPANSION = 16
DEFAULT_K = 32  # topk/batchtopk when neither the file nor the command line sets k

# Fields that do not change the trained weights: they stay out of the SAE's identity.
_NOT_IDENTITY = {"layers", "eval_tokens", "eval_batch_size", "checkpoint_every_tokens"}


class SaeConfig(BaseModel):
    """One SAE training configuration (all layers of a run share it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    layers: list[int] | Literal["all"] | None = Field(
        None, description="default layers when the command names none"
    )
    hook: Literal["resid_post", "resid_pre", "mlp_out", "attn_out"] = "resid_post"
    architecture: Literal["topk", "batchtopk", "standard", "jumprelu"] = "topk"
    d_sae: int | None = Field(None, gt=0, description="dictionary size; or give expansion")
    expansion: int | None = Field(None, gt=0, description="d_sae = expansion * d_in")
    k: float | None = Field(None, gt=0, description="active latents (topk, batchtopk)")
    sparsity_coefficient: float | None = Field(
        None, ge=0, description="L1 (standard) or L0 (jumprelu) coefficient"
    )
    sparsity_warm_up_steps: int = Field(0, ge=0)
    aux_loss_coefficient: float = Field(1.0, ge=0, description="dead-latent AuxK loss (topk)")
    normalize_activations: Literal["none", "expected_average_only_in"] = "expected_average_only_in"
    b_dec_init: Literal["zeros", "mean"] = Field(
        "mean", description="start the decoder bias at the activations' mean (first buffer)"
    )
    autocast: bool = Field(False, description="SAELens' bfloat16 autocast of the SAE step")
    lr: float = Field(4e-4, gt=0)
    lr_schedule: Literal["constant", "cosineannealing", "cosineannealingwarmrestarts"] = "constant"
    lr_warm_up_steps: int = Field(0, ge=0)
    lr_decay_steps: int = Field(0, ge=0)
    lr_decay_fraction: float | None = Field(
        None, ge=0, lt=1, description="decay over this share of the steps (instead of steps)"
    )
    lr_end: float | None = Field(None, gt=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    training_tokens: int = Field(2_000_000, gt=0)
    epoch_tokens: int | None = Field(
        None,
        gt=0,
        description="train on the text's first N tokens, repeated as epochs; their activations "
        "are harvested once and kept in memory",
    )
    context_size: int = Field(128, ge=2)
    lm_batch_size: int = Field(16, gt=0, description="sequences per language-model forward")
    train_batch_size: int = Field(4096, gt=0, description="tokens per SAE step")
    buffer_batches: int = Field(16, gt=0, description="LM batches shuffled together")
    dead_feature_window: int = Field(100, gt=0, description="steps without firing = dead")
    exclude_special_tokens: bool = True
    holdout_fraction: float = Field(0.02, gt=0, lt=0.5)
    eval_tokens: int = Field(32_768, gt=0)
    eval_batch_size: int = Field(8, gt=0)
    checkpoint_every_tokens: int = Field(500_000, gt=0)
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    seed: int = 0
    dataset: str | None = None

    def epoch_rows(self, rows: Any) -> Any:
        """The token rows one epoch reads: all of them, or the first `epoch_tokens`' worth."""
        if self.epoch_tokens is None:
            return rows
        return rows[: -(-self.epoch_tokens // self.context_size)]

    @model_validator(mode="before")
    @classmethod
    def _default_k(cls, values: Any) -> Any:
        topk = isinstance(values, dict) and values.get("architecture", "topk") in (
            "topk",
            "batchtopk",
        )
        return {**values, "k": DEFAULT_K} if topk and values.get("k") is None else values

    @model_validator(mode="after")
    def _consistent(self) -> SaeConfig:
        if self.d_sae is not None and self.expansion is not None:
            raise ValueError("give d_sae or expansion, not both")
        if self.architecture in ("topk", "batchtopk"):
            if self.k is None:
                raise ValueError(f"architecture {self.architecture} needs k")
            if self.architecture == "topk" and self.k != int(self.k):
                raise ValueError(f"k must be a whole number for topk, got {self.k}")
            if self.sparsity_coefficient is not None:
                raise ValueError(
                    f"sparsity_coefficient is not used by {self.architecture} (k sets sparsity)"
                )
        else:
            if self.sparsity_coefficient is None:
                raise ValueError(f"architecture {self.architecture} needs sparsity_coefficient")
            if self.k is not None:
                raise ValueError(
                    f"k is not used by {self.architecture}; set sparsity_coefficient instead"
                )
        if self.d_sae is not None and self.k is not None and self.k > self.d_sae:
            raise ValueError(f"k ({self.k:g}) must be <= d_sae ({self.d_sae})")
        if self.training_tokens < self.train_batch_size:
            raise ValueError(
                f"training_tokens ({self.training_tokens}) is fewer than one training batch "
                f"(train_batch_size {self.train_batch_size})"
            )
        if self.buffer_tokens < self.train_batch_size:
            raise ValueError(
                f"one shuffle buffer (buffer_batches * lm_batch_size * context_size = "
                f"{self.buffer_tokens} tokens) is smaller than train_batch_size "
                f"({self.train_batch_size})"
            )
        if self.lr_decay_fraction is not None and self.lr_decay_steps:
            raise ValueError("give lr_decay_steps or lr_decay_fraction, not both")
        if self.decay_steps + self.lr_warm_up_steps > self.total_steps:
            raise ValueError(
                f"lr_warm_up_steps + lr_decay_steps exceed the {self.total_steps} training steps"
            )
        return self

    # -- derived values ---------------------------------------------------------

    @property
    def buffer_tokens(self) -> int:
        return self.buffer_batches * self.lm_batch_size * self.context_size

    @property
    def total_steps(self) -> int:
        return self.training_tokens // self.train_batch_size

    @property
    def decay_steps(self) -> int:
        if self.lr_decay_fraction is not None:
            return int(self.lr_decay_fraction * self.total_steps)
        return self.lr_decay_steps

    def width(self, d_in: int) -> int:
        """d_sae for an input width, checking k against it."""
        d_sae = self.d_sae or (self.expansion or DEFAULT_EXPANSION) * d_in
        if self.k is not None and self.k > d_sae:
            raise SaefeaturesError(
                f"k ({self.k:g}) must be <= d_sae ({d_sae} = expansion x d_in {d_in}); "
                "lower k or raise d_sae/expansion"
            )
        return d_sae

    def identity(self) -> dict[str, Any]:
        """The values that determine the trained weights (for ids, run folders, resume)."""
        return self.model_dump(exclude=_NOT_IDENTITY)

    def digest(self, *extra: Any) -> str:
        blob = json.dumps([self.identity(), *extra], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


# -- reading presets ----------------------------------------------------------------


def presets() -> list[str]:
    return sorted(path.stem for path in project_data("sae_configs").glob("*.yaml"))


def preset_path(config: str | Path | None, model_slug: str) -> Path | None:
    """A file path, a preset name, or (None) the model's own preset if one ships."""
    folder = project_data("sae_configs")
    if config is None:
        own = folder / f"{model_slug}.yaml"
        return own if own.is_file() else None
    path = Path(config).expanduser()
    if path.is_file():
        return path
    named = folder / f"{config}.yaml"
    if named.is_file():
        return named
    raise SaefeaturesError(
        f"SAE config {config} not found: pass a YAML file or one of the presets "
        f"{', '.join(presets())}"
    )


def _dataset_within(spec: str, config_file: Path) -> str:
    """A local dataset named inside a config file, resolved against the file's folder.

    It must lie in that folder or the working directory (symlinks followed), so that a
    config someone shares cannot make the job read other files of the machine; a path
    typed on the command line (`--dataset`) is the user's own choice and is not limited.
    """
    from saefeatures.corpora import training_text

    named = Path(spec).expanduser()
    resolved = (named if named.is_absolute() else config_file.parent / named).resolve()
    if spec == training_text.DEFAULT_DATASET or (
        not resolved.exists() and training_text.is_hub_name(spec)
    ):
        return spec
    roots = (config_file.parent.resolve(), Path.cwd().resolve())
    if not any(resolved.is_relative_to(root) for root in roots):
        raise SaefeaturesError(
            f"SAE config {config_file} names dataset {spec}, outside the config's folder and "
            "the working directory; move the data there or pass it with --dataset PATH"
        )
    return str(resolved)


def _one_line(error: ValidationError, source: str) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            known = ", ".join(SaeConfig.model_fields)
            parts.append(f"unknown key {where!r} (known keys: {known})")
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
    return f"invalid SAE config {source}: " + "; ".join(parts)


def build(values: dict[str, Any], source: str) -> SaeConfig:
    try:
        return SaeConfig(**values)
    except ValidationError as error:
        message = _one_line(error, source)
    # Raised outside the handler: pydantic's error (and its frames) is not kept alive.
    raise SaefeaturesError(message)


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings, values read as YAML scalars (so 1e-3, true, [4, 8] work)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise SaefeaturesError(f"cannot read --set {pair!r}: use KEY=VALUE, e.g. k=32")
        try:
            values[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def load(
    config: str | Path | None, model_slug: str, overrides: dict[str, Any] | None = None
) -> tuple[SaeConfig, str]:
    """The validated config and where it came from (a file, or the built-in defaults)."""
    path = preset_path(config, model_slug)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise SaefeaturesError(
                f"SAE config {path} is not UTF-8 text; save it as UTF-8"
            ) from None
        except yaml.YAMLError as error:
            first = " ".join(str(error).split())[:200]
            raise SaefeaturesError(f"SAE config {path} is not valid YAML: {first}") from None
        except RecursionError:
            raise SaefeaturesError(f"SAE config {path} is nested too deeply to read") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SaefeaturesError(f"SAE config {path} must be a mapping of keys to values")
        if loaded and not all(isinstance(key, str) for key in loaded):
            keys = ", ".join(repr(key) for key in loaded if not isinstance(key, str))
            raise SaefeaturesError(f"SAE config {path}: keys must be names, not {keys}")
        values = dict(loaded or {})
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    if path is not None and "dataset" not in overrides and isinstance(values.get("dataset"), str):
        values["dataset"] = _dataset_within(values["dataset"], path)
    if "architecture" in overrides:
        # Switching architecture on the command line drops the file's sparsity knob
        # of the other kind (k for topk/batchtopk, a coefficient for standard/jumprelu).
        knob = "k" if overrides["architecture"] in ("standard", "jumprelu") else None
        knob = knob or "sparsity_coefficient"
        if knob not in overrides:
            values.pop(knob, None)
    values.update(overrides)
    source = str(path) if path is not None else "(built-in defaults)"
    return build(values, source), source
