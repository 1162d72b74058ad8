"""Sparse autoencoders per layer: train (with SAELens' trainer), load, evaluate.

Modules: `config` (presets and their schema), `provider` (activations from one forward
pass per batch, optional disk cache), `training` (SAELens' `SAETrainer` per layer,
checkpoints, resume), `sparse_topk` (a TopK step that touches only the chosen latents),
`metrics` and `evaluation` (our metrics on held-out text), `loading` (SAELens, sparsify
and pretrained SAEs), `api` (the stages the CLI calls). Their options live in
`saefeatures.options`; the training text in `saefeatures.corpora.training_text`.
"""

from saefeatures.sae.api import evaluate, list_saes, load, plan_training, train

__all__ = ["evaluate", "list_saes", "load", "plan_training", "train"]
