"""The direction view beside the circuit: how much of a layer's effect travels along the
valence axis, or within the emotion subspace?

At one hook, the corrupted run's residual at the patched positions gets only its
projection on span(B) from the clean run, B an orthonormal basis [d_model, r]:
x_cor + B B^T (x_clean - x_cor); the rest stays corrupted. The effect is the patched
score minus the corrupted score, as for circuit nodes. A full basis (the identity)
patches the whole residual there: the layer's own patching effect, which the other
bases' effects are read against. The valence axis is `vectors.axes.valence_axis`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from saefeatures import stats
from saefeatures.circuits.curves import patched_activations
from saefeatures.errors import SaefeaturesError
from saefeatures.interventions import Intervention, Patch
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import PreparedPair, patch_positions, rows_of, scored_forward

ORTHONORMAL_TOLERANCE = 1e-4


def emotion_subspace(vectors: np.ndarray, share: float = 0.9) -> np.ndarray:
    """An orthonormal basis [d_model, r] of the fewest principal components of the
    emotion vectors [emotions, d_model] (centred) that hold `share` of their variance:
    the directions the emotions differ along, without their common offset."""
    if not 0 < share <= 1:
        raise SaefeaturesError(f"share must be in (0, 1], got {share}; give a fraction")
    fitted = stats.pca(vectors, min(np.shape(vectors)))
    held = np.cumsum(fitted.explained_variance_ratio)
    rank = min(int(np.searchsorted(held, share * (1 - 1e-12))) + 1, len(held))
    return fitted.components[:rank].T


@torch.no_grad()
def projection_effects(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    hook: str,
    bases: Mapping[str, torch.Tensor],
) -> dict[str, float]:
    """Each named basis's effect: the corrupted run with the projection of the residual
    on its span at the patched positions taken from the clean run, minus the corrupted
    run; one batched forward (copy 0 unpatched) after one run of both prompts."""
    for name, basis in bases.items():
        _check(name, basis, model.d_model)
    targets = [target for target, _ in patch_positions(pair)]
    ((clean, corrupted),) = patched_activations(model, [pair], [hook])
    x_clean, x_cor = clean[hook].float(), corrupted[hook].float()
    edits = []
    for copy, basis in enumerate(bases.values(), start=1):
        b = basis.to(x_cor.device, torch.float32)
        patched = x_cor + (x_clean - x_cor) @ b @ b.T
        edits.append(Intervention(hook, Patch(patched, targets), rows=rows_of(copy, score)))
    found = scored_forward(
        model, pair.prefix(model), pair.corrupted, score, len(edits) + 1, edits
    ).tolist()
    return {name: value - found[0] for name, value in zip(bases, found[1:], strict=True)}


def _check(name: str, basis: torch.Tensor, d_model: int) -> None:
    """A basis must be [d_model, r] with orthonormal columns for B B^T to project."""
    if basis.ndim != 2 or basis.shape[0] != d_model:
        raise SaefeaturesError(
            f"basis {name!r} has shape {tuple(basis.shape)}; give [d_model={d_model}, r]"
        )
    columns = basis.float()
    gram = columns.T @ columns
    if not torch.allclose(
        gram, torch.eye(len(gram), dtype=gram.dtype, device=gram.device), atol=ORTHONORMAL_TOLERANCE
    ):
        raise SaefeaturesError(
            f"basis {name!r} is not orthonormal; orthonormalise its columns (e.g. by QR)"
        )
