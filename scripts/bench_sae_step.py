"""Benchmark: our latent-sparse TopK training step against SAELens' own TopK step.

In one run, on the same random batch, weights and SAELens `SAETrainer` (Adam, gradient
clipping, firing counts), times `trainer.step` with SAELens' `TopKTrainingSAE` and with
`saefeatures.sae.sparse_topk.SparseTopKTrainingSAE`, first with no dead latents (no AuxK
loss) and then with a share of them dead (AuxK on), and prints the ratio. The SAE shape
defaults to the SmolLM2 preset's (d_in 576, d_sae 9,216, k 32, batch 4,096).

    python scripts/bench_sae_step.py [--d-in 576] [--d-sae 9216] [--k 32] [--batch 4096]
                                     [--dead 0.16] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from sae_lens.saes import TopKTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE

from saefeatures.sae.config import SaeConfig
from saefeatures.sae.sparse_topk import SparseTopKTrainingSAE
from saefeatures.sae.training import trainer_config


def seconds_per_step(sae_class: type, args: argparse.Namespace, dead: float) -> float:
    from sae_lens.training.sae_trainer import SAETrainer

    cfg = TopKTrainingSAEConfig(
        k=args.k, d_in=args.d_in, d_sae=args.d_sae, dtype="float32", device="cpu"
    )
    torch.manual_seed(0)
    sae = sae_class(cfg)
    ours = SaeConfig(
        training_tokens=args.batch * 100, train_batch_size=args.batch, k=args.k, autocast=False
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
        f"step, float32, {torch.get_num_threads()} threads"
    )
    for dead in (0.0, args.dead):
        saelens = seconds_per_step(TopKTrainingSAE, args, dead)
        sparse = seconds_per_step(SparseTopKTrainingSAE, args, dead)
        print(
            f"dead {dead:.0%}: SAELens {saelens:.2f} s/step, ours {sparse:.2f} s/step -> "
            f"{saelens / sparse:.2f}x"
        )


if __name__ == "__main__":
    main()
