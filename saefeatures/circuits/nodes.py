"""Node effects of one pair: how much of the score's change each SAE feature and each SAE
error node carries, estimated or measured.

A node's effect is the score change when it takes its clean value in the corrupted run,
at every patched position (`graph`). Three ways to get it:

- attribution: the score's gradient at the corrupted run times (clean - corrupted), for
  every node of every SAE layer from one forward and one backward. Each SAE's output
  keeps the activation's value and passes its gradient on to earlier layers unchanged
  (Marks et al.'s gradient tap), so a later SAE never cuts an earlier layer's gradient;
- integrated_gradients: the same with the gradient averaged along the straight line
  from the corrupted to the clean values of one layer's nodes (all of them together),
  the other layers computing themselves: one forward per layer, the points as rows.
  The points are the midpoints (i + 0.5) / steps of `steps` equal segments, whose error
  falls with the square of `steps` (the segments' left ends, Marks et al.'s choice,
  only with `steps`); as `steps` grows, a layer's node effects add up to the effect of
  patching the whole layer;
- exact: whole node sets patched, the SAE layers after them recomputed from the stream
  as the patch left it.

Nodes live at the prompt's positions only. The replies score also reads the reply
tokens after the prompt, which up to a patched layer attend to the corrupted prompt: so
with that score even all of the first SAE layer's nodes together fall short of the
clean run's score, while with the anchors score they make it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from saefeatures.circuits.graph import CircuitSae, LayerEffects, Node, PairEffects
from saefeatures.circuits.rewrite import Split, per_copy, sae_hooks
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import PreparedPair, patch_positions, scored_forward

Method = Literal["attribution", "integrated_gradients"]
METHODS: tuple[Method, ...] = ("attribution", "integrated_gradients")
ROWS_PER_FORWARD = 32  # exact patches: node sets x score continuations run together


@dataclass
class Tapped:
    """The attribution pass: each SAE layer's values at the corrupted run and the score's
    gradient with respect to them, by layer (`[1, positions, ...]` each)."""

    corrupted: dict[int, Split]
    gradient: dict[int, Split]


def patched_positions(pair: PreparedPair) -> list[int]:
    """The corrupted prompt's suffix positions that nodes live at."""
    return [target for target, _ in patch_positions(pair)]


def by_layer(saes: Sequence[CircuitSae]) -> dict[int, CircuitSae]:
    """The SAEs by layer: a node names its SAE by layer, so each layer has one at most."""
    sites = {site.layer: site for site in saes}
    if len(sites) != len(saes):
        raise SaefeaturesError("give one SAE per layer at most: circuit nodes name SAEs by layer")
    return sites


def check_nodes(sites: dict[int, CircuitSae], nodes: Collection[Node]) -> None:
    """Every node at one of the SAE layers, and its latent within that SAE."""
    for node in nodes:
        site = sites.get(node.layer)
        if site is None:
            raise SaefeaturesError(
                f"node {node} is at layer {node.layer}, which has no SAE here; give nodes at "
                f"the SAE layers {sorted(sites)}"
            )
        width = site.sae.W_dec.shape[0]
        if node.feature is not None and not 0 <= node.feature < width:
            raise SaefeaturesError(
                f"node {node} names latent {node.feature} of an SAE with {width}; give "
                f"latents 0..{width - 1}"
            )


def as_leaves(split: Split) -> Split:
    """Row 0 of a split (a score's rows share the prompt) as detached autograd leaves."""
    return Split(
        split.features[:1].detach().clone().requires_grad_(True),
        split.error[:1].detach().clone().requires_grad_(True),
    )


@torch.no_grad()
def recorded(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    clean: bool,
) -> dict[int, Split]:
    """Each SAE layer's features and error at the patched positions of the clean (or the
    corrupted) prompt, as the model computes them, by layer (`[1, positions, ...]`)."""
    positions = patch_positions(pair)
    index = [origin if clean else target for target, origin in positions]
    found: dict[int, Split] = {}

    def keep(site: CircuitSae, split: Split) -> Split:
        found[site.layer] = Split(split.features[:1], split.error[:1])
        return split

    tokens = pair.clean if clean else pair.corrupted
    scored_forward(model, pair.prefix(model), tokens, score, 1, hooks=sae_hooks(saes, index, keep))
    return found


def attribution_pass(
    model: LoadedModel, pair: PreparedPair, score: Score, saes: Sequence[CircuitSae]
) -> Tapped:
    """One forward and one backward on the corrupted prompt: the score's gradient with
    respect to every SAE layer's features and error.

    At each SAE the stream is written back as activation + (decode(f) - decode(f)
    detached) + (e - e detached) for leaves f and e: the value is the activation's, the
    gradient reaches f as the decoder's transpose of the stream's gradient, e as the
    stream's gradient, and earlier layers as if no SAE were there.
    """
    rows = len(score.continuations)
    leaves: dict[int, Split] = {}

    def tap(site: CircuitSae, split: Split) -> Split:
        leaf = leaves[site.layer] = as_leaves(split)
        features = per_copy(leaf.features, rows)
        activation = site.sae.decode(split.features) + split.error
        tapped = per_copy(leaf.error - leaf.error.detach(), rows)
        return Split(features, activation - site.sae.decode(features).detach() + tapped)

    hooks = sae_hooks(saes, patched_positions(pair), tap)
    with torch.enable_grad():
        value = scored_forward(model, pair.prefix(model), pair.corrupted, score, 1, hooks=hooks)
        ordered = [leaves[site.layer] for site in saes]
        inputs = [part for leaf in ordered for part in (leaf.features, leaf.error)]
        grads = torch.autograd.grad(value.sum(), inputs)
    return Tapped(
        {
            layer: Split(leaf.features.detach(), leaf.error.detach())
            for layer, leaf in leaves.items()
        },
        {site.layer: Split(*grads[2 * i : 2 * i + 2]) for i, site in enumerate(saes)},
    )


def _path_gradient(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    site: CircuitSae,
    ends: tuple[Split, Split],
    steps: int,
) -> Split:
    """The score's gradient with respect to one layer's features and error, averaged over
    `steps` midpoints between their (corrupted, clean) values, one row each."""
    start, end = ends
    alphas = (torch.arange(steps, device=start.error.device) + 0.5) / steps

    def between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + alphas[:, None, None].to(a.dtype) * (b - a)).requires_grad_(True)

    path = Split(between(start.features, end.features), between(start.error, end.error))
    rows = len(score.continuations)

    def put(_: CircuitSae, split: Split) -> Split:
        return Split(per_copy(path.features, rows), per_copy(path.error, rows))

    hooks = sae_hooks([site], patched_positions(pair), put)
    with torch.enable_grad():
        value = scored_forward(model, pair.prefix(model), pair.corrupted, score, steps, hooks=hooks)
        grads = torch.autograd.grad(value.sum(), [path.features, path.error])
    return Split(*(grad.mean(0, keepdim=True) for grad in grads))


def _effects(gradient: Split, clean: Split, corrupted: Split) -> LayerEffects:
    """Gradient times (clean - corrupted) per position, in float32: per latent, and over
    d_model for the error."""
    features = gradient.features[0].float() * (clean.features[0].float() - corrupted.features[0])
    error = gradient.error[0].float() * (clean.error[0].float() - corrupted.error[0])
    return LayerEffects(features, error.sum(-1))


def node_effects(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    method: Method,
    steps: int = 5,
) -> PairEffects:
    """Every node's estimated effect at every SAE layer and patched position; `steps`
    points on the path for integrated gradients."""
    return estimated_effects(model, pair, score, saes, (method,), steps)[method]


def estimated_effects(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    methods: Sequence[Method],
    steps: int = 5,
) -> dict[str, PairEffects]:
    """`node_effects` by each of `methods`, the clean and corrupted runs recorded once for
    all of them."""
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise SaefeaturesError(f"unknown method {unknown[0]!r}; use one of {', '.join(METHODS)}")
    if steps < 1:
        raise SaefeaturesError(f"integrated gradients need at least one step, not {steps}")
    by_layer(saes)
    clean = recorded(model, pair, score, saes, clean=True)
    tapped = attribution_pass(model, pair, score, saes) if "attribution" in methods else None
    corrupted = tapped.corrupted if tapped else recorded(model, pair, score, saes, clean=False)
    gradients: dict[str, dict[int, Split]] = {"attribution": tapped.gradient} if tapped else {}
    if "integrated_gradients" in methods:
        gradients["integrated_gradients"] = {
            site.layer: _path_gradient(
                model, pair, score, site, (corrupted[site.layer], clean[site.layer]), steps
            )
            for site in saes
        }
    end = len(pair.corrupted)
    positions = [target - end for target in patched_positions(pair)]
    return {
        method: PairEffects(
            positions,
            {
                site.layer: _effects(gradient[site.layer], clean[site.layer], corrupted[site.layer])
                for site in saes
            },
        )
        for method, gradient in gradients.items()
    }


def exact_effects(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    node_sets: Sequence[Collection[Node]],
) -> list[float]:
    """Per node set, the score of the corrupted run with every node of the set at its clean
    value (at all patched positions) minus the corrupted run's score; the sets run
    `ROWS_PER_FORWARD` rows at a time."""
    if not node_sets:
        return []
    sites = by_layer(saes)
    for nodes in node_sets:
        check_nodes(sites, nodes)
    layers = {node.layer for nodes in node_sets for node in nodes}
    touched = [site for site in saes if site.layer in layers]
    clean = recorded(model, pair, score, touched, clean=True)
    with torch.no_grad():
        corrupted = scored_forward(model, pair.prefix(model), pair.corrupted, score, 1)
    per_forward = max(1, ROWS_PER_FORWARD // len(score.continuations))
    effects: list[float] = []
    for start in range(0, len(node_sets), per_forward):
        chunk = node_sets[start : start + per_forward]
        patched = _patched_scores(model, pair, score, touched, clean, chunk)
        effects += (patched - corrupted.float()).tolist()
    return effects


@torch.no_grad()
def _patched_scores(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    clean: dict[int, Split],
    node_sets: Sequence[Collection[Node]],
) -> torch.Tensor:
    """The corrupted prompt's scores with each node set at its clean values, one copy per set."""
    rows = len(score.continuations)
    chosen = {site.layer: node_masks(site, node_sets) for site in saes}

    def replace(site: CircuitSae, split: Split) -> Split:
        features, error = (per_copy(mask, rows) for mask in chosen[site.layer])
        values = clean[site.layer]
        return Split(
            torch.where(features[:, None, :], values.features, split.features),
            torch.where(error[:, None, None], values.error, split.error),
        )

    hooks = sae_hooks(saes, patched_positions(pair), replace)
    prefix = pair.prefix(model)
    return scored_forward(model, prefix, pair.corrupted, score, len(node_sets), hooks=hooks).float()


def node_masks(
    site: CircuitSae, node_sets: Sequence[Collection[Node]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the layer's latents (`[sets, d_sae]`) and whether its error (`[sets]`) each
    set patches (or ablates)."""
    weight = site.sae.W_dec
    features = torch.zeros(len(node_sets), weight.shape[0], dtype=torch.bool, device=weight.device)
    error = torch.zeros(len(node_sets), dtype=torch.bool, device=weight.device)
    for row, nodes in enumerate(node_sets):
        for node in nodes:
            if node.layer != site.layer:
                continue
            if node.feature is None:
                error[row] = True
            else:
                features[row, node.feature] = True
    return features, error
