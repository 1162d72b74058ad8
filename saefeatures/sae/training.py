"""Training SAEs with SAELens' own trainer, one `SAETrainer` per layer, fed by our provider.

SAELens' `SAETrainer` does every training step (its SAE classes' losses, Adam,
the learning-rate and coefficient schedules, dead-latent tracking, activation
scaling). Like SAELens' `MultiSAETrainer` we drive the per-layer trainers
through their public seams (`step`, `maybe_reset_sparsity`, `save_checkpoint`,
`load_trainer_state`, `set_final_sae_metadata`), so that all layers train in
lockstep from one forward pass per batch. What this module adds is the
interruption and resume logic: a checkpoint is written every
`checkpoint_every_tokens` and on Ctrl-C, always at a step boundary, and the
step number alone tells the provider where the data stream resumes.
"""

from __future__ import annotations

import functools
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saefeatures import models
from saefeatures.progress import bar as progress_bar
from saefeatures.sae.config import SaeConfig
from saefeatures.sae.provider import ActivationSource, _seed

STATE_FILE = "state.json"
CURVE_POINTS = 50  # training-curve samples kept per SAE


def training_sae_config(cfg: SaeConfig, d_in: int, device: str) -> Any:
    """The SAELens training config of our architecture choice."""
    from sae_lens.saes import (
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAEConfig,
        StandardTrainingSAEConfig,
        TopKTrainingSAEConfig,
    )

    common = {
        "d_in": d_in,
        "d_sae": cfg.width(d_in),
        "dtype": "float32",
        "device": device,
        "normalize_activations": cfg.normalize_activations,
    }
    if cfg.architecture == "topk":
        return TopKTrainingSAEConfig(
            k=int(cfg.k or 0), aux_loss_coefficient=cfg.aux_loss_coefficient, **common
        )
    if cfg.architecture == "batchtopk":
        return BatchTopKTrainingSAEConfig(
            k=float(cfg.k or 0), aux_loss_coefficient=cfg.aux_loss_coefficient, **common
        )
    if cfg.architecture == "standard":
        return StandardTrainingSAEConfig(
            l1_coefficient=float(cfg.sparsity_coefficient or 0),
            l1_warm_up_steps=cfg.sparsity_warm_up_steps,
            **common,
        )
    return JumpReLUTrainingSAEConfig(
        l0_coefficient=float(cfg.sparsity_coefficient or 0),
        l0_warm_up_steps=cfg.sparsity_warm_up_steps,
        **common,
    )


def training_sae(sae_cfg: Any) -> Any:
    """SAELens' training SAE of the architecture; TopK with its step sparse in the latents
    (same values and gradients, about 2x faster on a CPU: see `sparse_topk`)."""
    from sae_lens.registry import get_sae_training_class

    from saefeatures.sae.sparse_topk import SparseTopKTrainingSAE

    if sae_cfg.architecture() == "topk":
        return SparseTopKTrainingSAE(sae_cfg)
    return get_sae_training_class(sae_cfg.architecture())[0](sae_cfg)


def bfloat16_step(dtype: str, device: str) -> bool:
    """Autocast the SAE step to bfloat16 only where the run computes in bfloat16 and the
    device does so natively: `--dtype float32` keeps the whole run in float32."""
    return models.concrete_dtype(dtype, device) == "bfloat16" and models.native_bfloat16(device)


def trainer_config(cfg: SaeConfig, device: str) -> Any:
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    return SAETrainerConfig(
        total_training_samples=cfg.total_steps * cfg.train_batch_size,
        train_batch_size_samples=cfg.train_batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr_end if cfg.lr_end is not None else cfg.lr / 10,
        lr_scheduler_name=cfg.lr_schedule,
        lr_warm_up_steps=cfg.lr_warm_up_steps,
        lr_decay_steps=cfg.decay_steps,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        device=device,
        autocast=cfg.autocast and bfloat16_step(cfg.dtype, device),
        dead_feature_window=cfg.dead_feature_window,
        n_checkpoints=0,
        checkpoint_path=None,
        logger=LoggingConfig(log_to_wandb=False),
    )


@dataclass
class LayerRun:
    layer: int
    hook_name: str
    sae: Any  # sae_lens TrainingSAE
    trainer: Any  # sae_lens SAETrainer
    curve: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainResult:
    layers: dict[int, LayerRun]
    steps: int
    resumed_from: int
    seconds: float
    lm_tokens: int
    lm_seconds: float


class _Interrupt:
    """First Ctrl-C: finish the step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _step_metrics(output: Any) -> dict[str, float]:
    with torch.no_grad():
        sae_in, sae_out = output.sae_in.float(), output.sae_out.float()
        residual = (sae_in - sae_out).pow(2).sum()
        total = (sae_in - sae_in.mean(0)).pow(2).sum()
        return {
            "loss": float(output.loss),
            "mse": float(output.losses["mse_loss"]),
            "l0": float(output.feature_acts.bool().float().sum(-1).to_dense().mean()),
            "explained_variance": float(1 - residual / total),
        }


class Coordinator:
    """Trains one SAE per layer in lockstep; checkpoints into `run_dir`."""

    def __init__(
        self,
        cfg: SaeConfig,
        source: ActivationSource,
        hooks: dict[int, str],
        d_in: int,
        run_dir: Path,
        device: str = "cpu",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        from sae_lens.training.sae_trainer import SAETrainer

        self.cfg = cfg
        self.source = source
        self.run_dir = run_dir
        self.checkpoint_dir = run_dir / "checkpoint"
        self.runs: dict[int, LayerRun] = {}
        trainer_cfg = trainer_config(cfg, device)
        for layer, hook_name in sorted(hooks.items()):
            sae_cfg = training_sae_config(cfg, d_in, device)
            torch.manual_seed(_seed("init", cfg.seed, layer))
            sae = training_sae(sae_cfg)
            for key, value in {**(metadata or {}), "hook_name": hook_name}.items():
                sae.cfg.metadata[key] = value
            trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(()))
            self.runs[layer] = LayerRun(layer, hook_name, sae, trainer)
        self.step = 0

    # -- checkpoints ------------------------------------------------------------------

    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / STATE_FILE).is_file()

    def restore(self) -> int:
        state = json.loads((self.checkpoint_dir / STATE_FILE).read_text())
        for layer, run in self.runs.items():
            folder = self.checkpoint_dir / f"L{layer}"
            run.trainer.load_trainer_state(folder)
            run.sae.load_weights_from_checkpoint(folder)
            run.curve = state["curves"][str(layer)]
        self.step = int(state["step"])
        return self.step

    def save_checkpoint(self) -> None:
        """Write the checkpoint beside the old one, then swap: never a half-written latest."""
        partial = self.run_dir / "checkpoint.partial"
        shutil.rmtree(partial, ignore_errors=True)
        for layer, run in self.runs.items():
            run.trainer.save_checkpoint(checkpoint_name=f"L{layer}", base_path=partial)
        state = {
            "step": self.step,
            "tokens": self.step * self.cfg.train_batch_size,
            "layers": sorted(self.runs),
            "curves": {str(layer): run.curve for layer, run in self.runs.items()},
        }
        (partial / STATE_FILE).write_text(json.dumps(state))
        old = self.run_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.checkpoint_dir.exists():
            self.checkpoint_dir.rename(old)
        partial.rename(self.checkpoint_dir)
        shutil.rmtree(old, ignore_errors=True)

    # -- training ---------------------------------------------------------------------

    def _prepare(self) -> None:
        """Before the first step: per-layer norm scaling (as SAELens' `fit` estimates it)
        and, with `b_dec_init: mean`, the decoder bias at the (scaled) activations' mean,
        both from the first buffer's batches."""
        if self.step > 0:
            return  # resumed: the checkpoint holds both
        needs = [
            run
            for run in self.runs.values()
            if run.sae.cfg.normalize_activations == "expected_average_only_in"
            and run.trainer.activation_scaler.scaling_factor is None
        ]
        if not needs and self.cfg.b_dec_init == "zeros":
            return
        from sae_lens.training import activation_scaler

        # The first buffer's batches only: training then starts on the same buffer, in memory.
        first = self.source.kept_count(0) // self.cfg.train_batch_size
        n = max(1, min(self.cfg.total_steps, first))
        stream = self.source.batches(0, self.cfg.train_batch_size)
        batches = [next(stream) for _ in range(n)]
        quiet = activation_scaler.tqdm
        activation_scaler.tqdm = functools.partial(quiet, disable=True)  # our bar is enough
        try:
            for run in needs:
                run.trainer.activation_scaler.estimate_scaling_factor(
                    d_in=run.sae.cfg.d_in,
                    data_provider=iter([b[run.layer] for b in batches]),
                    n_batches_for_norm_estimate=n,
                )
        finally:
            activation_scaler.tqdm = quiet
        if self.cfg.b_dec_init == "mean":
            for run in self.runs.values():
                mean = torch.cat([b[run.layer] for b in batches]).float().mean(dim=0)
                scale = run.trainer.activation_scaler.scaling_factor or 1.0
                with torch.no_grad():
                    run.sae.b_dec.data.copy_(mean.to(run.sae.b_dec.device) * scale)

    def train(
        self, progress: bool = True, on_step: Callable[[int], None] | None = None
    ) -> TrainResult:
        """Run to `total_steps` from the current step; returns with SAEs ready to save."""
        cfg = self.cfg
        total = cfg.total_steps
        resumed_from = self.step
        checkpoint_steps = max(1, cfg.checkpoint_every_tokens // cfg.train_batch_size)
        curve_every = max(1, total // CURVE_POINTS)
        started = time.perf_counter()
        lm_before = (self.source.lm_tokens, self.source.lm_seconds)
        self._prepare()
        stream = self.source.batches(self.step, cfg.train_batch_size)
        consistent = True
        shown = self._progress_bar(progress)
        try:
            with _Interrupt() as interrupt, shown as bar:
                while self.step < total:
                    batch = next(stream)
                    consistent = False
                    outputs = self._train_step(batch)
                    consistent = True
                    if self.step % curve_every == 0 or self.step == total or self.step == 1:
                        self._record_curve(outputs, bar)
                    bar.advance(cfg.train_batch_size)
                    if on_step is not None:
                        on_step(self.step)
                    if interrupt.requested:
                        raise KeyboardInterrupt
                    if self.step % checkpoint_steps == 0 and self.step < total:
                        self.save_checkpoint()
        except KeyboardInterrupt:
            self._checkpoint_on_interrupt(consistent and self.step > resumed_from)
            raise
        self._finalize()
        return TrainResult(
            self.runs,
            self.step,
            resumed_from,
            time.perf_counter() - started,
            self.source.lm_tokens - lm_before[0],
            self.source.lm_seconds - lm_before[1],
        )

    def _progress_bar(self, progress: bool) -> Any:
        """The bar over all training tokens, started at the current step's."""
        layers = sorted(self.runs)
        label = f"training SAE L{layers[0]}" if len(layers) == 1 else f"training {len(layers)} SAEs"
        return progress_bar(
            label,
            self.cfg.total_steps * self.cfg.train_batch_size,
            "tokens",
            start=self.step * self.cfg.train_batch_size,
            shown=progress,
        )

    def _train_step(self, batch: dict[int, torch.Tensor]) -> dict[int, Any]:
        """One training step of every layer's SAE on the same batch; their outputs by layer."""
        for run in self.runs.values():
            run.trainer.maybe_reset_sparsity()
        outputs = {layer: run.trainer.step(batch[layer]) for layer, run in self.runs.items()}
        for run in self.runs.values():
            run.trainer.n_training_steps += 1
        self.step += 1
        return outputs

    def _record_curve(self, outputs: dict[int, Any], bar: Any) -> None:
        """A training-curve point per layer, the first three shown on the bar."""
        layers = sorted(self.runs)
        for layer, run in self.runs.items():
            point = _step_metrics(outputs[layer])
            point["tokens"] = self.step * self.cfg.train_batch_size
            run.curve.append(point)
        latest = [self.runs[layer].curve[-1] for layer in layers[:3]]
        bar.note(
            " | ".join(
                f"L{layer} mse {p['mse']:.3g} l0 {p['l0']:.1f} ev {p['explained_variance']:.3f}"
                for layer, p in zip(layers, latest, strict=False)
            )
        )

    def _checkpoint_on_interrupt(self, save: bool) -> None:
        """On Ctrl-C: checkpoint a step boundary past the resumed one, and say how to resume."""
        if save:
            self.save_checkpoint()
        if self.has_checkpoint():
            done = json.loads((self.checkpoint_dir / STATE_FILE).read_text())["tokens"]
            print(
                f"checkpoint at {done:,} tokens in {self.checkpoint_dir}: rerun the same "
                "command to resume, or add --restart to start clean",
                file=sys.stderr,
            )

    def _finalize(self) -> None:
        """Fold each activation scaling into its SAE and set SAELens' final metadata."""
        for run in self.runs.values():
            scaler = run.trainer.activation_scaler
            if scaler.scaling_factor is not None:
                run.sae.fold_activation_norm_scaling_factor(scaler.scaling_factor)
                scaler.scaling_factor = None
            run.trainer.set_final_sae_metadata()


def save_final(run: LayerRun, folder: Path, extra: dict[str, Any]) -> Path:
    """The SAE in SAELens' inference format (cfg.json + safetensors), written atomically."""
    from safetensors.torch import save_file

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run.sae.save_inference_model(str(partial))
    save_file(
        {"sparsity": run.trainer.log_feature_sparsity.contiguous()},
        str(partial / "sparsity.safetensors"),
    )
    (partial / "saefeatures.json").write_text(
        json.dumps({**extra, "curve": run.curve}, indent=1, default=str)
    )
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder
