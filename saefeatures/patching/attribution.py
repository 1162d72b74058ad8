"""Attribution patching over SAE features: which features carry the news at a layer?

At a layer with an SAE, the corrupted run's residual at the patched positions is
rewritten as decode(features) + error, both leaves of the autograd graph, so one
backward pass gives the score's gradient for every feature and for the SAE error (its
own node). A node's attribution is its gradient times its clean - corrupted difference,
summed over the patched positions: the first-order estimate of the effect of patching
that node alone (Syed et al.'s attribution patching, Marks et al.'s error nodes).

The estimate is then checked by exact patching, in one batched forward per pair:
- the whole residual at the patched positions (the layer's patching effect);
- the top-k features by attribution towards the clean run, k in TOP_KS, with the
  corrupted error kept: `recovered` = their effect / the layer's effect (faithfulness);
- each of the VERIFIED best features alone, and the error node alone, whose exact
  effects sit next to their attributions in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from saefeatures import interventions
from saefeatures.interventions import Intervention, Patch
from saefeatures.models import LoadedModel
from saefeatures.patching.conclusions import correlation
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import PreparedPair, patch_positions, rows_of
from saefeatures.patching.sweeps import scored_forward as forward

TOP_KS = (1, 5, 20, 100)
VERIFIED = 10


@dataclass
class FeatureSide:
    """One run's SAE view at the patched positions: features [n, d_sae], error [n, d]."""

    acts: torch.Tensor
    error: torch.Tensor


@dataclass
class FeaturePatch:
    """Attribution per feature and for the error node, and the exact checks."""

    attribution: torch.Tensor  # [d_sae]
    error_attribution: float
    changed: torch.Tensor  # feature ids whose activation differs between the runs
    layer_effect: float  # patching the whole residual at the patched positions
    top_k_effects: dict[int, float]
    random_k_effects: dict[int, float]  # k changed features drawn at random: the baseline
    verified: dict[int, float]  # feature id -> exact effect of patching it alone
    error_effect: float


def _side(sae: Any, residual: torch.Tensor) -> FeatureSide:
    return FeatureSide(*interventions.sae_split(sae, residual))


def _replace(
    hook: str, positions: list[int], rows: list[torch.Tensor], score: Score
) -> list[Intervention]:
    """Patches writing rows[i] (a [positions, d] residual) into copy i's rows."""
    return [
        Intervention(hook, Patch(row, positions), rows=rows_of(index, score))
        for index, row in enumerate(rows)
    ]


@torch.no_grad()
def _capture(
    model: LoadedModel, pair: PreparedPair, tokens: torch.Tensor, hook: str, score: Score
) -> torch.Tensor:
    taken: dict[str, torch.Tensor] = {}

    def take(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        taken["x"] = activation[0, : len(tokens)].detach().clone()
        return activation

    forward(model, pair.prefix(model), tokens, score, 1, hooks=[(hook, take)])
    return taken["x"]


def attribute(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    sae: Any,
    hook: str,
    corrupted_score: float,
    gap: float,
) -> FeaturePatch:
    """Attribution of every feature and of the error at `hook`, checked by exact patches;
    `gap` (clean - corrupted score) says which way is towards the clean run."""
    targets, origins = zip(*patch_positions(pair), strict=True)
    targets, origins = list(targets), list(origins)
    with torch.no_grad():
        clean = _side(sae, _capture(model, pair, pair.clean, hook, score)[origins])
        corrupted = _side(sae, _capture(model, pair, pair.corrupted, hook, score)[targets])
    acts = corrupted.acts.detach().clone().requires_grad_(True)
    error = corrupted.error.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        rebuilt = Intervention(hook, Patch(sae.decode(acts) + error, targets))
        value = forward(model, pair.prefix(model), pair.corrupted, score, 1, [rebuilt])
        acts_grad, error_grad = torch.autograd.grad(value.sum(), [acts, error])
    delta = (clean.acts - corrupted.acts).float()
    attribution = (acts_grad.float() * delta).sum(0)
    error_attribution = float((error_grad.float() * (clean.error - corrupted.error).float()).sum())
    changed = torch.nonzero(delta.abs().sum(0)).flatten()
    return _exact(
        model,
        pair,
        score,
        sae,
        hook,
        (clean, corrupted),
        attribution,
        changed,
        error_attribution,
        corrupted_score,
        gap,
        targets,
    )


@torch.no_grad()
def _exact(
    model: LoadedModel,
    pair: PreparedPair,
    score: Score,
    sae: Any,
    hook: str,
    sides: tuple[FeatureSide, FeatureSide],
    attribution: torch.Tensor,
    changed: torch.Tensor,
    error_attribution: float,
    corrupted_score: float,
    gap: float,
    targets: list[int],
) -> FeaturePatch:
    clean, corrupted = sides
    towards = 1.0 if gap >= 0 else -1.0
    ranked = changed[torch.argsort(attribution[changed] * towards, descending=True)]
    strongest = changed[torch.argsort(attribution[changed].abs(), descending=True)][:VERIFIED]

    def with_clean(features: torch.Tensor) -> torch.Tensor:
        acts = corrupted.acts.clone()
        acts[:, features] = clean.acts[:, features]
        return sae.decode(acts) + corrupted.error

    drawn = changed[torch.randperm(len(changed), generator=torch.Generator().manual_seed(0))]
    variants = [sae.decode(clean.acts) + clean.error]
    variants += [with_clean(ranked[:k]) for k in TOP_KS]
    variants += [with_clean(drawn[:k]) for k in TOP_KS]
    variants += [with_clean(feature[None]) for feature in strongest]
    variants.append(sae.decode(corrupted.acts) + clean.error)
    patches = _replace(hook, targets, variants, score)
    effects = forward(model, pair.prefix(model), pair.corrupted, score, len(variants), patches)
    effects = (effects.float() - corrupted_score).tolist()
    return FeaturePatch(
        attribution=attribution,
        error_attribution=error_attribution,
        changed=changed,
        layer_effect=effects[0],
        top_k_effects=dict(zip(TOP_KS, effects[1:], strict=False)),
        random_k_effects=dict(zip(TOP_KS, effects[1 + len(TOP_KS) :], strict=False)),
        verified=dict(zip(strongest.tolist(), effects[1 + 2 * len(TOP_KS) : -1], strict=True)),
        error_effect=effects[-1],
    )


def rows(
    result: FeaturePatch, described: dict[str, Any], gap: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One pair's `feature_patching` rows (changed features + the error node) and its
    `patching_faithfulness` rows (one per k); `described` names model, SAE, layer, pair."""
    scaled = lambda value: value / gap if gap else None  # noqa: E731
    features = [
        {
            **described,
            "node": "feature",
            "feature": feature,
            "attribution": float(result.attribution[feature]),
            "normalized_attribution": scaled(float(result.attribution[feature])),
            "exact_effect": result.verified.get(feature),
            "normalized_exact": scaled(result.verified[feature])
            if feature in result.verified
            else None,
        }
        for feature in result.changed.tolist()
    ]
    features.append(
        {
            **described,
            "node": "error",
            "feature": None,
            "attribution": result.error_attribution,
            "normalized_attribution": scaled(result.error_attribution),
            "exact_effect": result.error_effect,
            "normalized_exact": scaled(result.error_effect),
        }
    )
    layer = result.layer_effect
    faithfulness = [
        {
            **described,
            "k": k,
            "effect": effect,
            "layer_effect": layer,
            "gap": gap,
            "recovered": recovered(effect, layer),
            "random_effect": result.random_k_effects[k],
            "random_recovered": recovered(result.random_k_effects[k], layer),
        }
        for k, effect in result.top_k_effects.items()
    ]
    return features, faithfulness


def recovered(effect: float, layer_effect: float) -> float | None:
    """The share of the whole layer's patching effect that a set of features recovers,
    clipped to [0, 1] (away from the clean run: 0; past the whole layer: 1); None where
    the layer has no effect."""
    if not layer_effect:
        return None
    return float(np.clip(effect / layer_effect, 0.0, 1.0))


def within_pair_correlation(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Attribution against exact effect, correlated within each pair (pairs differ in their
    score gaps, which a pooled correlation would mistake for agreement): the median r over
    pairs with at least 3 verified features, and how many pairs that is."""
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_pair.setdefault(row["pair_id"], []).append(row)
    found = []
    for pair_rows in by_pair.values():
        fit = correlation(
            np.array([r["attribution"] for r in pair_rows]),
            np.array([r["exact_effect"] for r in pair_rows]),
        )
        if fit is not None and len(pair_rows) >= 3:
            found.append(fit["r"])
    if not found:
        return None
    return {"r": float(np.median(found)), "pairs": len(found)}


def summarize(
    feature_rows: list[dict[str, Any]], faithfulness_rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per SAE and condition: faithfulness by k, how well attribution predicts the exact
    single-node effects, the error node's share, and the features with the largest mean
    normalized attribution (the condition's top features)."""
    out = []
    for sae_id, condition in dict.fromkeys((r["sae_id"], r["condition"]) for r in feature_rows):
        mine = [r for r in feature_rows if (r["sae_id"], r["condition"]) == (sae_id, condition)]
        kept = [
            r for r in faithfulness_rows if (r["sae_id"], r["condition"]) == (sae_id, condition)
        ]
        pairs = {r["pair_id"] for r in mine}
        checked = [r for r in mine if r["node"] == "feature" and r["exact_effect"] is not None]
        totals: dict[int, float] = {}
        for r in mine:
            if r["node"] == "feature" and r["normalized_attribution"] is not None:
                totals[r["feature"]] = totals.get(r["feature"], 0.0) + r["normalized_attribution"]
        top = sorted(totals.items(), key=lambda item: -item[1])[:5]
        errors = [
            r["normalized_exact"]
            for r in mine
            if r["node"] == "error" and r["normalized_exact"] is not None
        ]
        out.append(
            {
                "sae_id": sae_id,
                "layer": mine[0]["layer"],
                "condition": condition,
                "pairs": len(pairs),
                # Lists in TOP_KS order: the summary goes through JSON, where int keys
                # would come back as strings.
                "recovered": [_median_of(kept, k, "recovered") for k in TOP_KS],
                "random_recovered": [_median_of(kept, k, "random_recovered") for k in TOP_KS],
                "attribution_vs_exact": within_pair_correlation(checked),
                "error_effect": float(np.median(errors)) if errors else None,
                "top_features": [(feature, total / len(pairs)) for feature, total in top],
            }
        )
    return out


def _median_of(rows: list[dict[str, Any]], k: int, column: str) -> float:
    """The median of a faithfulness column over the pairs at one k (NaN where none)."""
    values = [r[column] if r[column] is not None else np.nan for r in rows if r["k"] == k]
    return float(np.nanmedian(values)) if values else float("nan")
