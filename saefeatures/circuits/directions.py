"""The direction view beside the circuit: how much of a layer's effect travels along the
valence axis, or within the emotion subspace?

At one hook, the corrupted run's residual at the patched positions gets only its
projection on span(B) from the clean run, B an orthonormal basis [d_model, r]:
x_cor + B B^T (x_clean - x_cor); the rest stays corrupted. Random subspaces of the
same rank (`random_bases`) are each basis's null. The effect is the patched
score minus the corrupted score, as for circuit nodes. A full basis (the identity)
patches the whole residual there: the layer's own patching effect, which the other
bases' effects are read against. The valence axis is `vectors.axes.valence_axis`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from saefeatures import stats
from saefeatures.circuits.curves import ROWS_PER_FORWARD, patched_activations
from saefeatures.errors import SaefeaturesError
from saefeatures.interventions import Intervention, Patch
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import PreparedPair, patch_positions, scored_forward

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


def random_bases(d_model: int, rank: int, draws: int, seed: int) -> list[torch.Tensor]:
    """`draws` orthonormal bases [d_model, rank] of uniformly random subspaces (QR of a
    Gaussian matrix, signs fixed), the null of a basis of that rank; they depend only on
    (seed, d_model, rank)."""
    generator = np.random.default_rng([seed, d_model, rank])
    found = []
    for _ in range(draws):
        q, r = np.linalg.qr(generator.standard_normal((d_model, rank)))
        found.append(torch.as_tensor(q * np.sign(np.diag(r)), dtype=torch.float32))
    return found


@torch.no_grad()
def projection_effects(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    hook: str,
    bases: Sequence[torch.Tensor],
) -> list[float]:
    """Per basis, the corrupted run with the projection of the residual on its span at the
    patched positions taken from the clean run, minus the corrupted run; one run of both
    prompts, then the bases as copies of batched forwards of at most `ROWS_PER_FORWARD`
    rows."""
    for index, basis in enumerate(bases):
        _check(index, basis, model.d_model)
    targets = [target for target, _ in patch_positions(pair)]
    ((clean, corrupted),) = patched_activations(model, [pair], [hook])
    x_cor = corrupted[hook].float()
    difference = clean[hook].float() - x_cor
    prefix = pair.prefix(model)
    rows = len(score.continuations)
    per_forward = max(1, ROWS_PER_FORWARD // rows - 1)
    effects: list[float] = []
    for start in range(0, len(bases), per_forward):
        chunk = [b.to(x_cor.device, torch.float32) for b in bases[start : start + per_forward]]
        # copy 0 stays corrupted: each chunk's effects are read against its own batch
        patched = torch.stack([x_cor] + [x_cor + difference @ b @ b.T for b in chunk])
        edit = Intervention(hook, Patch(patched.repeat_interleave(rows, dim=0), targets))
        found = scored_forward(model, prefix, pair.corrupted, score, len(patched), [edit])
        effects += (found[1:].float() - found[0].float()).tolist()
    return effects


def _check(index: int, basis: torch.Tensor, d_model: int) -> None:
    """A basis must be [d_model, r] with orthonormal columns for B B^T to project."""
    if basis.ndim != 2 or basis.shape[0] != d_model:
        raise SaefeaturesError(
            f"basis {index} has shape {tuple(basis.shape)}; give [d_model={d_model}, r]"
        )
    columns = basis.float()
    gram = columns.T @ columns
    if not torch.allclose(
        gram, torch.eye(len(gram), dtype=gram.dtype, device=gram.device), atol=ORTHONORMAL_TOLERANCE
    ):
        raise SaefeaturesError(
            f"basis {index} is not orthonormal; orthonormalise its columns (e.g. by QR)"
        )
