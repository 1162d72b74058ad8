"""Edges between the nodes of two consecutive SAE layers: how much of the score's change
runs from an upstream node through a downstream one.

Marks et al.'s linear edge, the downstream SAE's error term a node like its latents: for
an upstream node u and a downstream node d, summed over the patched positions of both,

    edge(u -> d) = (d score / d d) . (d d / d u) . (clean u - corrupted u)

at the corrupted run. d score / d d comes from the attribution pass
(`nodes.attribution_pass`). d d / d u comes from a forward in which the upstream
layer's features and error are leaves, written back as decode(features) + error, and
which stops once the downstream layer is split into encode(x) and x - decode(encode(x)):
one backward per downstream node, of its gradient times its value, gives its edges
from every upstream node.

An upstream node's edges to every downstream node (the error node included) add up to
its attribution when all its paths to the score run through the downstream layer's
patched positions: so with the anchors score; the replies score also reads the reply
tokens after the prompt, whose residuals are no nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

import torch

from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.circuits.nodes import (
    as_leaves,
    attribution_pass,
    by_layer,
    check_nodes,
    patched_positions,
    recorded,
)
from saefeatures.circuits.rewrite import Split, per_copy, sae_hooks
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import PreparedPair, scored_forward


class _Reached(Exception):
    """Raised once the downstream layer is split: nothing after it is needed."""


def _consecutive(
    saes: Sequence[CircuitSae], upstream: Sequence[Node], downstream: Sequence[Node]
) -> tuple[CircuitSae, CircuitSae]:
    """The upstream and downstream SAEs, checked to be one SAE layer apart."""
    sites = by_layer(saes)
    up_layers, down_layers = {n.layer for n in upstream}, {n.layer for n in downstream}
    if len(up_layers) != 1 or len(down_layers) != 1:
        raise SaefeaturesError(
            "an edge joins two SAE layers: give all upstream nodes at one layer and all "
            "downstream nodes at the next"
        )
    (up,), (down,) = up_layers, down_layers
    check_nodes(sites, [*upstream, *downstream])
    layers = sorted(sites)
    if layers[layers.index(up) + 1 :][:1] != [down]:
        raise SaefeaturesError(
            f"layer {down} is not the SAE layer after layer {up} (SAE layers: {layers}); "
            "give downstream nodes at the next SAE layer"
        )
    return sites[up], sites[down]


def _jacobian_pass(
    model: LoadedModel, pair: PreparedPair, score: Score, up: CircuitSae, down: CircuitSae
) -> tuple[Split, Split]:
    """The upstream layer's features and error as leaves at their corrupted values, and
    the downstream layer's split of the stream they make (in the graph; `[1, positions,
    ...]` both)."""
    rows = len(score.continuations)
    found: dict[str, Split] = {}

    def edit(site: CircuitSae, split: Split) -> Split:
        if site.layer == up.layer:
            leaves = found["upstream"] = as_leaves(split)
            return Split(per_copy(leaves.features, rows), per_copy(leaves.error, rows))
        found["downstream"] = Split(split.features[:1], split.error[:1])
        raise _Reached

    hooks = sae_hooks([up, down], patched_positions(pair), edit)
    with torch.enable_grad(), suppress(_Reached):
        scored_forward(model, pair.prefix(model), pair.corrupted, score, 1, hooks=hooks)
    return found["upstream"], found["downstream"]


def edge_effects(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    saes: Sequence[CircuitSae],
    upstream: Sequence[Node],
    downstream: Sequence[Node],
) -> dict[tuple[Node, Node], float]:
    """The edge from each upstream node (all at one SAE layer) to each downstream node (all
    at the next SAE layer), for the pairs asked for only."""
    if not upstream or not downstream:
        return {}
    up, down = _consecutive(saes, upstream, downstream)
    clean = recorded(model, pair, score, [up], clean=True)[up.layer]
    gradient = attribution_pass(model, pair, score, [down]).gradient[down.layer]
    leaves, reached = _jacobian_pass(model, pair, score, up, down)
    features_delta = clean.features[0].float() - leaves.features[0].detach()
    error_delta = clean.error[0].float() - leaves.error[0].detach()
    found: dict[tuple[Node, Node], float] = {}
    for target in dict.fromkeys(downstream):
        if target.feature is None:
            weighted = gradient.error * reached.error
        else:
            weighted = (
                gradient.features[..., target.feature] * reached.features[..., target.feature]
            )
        features_grad, error_grad = torch.autograd.grad(
            weighted.sum(), [leaves.features, leaves.error], retain_graph=True
        )
        through_features = (features_grad[0].float() * features_delta).sum(0)
        through_error = float((error_grad[0].float() * error_delta).sum())
        for source in upstream:
            found[(source, target)] = (
                through_error if source.feature is None else float(through_features[source.feature])
            )
    return found
