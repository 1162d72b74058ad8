"""The activation stream: epochs repeat the first epoch's buffers, harvested once when kept."""

from __future__ import annotations

import numpy as np
import torch

from saefeatures import models
from saefeatures.sae.provider import ActivationSource


def _source(model_dir, keep: bool) -> ActivationSource:
    model = models.load(str(model_dir), dtype="float32")
    rows = np.random.default_rng(0).integers(3, 200, size=(20, 16))  # 20 rows, 5 buffers
    return ActivationSource(rows, [0, 1], "resid_post", 4, 2, (), False, lambda: model, keep=keep)


def test_each_later_epoch_repeats_every_first_epoch_buffer_once(tiny_llama_dir):
    source = _source(tiny_llama_dir, keep=False)
    assert source.epoch_buffers == 5
    assert [source.source_buffer(i) for i in range(5)] == [0, 1, 2, 3, 4]
    for epoch in (1, 2):
        later = [source.source_buffer(i) for i in range(5 * epoch, 5 * epoch + 5)]
        assert sorted(later) == [0, 1, 2, 3, 4] and later != [0, 1, 2, 3, 4]
        for i, slot in zip(range(5 * epoch, 5 * epoch + 5), later, strict=True):
            assert np.array_equal(source.buffer_rows(i), source.buffer_rows(slot))


def _epochs(source: ActivationSource, n: int) -> list[torch.Tensor]:
    """Each epoch's layer-1 activations (20 rows x 16 tokens), in stream order."""
    stream = source.batches(0, 64)
    return [torch.cat([next(stream)[1] for _ in range(5)]) for _ in range(n)]


def test_kept_activations_serve_later_epochs_without_the_model(tiny_llama_dir):
    kept, fresh = _source(tiny_llama_dir, keep=True), _source(tiny_llama_dir, keep=False)
    got, want = _epochs(kept, 3), _epochs(fresh, 3)
    assert kept.lm_tokens == 20 * 16  # one epoch's forwards, then memory
    assert fresh.lm_tokens > 2 * 20 * 16
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    # the same tokens every epoch, in another order
    first, second = (e[e[:, 0].argsort()] for e in got[:2])
    torch.testing.assert_close(first, second)
    assert not torch.equal(got[0], got[1])
