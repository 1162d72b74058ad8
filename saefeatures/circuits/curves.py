"""Is the circuit what the model uses? Faithfulness and completeness under mean ablation.

A node is mean-ablated by giving it, at the pair's patched positions
(`sweeps.patch_positions`), its mean value over the patched positions of both prompts of
the pairs given to `mean_values`: an SAE latent its mean activation, an error node its mean
error vector. Ablations run on the clean prompt, at every SAE layer at once; a later SAE
layer splits the stream as the earlier ablations left it (`rewrite.sae_hooks`), so a
kept node downstream of an ablated one takes its value in the ablated run.

With m(S) the clean prompt's score, mean over the pairs, when only the nodes S keep their
values (Marks et al. 2024), m(all) = nothing ablated and m(none) = every node ablated:

- faithfulness of C = (m(C) - m(none)) / (m(all) - m(none)): 1 when C alone carries the
  model's behaviour, 0 for the empty set;
- completeness of C = (m(all minus C) - m(none)) / (m(all) - m(none)): C ablated, the
  rest kept; 1 for the empty set, 0 when C is all that matters.

Both are None where m(all) = m(none). Random node sets of the same sizes, drawn among
`candidates`, are the baseline a circuit must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.circuits.nodes import by_layer, check_nodes, node_masks
from saefeatures.circuits.rewrite import Edit, Split, per_copy, sae_hooks
from saefeatures.errors import SaefeaturesError
from saefeatures.interventions import sae_split
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import (
    PAIRS_PER_BATCH,
    PreparedPair,
    patch_positions,
    scored_forward,
)

ROWS_PER_FORWARD = 64  # rows of one ablation forward (node sets x score continuations)

Activations = dict[str, torch.Tensor]  # hook -> [patched positions, d_model]


@dataclass
class LayerMeans:
    """An SAE layer's mean-ablation values: mean feature activations and mean error."""

    features: torch.Tensor  # [d_sae]
    error: torch.Tensor  # [d_model]


@dataclass(frozen=True)
class CurvePoint:
    """One point of a curve, as a `circuit_curves` row without the run's columns."""

    curve: str  # faithfulness | completeness
    selection: str  # circuit | random
    nodes: int
    value: float | None
    spread: float | None  # standard deviation over the random draws; None for the circuit
    draws: int
    pairs: int


@torch.no_grad()
def patched_activations(
    model: LoadedModel, pairs: Sequence[PreparedPair], hooks: Sequence[str]
) -> list[tuple[Activations, Activations]]:
    """Each pair's (clean, corrupted) activations at each hook at its patched positions,
    from one right-padded forward of both prompts of every pair (causal attention: the
    padding after a prompt never reaches it)."""
    prompts, positions = [], []
    for pair in pairs:
        targets, origins = zip(*patch_positions(pair), strict=True)
        for side, at in ((pair.clean, origins), (pair.corrupted, targets)):
            prompts.append(torch.cat([pair.shared, side]))
            positions.append([pair.prefix_length + i for i in at])
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long, device=model.device)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = 1
    taken: dict[str, torch.Tensor] = {}

    def take(name: str) -> Callable[..., torch.Tensor]:
        def keep(activation: torch.Tensor, hook: object = None) -> torch.Tensor:
            taken[name] = activation.detach()
            return activation

        return keep

    with model.hooks([(name, take(name)) for name in hooks]):
        model.final_hidden(ids, attention_mask=mask)
    rows = [{name: taken[name][row, at] for name in hooks} for row, at in enumerate(positions)]
    return list(zip(rows[0::2], rows[1::2], strict=True))


@torch.no_grad()
def mean_values(
    model: LoadedModel, pairs: Sequence[PreparedPair], saes: Sequence[CircuitSae]
) -> dict[int, LayerMeans]:
    """Each SAE layer's mean feature activations and mean error over the patched
    positions of both prompts of every pair, `PAIRS_PER_BATCH` pairs per forward."""
    if not pairs:
        raise SaefeaturesError("mean ablation needs at least one pair; give some pairs")
    sums: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {site.layer: [] for site in saes}
    for start in range(0, len(pairs), PAIRS_PER_BATCH):
        found = patched_activations(
            model, pairs[start : start + PAIRS_PER_BATCH], [site.hook for site in saes]
        )
        for site in saes:
            residual = torch.cat([side[site.hook] for both in found for side in both])
            acts, error = sae_split(site.sae, residual)
            sums[site.layer].append((acts.float().sum(0), error.float().sum(0)))
    count = 2 * sum(len(patch_positions(pair)) for pair in pairs)
    return {
        site.layer: LayerMeans(
            *(
                (torch.stack(parts).sum(0) / count).to(site.sae.W_dec.dtype)
                for parts in zip(*sums[site.layer], strict=True)
            )
        )
        for site in saes
    }


@torch.no_grad()
def ablated_scores(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    means: dict[int, LayerMeans],
    node_sets: Sequence[Collection[Node]],
    keep: bool,
) -> torch.Tensor:
    """[len(node_sets)] scores of the clean prompt with each set mean-ablated at the
    patched positions: with `keep`, every node of every SAE layer but the set's
    (faithfulness); without, the set's nodes only (completeness). Sets run as rows of
    batches of at most `ROWS_PER_FORWARD` rows."""
    sites = by_layer(saes)
    for nodes in node_sets:
        check_nodes(sites, nodes)
    positions = [origin for _, origin in patch_positions(pair)]
    rows_per_copy = len(score.continuations)
    step = max(1, ROWS_PER_FORWARD // rows_per_copy)
    found = []
    for start in range(0, len(node_sets), step):
        chunk = node_sets[start : start + step]
        ablated = {site.layer: _ablated(site, chunk, keep) for site in saes}
        edit = _mean_ablation(means, ablated, rows_per_copy)
        hooks = sae_hooks(saes, positions, edit)
        found.append(
            scored_forward(model, pair.prefix(model), pair.clean, score, len(chunk), hooks=hooks)
        )
    return torch.cat(found)


def _ablated(
    site: CircuitSae, node_sets: Sequence[Collection[Node]], keep: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the SAE's features [sets, d_sae] and error nodes [sets] each set ablates:
    its own nodes, or with `keep` every other one."""
    features, error = node_masks(site, node_sets)
    return (~features, ~error) if keep else (features, error)


def _mean_ablation(
    means: dict[int, LayerMeans],
    ablated: dict[int, tuple[torch.Tensor, torch.Tensor]],
    rows_per_copy: int,
) -> Edit:
    """An edit giving each copy's ablated nodes their means (copy i: node set i)."""

    def edit(site: CircuitSae, split: Split) -> Split:
        features, error = (
            per_copy(mask, rows_per_copy).to(split.features.device) for mask in ablated[site.layer]
        )
        mean = means[site.layer]
        return Split(
            torch.where(features[:, None, :], mean.features, split.features),
            torch.where(error[:, None, None], mean.error, split.error),
        )

    return edit


def random_sets(
    candidates: Collection[Node], sizes: Sequence[int], draws: int, seed: int
) -> dict[int, list[frozenset[Node]]]:
    """`draws` sets of each size drawn without replacement among the candidates; a size's
    draws depend only on (seed, size) and the candidates, not on their order or on the
    other sizes. Sizes larger than the candidates, or no draws, get no entry."""
    pool = sorted(
        set(candidates), key=lambda node: (node.layer, node.feature is not None, node.feature or 0)
    )
    drawn = {}
    for size in sizes:
        if draws and size <= len(pool):
            generator = np.random.default_rng([seed, size])
            drawn[size] = [
                frozenset(pool[i] for i in generator.choice(len(pool), size, replace=False))
                for _ in range(draws)
            ]
    return drawn


def curves(
    model: LoadedModel,
    pairs: Sequence[PreparedPair],
    score: Score,
    saes: Sequence[CircuitSae],
    means: dict[int, LayerMeans],
    ranking: Sequence[Node],
    sizes: Sequence[int],
    candidates: Collection[Node],
    draws: int,
    seed: int,
) -> list[CurvePoint]:
    """Faithfulness and completeness of the first n nodes of `ranking` and of `draws`
    random n-sets among `candidates` (`random_sets`), for each size n.

    Sizes beyond the ranking are clipped to its length (the whole ranking is the curve's
    last point); random sets are drawn only for sizes up to the number of candidates.
    A random point's value is the mean over its draws and its spread their standard
    deviation (ddof 1; None for a single draw).
    """
    if not pairs:
        raise SaefeaturesError("the curves need at least one pair; give some pairs")
    if any(n < 0 for n in sizes) or draws < 0:
        raise SaefeaturesError("sizes and draws cannot be negative; give counts from 0 up")
    clipped = sorted({min(n, len(ranking)) for n in sizes})
    circuit = [frozenset(ranking[:n]) for n in clipped]
    drawn = random_sets(candidates, clipped, draws, seed)
    node_sets = [frozenset(), *circuit, *(s for sets in drawn.values() for s in sets)]
    # m over the sets; the empty set is every node ablated when only it is kept (m(none))
    # and nothing ablated when it is the ablated one (m(all)).
    m = {
        keep: np.mean(
            [
                ablated_scores(model, pair, score, saes, means, node_sets, keep).cpu().numpy()
                for pair in pairs
            ],
            axis=0,
            dtype=np.float64,
        )
        for keep in (True, False)
    }
    m_none, m_all = m[True][0], m[False][0]
    points = []
    for curve, keep in (("faithfulness", True), ("completeness", False)):
        if m_all == m_none:
            values = np.full(len(node_sets) - 1, np.nan)
        else:
            values = (m[keep][1:] - m_none) / (m_all - m_none)
        points += _points(curve, clipped, drawn, values, len(pairs))
    return points


def _points(
    curve: str,
    sizes: list[int],
    drawn: dict[int, list[frozenset[Node]]],
    values: np.ndarray,
    pairs: int,
) -> list[CurvePoint]:
    """A curve's points from its values (NaN: undefined) in `curves`' order of node sets:
    the circuit's at each size, then each size's draws."""
    points = [
        CurvePoint(curve, "circuit", size, _defined(value), None, 1, pairs)
        for size, value in zip(sizes, values, strict=False)
    ]
    start = len(sizes)
    for size, sets in drawn.items():
        found = values[start : start + len(sets)]
        start += len(sets)
        spread = _defined(np.std(found, ddof=1)) if len(sets) > 1 else None
        points.append(
            CurvePoint(curve, "random", size, _defined(np.mean(found)), spread, len(sets), pairs)
        )
    return points


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
