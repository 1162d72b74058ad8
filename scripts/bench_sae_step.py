"""Benchmark: our latent-sparse TopK training step against SAELens' own, and against the bound.

In one run, on the same random batch, weights and SAELens `SAETrainer` (Adam, gradient
clipping, firing counts), times `trainer.step` with SAELens' `TopKTrainingSAE` and with
`saefeatures.sae.sparse_topk.SparseTopKTrainingSAE`, first with no dead latents (no AuxK
loss) and then with a share of them dead (AuxK on), in float32 and, where the CPU computes
in bfloat16, under SAELens' bfloat16 autocast. Beside them it times the one product no
TopK step can skip, the dense encoder product `[batch, d_in] @ [d_in, d_sae]`
(2 * batch * d_in * d_sae FLOPs) in the same arithmetic: the step's physical bound on
this machine. It prints each step's time, the ratio to SAELens and the bound's share of
the step. The SAE shape defaults to the SmolLM2 preset's (d_in 576, d_sae 9,216, k 32,
batch 4,096).

    python scripts/bench_sae_step.py [--d-in 576] [--d-sae 9216] [--k 32] [--batch 4096]
                                     [--dead 0.16] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from sae_lens.saes import TopKTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE

from saefeatures import models
from saefeatures.sae.config import SaeConfig
from saefeatures.sae.sparse_topk import SparseTopKTrainingSAE
from saefeatures.sae.training import trainer_config


def seconds_per_step(sae_class: type, args: argparse.Namespace, dead: float, bf16: bool) -> float:
    from sae_lens.training.sae_trainer import SAETrainer

    cfg = TopKTrainingSAEConfig(
        k=args.k, d_in=args.d_in, d_sae=args.d_sae, dtype="float32", device="cpu"
    )
    torch.manual_seed(0)
    sae = sae_class(cfg)
    ours = SaeConfig(
        training_tokens=args.batch * 100,
        train_batch_size=args.batch,
        k=args.k,
        autocast=bf16,
        dtype="bfloat16" if bf16 else "float32",
    )
    trainer = SAETrainer(cfg=trainer_config(ours, "cpu"), sae=sae, data_provider=iter(()))
    batch = torch.randn(args.batch, args.d_in)
    trainer.step(batch)  # warm-up
    window = trainer.cfg.dead_feature_window
    trainer.n_forward_passes_since_fired[: int(dead * args.d_sae)] = window + 1
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.step(batch)
    return (time.perf_counter() - started) / args.steps


def bound_seconds(args: argparse.Namespace, dtype: torch.dtype) -> float:
    """The dense encoder product alone, best of a few: the least any TopK step must do."""
    x = torch.randn(args.batch, args.d_in, dtype=dtype)
    w = torch.randn(args.d_in, args.d_sae, dtype=dtype)
    times = []
    for _ in range(args.steps + 1):
        started = time.perf_counter()
        x @ w
        times.append(time.perf_counter() - started)
    return min(times)


def report(args: argparse.Namespace, bf16: bool) -> None:
    label = "bfloat16 autocast" if bf16 else "float32"
    bound = bound_seconds(args, torch.bfloat16 if bf16 else torch.float32)
    flops = 2 * args.batch * args.d_in * args.d_sae
    print(
        f"{label}: bound (dense encoder product, {flops / 1e9:.1f} GFLOP) {bound:.3f} s "
        f"= {flops / bound / 1e9:.0f} GFLOP/s"
    )
    for dead in (0.0, args.dead):
        saelens = seconds_per_step(TopKTrainingSAE, args, dead, bf16)
        sparse = seconds_per_step(SparseTopKTrainingSAE, args, dead, bf16)
        print(
            f"  dead {dead:.0%}: SAELens {saelens:.2f} s/step, ours {sparse:.2f} s/step -> "
            f"{saelens / sparse:.2f}x; the bound is {bound / sparse:.0%} of our step"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=9216)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dead", type=float, default=0.16)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(
        f"TopK d_in {args.d_in}, d_sae {args.d_sae}, k {args.k}, {args.batch:,} tokens per "
        f"step, {torch.get_num_threads()} threads"
    )
    report(args, bf16=False)
    if models.native_bfloat16("cpu"):
        report(args, bf16=True)
    else:
        print("bfloat16: not native on this CPU (emulated), not measured")


if __name__ == "__main__":
    main()
