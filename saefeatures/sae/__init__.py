"""Sparse autoencoders per layer: train (with SAELens' trainer), load, evaluate.

Modules: `config` (presets and their schema), `text` (training text), `provider`
(activations from one forward pass per batch, optional disk cache), `training`
(SAELens' `SAETrainer` per layer, checkpoints, resume), `metrics` and
`evaluation` (our metrics on held-out text), `loading` (SAELens, sparsify and
pretrained SAEs), `api` (the stages the CLI calls).
"""

from saefeatures.sae.api import (
    EvaluateOptions,
    LoadOptions,
    TrainOptions,
    evaluate,
    list_saes,
    load,
    plan_training,
    train,
)

__all__ = [
    "EvaluateOptions",
    "LoadOptions",
    "TrainOptions",
    "evaluate",
    "list_saes",
    "load",
    "plan_training",
    "train",
]
