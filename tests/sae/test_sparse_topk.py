"""The latent-sparse TopK step equals SAELens' dense TopKTrainingSAE: values and gradients."""

from __future__ import annotations

import warnings

import pytest
import torch
from sae_lens.saes import TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE

from saefeatures.sae.config import SaeConfig
from saefeatures.sae.sparse_topk import BLOCK_TOKENS, SparseTopKTrainingSAE, sparse_decode
from saefeatures.sae.training import trainer_config


def _pair(rescale: bool) -> tuple[TopKTrainingSAE, SparseTopKTrainingSAE]:
    cfg = TopKTrainingSAEConfig(
        k=8, d_in=32, d_sae=256, dtype="float32", device="cpu", rescale_acts_by_decoder_norm=rescale
    )
    torch.manual_seed(0)
    dense = TopKTrainingSAE(cfg)
    with torch.no_grad():  # biases and decoder norms away from their initial values
        dense.b_dec.normal_()
        dense.b_enc.normal_()
        dense.W_dec.mul_(torch.rand(256, 1) + 0.5)
    sparse = SparseTopKTrainingSAE(cfg)
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


def _step(sae: TopKTrainingSAE, x: torch.Tensor, dead: torch.Tensor | None):
    step = TrainStepInput(
        sae_in=x, dead_neuron_mask=dead, coefficients={}, n_training_steps=0, is_logging_step=False
    )
    out = sae.training_forward_pass(step)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in sae.named_parameters()}


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("dead_share", [0.0, 0.3])
@pytest.mark.parametrize("tokens", [64, 2 * BLOCK_TOKENS + 7])  # one block; three, the last short
def test_the_sparse_step_has_the_dense_values_and_gradients(rescale, dead_share, tokens):
    dense, sparse = _pair(rescale)
    x = torch.randn(tokens, 32) * 3 + 5  # off-centre, as residual streams are
    dead = torch.rand(256, generator=torch.Generator().manual_seed(1)) < dead_share
    (want, want_grads), (got, got_grads) = _step(dense, x, dead), _step(sparse, x, dead)
    chosen = got.feature_acts.to_dense()  # blocks round the encoder product a little apart
    assert torch.equal(chosen != 0, want.feature_acts != 0)
    torch.testing.assert_close(chosen, want.feature_acts.detach())
    torch.testing.assert_close(got.sae_out, want.sae_out)
    for name in ("mse_loss", "auxiliary_reconstruction_loss"):
        torch.testing.assert_close(got.losses[name], want.losses[name])
    assert (want.losses["auxiliary_reconstruction_loss"] > 0) == (dead_share > 0)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5)


def test_the_trainer_counts_the_same_firings_from_the_sparse_activations():
    """SAELens' trainer reads firings off `feature_acts`, which the sparse step returns as COO."""
    from sae_lens.training.sae_trainer import SAETrainer

    cfg = SaeConfig(training_tokens=64 * 10, train_batch_size=64, k=8, autocast=False)
    trainers = [
        SAETrainer(cfg=trainer_config(cfg, "cpu"), sae=sae, data_provider=iter(()))
        for sae in _pair(rescale=False)
    ]
    x = torch.randn(64, 32) * 3
    for trainer in trainers:
        trainer.n_forward_passes_since_fired[:100] = 7
        trainer.step(x)
    want, got = trainers
    assert torch.equal(got.act_freq_scores, want.act_freq_scores)
    assert torch.equal(got.n_forward_passes_since_fired, want.n_forward_passes_since_fired)
    assert 0 < int(got.act_freq_scores.count_nonzero()) < 256


def test_sparse_decode_is_the_product_with_the_scattered_values():
    indices = torch.tensor([[0, 3], [2, 1]])
    values = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    W_dec = torch.arange(12.0).reshape(4, 3)
    dense = torch.zeros(2, 4).scatter_(-1, indices, values)
    assert torch.equal(sparse_decode(indices, values, W_dec), dense @ W_dec)


def test_the_sparse_step_is_quiet():
    _, sparse = _pair(rescale=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _step(sparse, torch.randn(8, 32), torch.ones(256, dtype=torch.bool))
