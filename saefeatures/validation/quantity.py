"""The quantity test (`saefeatures validate quantity`): does an emotion's reading track a
situation's stakes rather than its words?

Each prompt family changes only a number (a dose, a height, a debt). In half the families
danger rises with the number, in the other half it falls, each falling family on the same
numbers as a rising one and about as long, so that a reading drifting with the number's
size, its digits or the prompt's length cancels. Per family, the final token of each prompt
(chat-formatted for instruct models) is read at every layer: its projection on each
emotion's direction, and the signed summed activation of the emotion's top aligned SAE
features. Spearman's rho with the quantity order measures the trend, signed by the
family's stakes ("danger rho"), and averaged over families.

The claim is the mean danger rho at one layer fixed in advance (the steering layer, a
third of the depth by default): is it larger than that of directions drawn at random in
the span of the emotion vectors, read out the same way (`p_value`), and than isotropic
random directions (`p_random`)? At the feature level the nulls are the top-k features of
such directions and random k-feature sets. Other layers are descriptive. The source study
saw afraid rise and calm fall with danger, on families whose danger only rose.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from saefeatures import models, stats
from saefeatures.config import project_data
from saefeatures.corpora import jsonl
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import QuantityOptions
from saefeatures.store.database import Store
from saefeatures.validation import readouts

STAKES = {"rise": 1.0, "fall": -1.0}  # the sign that turns rho with the number into danger
PLACEHOLDER = "{q}"
KIND = "validation-quantity"
MIN_QUANTITIES = 3


def shipped_prompts() -> Path:
    return project_data("corpora") / "quantity.jsonl"


# -- the prompt families -----------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    template: str
    quantities: list[float]
    stakes: str

    def prompts(self) -> list[str]:
        return [self.template.replace(PLACEHOLDER, shown(q)) for q in self.quantities]


def shown(quantity: float) -> str:
    """A number as a person writes it: 2000, not 2000.0; 0.5 as it is."""
    return str(int(quantity)) if float(quantity).is_integer() else f"{quantity:g}"


def read_families(path: Path) -> list[Family]:
    """Every family of a JSONL file; a malformed line is an error with its line number.
    Keys other than family, template, quantities and stakes (such as the shipped file's
    `unit`) are notes for a reader: the template writes the unit."""
    return jsonl.read_entries(path, "quantity file", _family_of_line, "family", lambda f: f.name)


def _family_of_line(where: str, line: str) -> Family:
    record = jsonl.object_of_line(where, line)
    name, template = record.get("family"), record.get("template")
    if not isinstance(name, str) or not name.strip():
        raise SaefeaturesError(f"{where}: `family` must be a non-empty string")
    if not isinstance(template, str) or template.count(PLACEHOLDER) != 1:
        raise SaefeaturesError(f"{where}: `template` must be a string with exactly one {{q}}")
    quantities = record.get("quantities")
    numbers = isinstance(quantities, list) and all(
        isinstance(q, int | float) and not isinstance(q, bool) and math.isfinite(q) and q > 0
        for q in quantities
    )
    if not numbers or len(quantities) < MIN_QUANTITIES:
        raise SaefeaturesError(
            f"{where}: `quantities` must be a list of at least {MIN_QUANTITIES} positive numbers"
        )
    if any(b <= a for a, b in pairwise(quantities)):
        raise SaefeaturesError(f"{where}: `quantities` must be strictly ascending")
    stakes = record.get("stakes", "rise")
    if stakes not in STAKES:
        raise SaefeaturesError(f"{where}: `stakes` must be one of {', '.join(STAKES)}")
    return Family(name.strip(), template, [float(q) for q in quantities], stakes)


# -- the statistics ----------------------------------------------------------------------


def _centered_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, minus their mean (ties share a rank)."""
    flat = values.reshape(-1, values.shape[-1])
    ranks = np.array([stats.rank(row) for row in flat]).reshape(values.shape)
    return ranks - ranks.mean(axis=-1, keepdims=True)


def order_correlation(values: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Spearman's rho of each series (last axis) with each order `[N, n]`: `[N, ...]`.

    The quantities ascend strictly, so their ranks are their positions, and pairing the
    series with a permuted order is Spearman's rho with a permuted quantity order. A
    constant series has no rho: NaN.
    """
    ranks = _centered_ranks(values)
    centered = orders - orders.mean(axis=-1, keepdims=True)
    products = np.einsum("kn,...n->k...", centered, ranks)
    norms = np.linalg.norm(centered, axis=-1).reshape(-1, *([1] * (values.ndim - 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return products / (norms * np.linalg.norm(ranks, axis=-1))


def spearman_with_order(values: np.ndarray) -> np.ndarray:
    """Spearman's rho of each series (last axis) with the ascending quantities."""
    return order_correlation(values, np.arange(values.shape[-1])[None])[0]


def permuted_orders(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permuted(np.tile(np.arange(n), (count, 1)), axis=1)


@dataclass(frozen=True)
class Trend:
    """Per family `[F, ...]`: Spearman's rho with the quantity and its two-sided p under
    the order null; and the null's draws signed by the family's stakes, `[N, F, ...]`."""

    rho: np.ndarray
    p_value: np.ndarray
    danger_null: np.ndarray


def family_trends(series: list[np.ndarray], signs: np.ndarray, n: int, seed: int) -> Trend:
    """Each family's `[..., n_f]` series against its quantity order, with its own null."""
    rng = np.random.default_rng(seed)
    rho, p, nulls = [], [], []
    for values, sign in zip(series, signs, strict=True):
        null = order_correlation(values, permuted_orders(values.shape[-1], n, rng))
        observed = spearman_with_order(values)
        rho.append(observed)
        p.append(readouts.upper_tail_p(np.abs(observed), np.abs(null)))
        nulls.append(sign * null)
    return Trend(np.stack(rho), np.stack(p), np.stack(nulls, axis=1))


def mean_danger(trend: Trend, signs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean danger-signed rho over families and its two-sided p (order permuted in every
    family); families whose series is constant are left out of both."""
    danger = signs.reshape(-1, *([1] * (trend.rho.ndim - 1))) * trend.rho
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means are NaN, as wanted
        observed = np.nanmean(danger, axis=0)
        null = np.nanmean(trend.danger_null, axis=1)
    return observed, readouts.upper_tail_p(np.abs(observed), np.abs(null))


# -- inputs ------------------------------------------------------------------------------


def check_inputs(store: Store, options: QuantityOptions) -> tuple[readouts.Plan, list[Family]]:
    families = read_families(options.prompts or shipped_prompts())
    return readouts.plan(store, options), families


def headline_layer(plan: readouts.Plan, options: QuantityOptions) -> int:
    """The layer of the claim: as asked, else the read layer nearest a third of the depth
    (where `saefeatures steer` steers by default)."""
    if options.headline_layer is not None:
        return options.headline_layer
    third = round(models.shape_of(plan.spec)["n_layers"] / 3)
    return min(plan.layers, key=lambda layer: abs(layer - third))


# -- nulls read out the same way ------------------------------------------------------------


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def null_directions(
    vectors: np.ndarray, count: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`[count, d]` unit directions: in the span of the emotion vectors `[E, d]` (random
    mixtures of them) and isotropic."""
    mixtures = rng.standard_normal((count, len(vectors))) @ vectors
    return {
        "subspace": unit_rows(mixtures),
        "random": unit_rows(rng.standard_normal((count, vectors.shape[1]))),
    }


def null_feature_weights(
    decoder: np.ndarray, directions: np.ndarray, k: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`[count, d_sae]` signed read-out weights: the top-k features of subspace-random
    directions by decoder cosine (signed as the real ones), and random k-feature sets."""
    cosines = unit_rows(directions) @ unit_rows(decoder).T
    top = np.argsort(-np.abs(cosines), axis=1)[:, :k]
    aligned = np.zeros_like(cosines)
    np.put_along_axis(aligned, top, np.sign(np.take_along_axis(cosines, top, axis=1)), axis=1)
    picked = np.argsort(rng.random(cosines.shape), axis=1)[:, :k]
    random = np.zeros_like(cosines)
    np.put_along_axis(random, picked, rng.choice([-1.0, 1.0], size=picked.shape), axis=1)
    return {"subspace": aligned, "random": random}


def mean_danger_of(values: np.ndarray, families: list[Family]) -> np.ndarray:
    """Mean danger rho over families of each column of `values` `[prompts, N]`: `[N]`."""
    bounds = np.cumsum([0] + [len(f.quantities) for f in families])
    rho = np.stack([spearman_with_order(values[a:b].T) for a, b in pairwise(bounds)])
    signs = np.array([STAKES[f.stakes] for f in families])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(signs * rho, axis=0)


# -- the stage ---------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class QuantityResult:
    """One quantity run: how many prompts were read, and the trend over families per
    emotion, level and layer (the `quantity_summary` rows)."""

    run_id: str
    model: str
    prompts: int
    summary: pa.Table


def run_test(
    store: Store, options: QuantityOptions, model: LoadedModel | None = None
) -> QuantityResult:
    """Read every prompt's final token at the chosen levels; trends per family and overall."""
    plan, families = check_inputs(store, options)
    config = {**readouts.run_config(plan, options), "families": [f.name for f in families]}
    with store.run("validate quantity", config, atomic=True) as run_id:
        model = models.load(
            plan.spec.name, dtype=options.dtype, device=options.device, loaded=model
        )
        sets = readouts.feature_sets(plan, options)
        prompts = [model.format_prompt(p) for f in families for p in f.prompts()]
        readout = readouts.read_out(
            model,
            prompts,
            plan.layers,
            [(s.layer, s.sae) for s in sets],
            readouts.final_token_weights,
            options.batch_size,
            chat_formatted=True,
        )
        levels = _levels(plan, sets, readout, families, options)
        at = headline_layer(plan, options)
        tables = {"quantity_scores": [], "quantity_results": [], "quantity_summary": []}
        for level, layers, values, nulls in levels:
            common = {"run_id": run_id, "model": plan.spec.name, **level}
            trends = _level_tables(
                common, layers, values, nulls, plan.emotions, families, options, at
            )
            for name, rows in trends.items():
                tables[name] += rows
        changes = [
            (name, {"model": plan.spec.name}, pa.Table.from_pylist(rows))
            for name, rows in tables.items()
        ]
        compared = _comparisons(run_id, tables["quantity_summary"], plan, len(families))
        changes.append(
            (
                "comparisons",
                {"kind": KIND, "model": plan.spec.name},
                readouts.table_or_none(compared),
            )
        )
        store.replace_all(changes)
    return QuantityResult(run_id, plan.spec.name, len(prompts), tables["quantity_summary"])


def _levels(
    plan: readouts.Plan,
    sets: list,
    readout: readouts.Readout,
    families: list[Family],
    options: QuantityOptions,
) -> list[tuple[dict, list[int], np.ndarray, list[dict[str, np.ndarray]]]]:
    """Each level's (columns, layers, read-outs `[prompts, layers, E]`, per layer the mean
    danger rho of its null directions or feature sets, read out the same way)."""
    rng = np.random.default_rng(options.seed)
    count = options.null_directions
    levels = []
    if plan.level != "features":
        nulls = []
        for li in range(len(plan.layers)):
            directions = null_directions(plan.vectors[:, li], count, rng)
            residual = readout.residual[:, li]
            nulls.append(
                {k: mean_danger_of(residual @ d.T, families) for k, d in directions.items()}
            )
        values = readouts.projections(readout.residual, plan.vectors)
        levels.append(
            ({"level": "direction", "sae_id": None, "k": None}, plan.layers, values, nulls)
        )
    for s, latents in zip(sets, readout.latents, strict=True):
        vectors = plan.vectors[:, plan.layers.index(s.layer)]
        directions = null_directions(vectors, count, rng)["subspace"]
        decoder = s.sae.W_dec.detach().float().cpu().numpy()
        weights = null_feature_weights(decoder, directions, s.k, rng)
        nulls = {kind: mean_danger_of(latents @ w.T, families) for kind, w in weights.items()}
        levels.append(
            (
                {"level": "features", "sae_id": s.sae_id, "k": s.k},
                [s.layer],
                s.read(latents)[:, None],
                [nulls],
            )
        )
    return levels


def _level_tables(
    common, layers, values, nulls, emotions, families, options, at
) -> dict[str, list]:
    """One level's rows: `values` are `[prompts, layers, E]` read-outs in family order;
    `nulls` per layer the null draws of the mean danger rho; `at` the headline layer."""
    bounds = np.cumsum([0] + [len(f.quantities) for f in families])
    series = [np.moveaxis(values[a:b], 0, -1) for a, b in pairwise(bounds)]
    signs = np.array([STAKES[f.stakes] for f in families])
    trend = family_trends(series, signs, options.permutations, options.seed)
    overall, overall_p = mean_danger(trend, signs)
    scores, results, summary = [], [], []
    for li, layer in enumerate(layers):
        for e, emotion in enumerate(emotions):
            where = {**common, "layer": layer, "emotion": emotion}
            for f, family in enumerate(families):
                scores += [
                    {
                        **where,
                        "family": family.name,
                        "quantity": q,
                        "value": float(series[f][li, e, i]),
                    }
                    for i, q in enumerate(family.quantities)
                ]
                rho = float(trend.rho[f, li, e])
                results.append(
                    {
                        **where,
                        "family": family.name,
                        "stakes": family.stakes,
                        "n_quantities": len(family.quantities),
                        "spearman_rho": _finite(rho),
                        "danger_rho": _finite(signs[f] * rho),
                        "p_value": _finite(trend.p_value[f, li, e]),
                    }
                )
            danger = signs * trend.rho[:, li, e]
            observed = overall[li, e]
            summary.append(
                {
                    **where,
                    "families": int(np.isfinite(danger).sum()),
                    "families_rising": int((danger > 0).sum()),
                    "mean_danger_rho": _finite(observed),
                    "p_value": stats.two_sided_p(observed, nulls[li]["subspace"]),
                    "p_random": stats.two_sided_p(observed, nulls[li]["random"]),
                    "p_order": _finite(overall_p[li, e]),
                    "headline": layer == at,
                }
            )
    return {"quantity_scores": scores, "quantity_results": results, "quantity_summary": summary}


def _comparisons(
    run_id: str, summary: list[dict], plan: readouts.Plan, families: int
) -> list[dict]:
    """At each SAE layer and per emotion: the mean danger rho of direction and features."""
    at = {(r["level"], r["layer"], r["emotion"]): r["mean_danger_rho"] for r in summary}
    return readouts.sae_layer_comparisons(
        run_id,
        KIND,
        plan,
        lambda level, layer: {f"mean_danger_rho:{e}": at[level, layer, e] for e in plan.emotions},
        {"families": families},
    )


def summarize(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per emotion: both levels at the headline layer (fixed in advance), and the features
    at any other SAE layer."""
    shown_rows = []
    for emotion in dict.fromkeys(r["emotion"] for r in summary):
        own = [r for r in summary if r["emotion"] == emotion and r["mean_danger_rho"] is not None]
        picked = [r for r in own if r["headline"] or r["level"] == "features"]
        shown_rows += [
            {
                "emotion": emotion,
                "level": r["level"],
                "layer": r["layer"],
                "mean danger rho": r["mean_danger_rho"],
                "p (span of the vectors)": r["p_value"],
                "p (random)": r["p_random"],
                "families rising": f"{r['families_rising']}/{r['families']}",
            }
            for r in picked
        ]
    return shown_rows
