"""The patching stage (`saefeatures patch`): where in the network does good vs bad news act?

For each prompt pair the clean prompt (good or bad news) and its neutral corrupted
prompt are scored with both reply scores (`reply_scores`), then clean activations are
patched into the corrupted run (`sweeps`): the residual stream before every layer at each
position where the two prompts' tokens differ and at the last (the score's position;
`--positions all`: every position after the shared prefix; only the last where the two
prompts tokenize to different lengths: the fallback, counted in the summary), and every
attention head's output at all positions after the shared prefix at once. Everything is
computed first and written in one transaction (`pair_scores`, `patching_results`),
replacing the model's earlier rows; the conclusions are defined in `conclusions`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import activations, models, progress
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import PatchOptions
from saefeatures.patching import attribution, conclusions, figures, reply_scores, sweeps
from saefeatures.patching.conclusions import CONDITIONS, Pair
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import residual_saes, saes_at


@dataclass(frozen=True)
class Patched:
    """One `patch` run: how many pairs over how many layers, the summary `tables` prints
    (peaks, flip test, feature recoveries) and the figures."""

    run_id: str
    model: str
    n_layers: int
    pairs: int
    summary: dict[str, Any]
    figures: list[str]


def patch(
    store: Store, out: Path, options: PatchOptions, model: LoadedModel | None = None
) -> Patched:
    """Score every pair, sweep the patches, store and draw the results, and summarise."""
    models.check_options(options.dtype, options.device)
    pairs = conclusions.first_situations(conclusions.read_pairs(options.pairs), options.limit)
    spec = models.resolve(options.model)
    sae_rows = _feature_saes(store, spec.name, options)
    config = {
        **asdict(options),
        "model": spec.name,
        "pairs": str(options.pairs or "shipped"),
        "saes": [row["sae_id"] for row in sae_rows],
    }
    with store.run("patch", config, atomic=True) as run_id:
        model = models.load(spec.name, dtype=options.dtype, device=options.device, loaded=model)
        scores = {name: reply_scores.make(model, name) for name in reply_scores.SCORES}
        saes = [(row, loading.read_saelens(Path(row["path"]), options.device)) for row in sae_rows]
        store.register_model(run_id, model.describe())
        chosen_on = conclusions.selection_situations(conclusions.read_pairs(options.pairs))
        results = _patch_pairs(model, pairs, scores, options, saes, chosen_on)
        tagged = {
            key: [
                {"run_id": run_id, "model": spec.name, **row}
                for result in results
                for row in result[key]
            ]
            for key in ("scores", "sweeps", "features", "faithfulness")
        }
        store.replace_all(_replacements(spec.name, options, sae_rows, tagged))
        summary = summarize(store, spec.name, model.n_layers, options.score)
    score_rows, sweep_rows = tagged["scores"], tagged["sweeps"]
    summary["features"] = attribution.summarize(tagged["features"], tagged["faithfulness"])
    folder = out / "patching" / spec.slug
    drawn = figures.draw(
        folder, spec.name, score_rows, sweep_rows, summary, model.n_layers, model.n_heads
    )
    drawn_files = [str(path) for path in drawn]
    return Patched(run_id, spec.name, model.n_layers, len(pairs), summary, drawn_files)


def _feature_saes(store: Store, model: str, options: PatchOptions) -> list[dict[str, Any]]:
    """The SAE of each layer patched at the feature level (one per layer, on resid_post)."""
    if options.level not in ("features", "all"):
        return []
    if options.layers is not None:
        n_layers = models.shape_of(models.resolve(model))["n_layers"]
        chosen = activations.select_layers(options.layers, n_layers, model)
        return [saes_at(store, model, layer, None)[0] for layer in chosen]
    found = residual_saes(store, model)
    if not found and options.level == "features":
        raise SaefeaturesError(
            f"no SAE for {model} on the residual stream; train one with `saefeatures train "
            f"--model {model} --layer L` or register one with `saefeatures load`"
        )
    return [rows[0] for _, rows in sorted(found.items())]  # each layer's first by id


def _replacements(
    model: str,
    options: PatchOptions,
    sae_rows: list[dict[str, Any]],
    tagged: dict[str, list[dict[str, Any]]],
) -> list[tuple[str, dict[str, Any], pa.Table]]:
    """What this run replaces: the model's pair scores, and each level it swept (a level
    not swept keeps its earlier rows)."""
    swept = {"all": ("resid", "heads"), "features": ()}.get(options.level, (options.level,))
    changes = [("pair_scores", {"model": model}, pa.Table.from_pylist(tagged["scores"]))]
    for level in swept:
        mine = [row for row in tagged["sweeps"] if row["level"] == level]
        changes.append(("patching_results", {"model": model, "level": level}, _sweep_table(mine)))
    for row in sae_rows:
        for table, key in (
            ("feature_patching", "features"),
            ("patching_faithfulness", "faithfulness"),
        ):
            mine = [r for r in tagged[key] if r["sae_id"] == row["sae_id"]]
            changes.append(
                (table, {"model": model, "sae_id": row["sae_id"]}, pa.Table.from_pylist(mine))
            )
    return changes


def _sweep_table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("model", pa.string()),
            ("level", pa.string()),
            ("pair_id", pa.string()),
            ("condition", pa.string()),
            ("layer", pa.int32()),
            ("position", pa.int32()),
            ("head", pa.int32()),
            ("effect", pa.float64()),
            ("normalized", pa.float64()),
            ("differs", pa.bool_()),
            ("extra", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


@dataclass
class _Swept:
    """One pair tokenized, its prompts run and swept: its grids of patched scores by level."""

    ids: tuple[torch.Tensor, torch.Tensor]  # clean, corrupted
    prepared: sweeps.PreparedPair
    prompts: sweeps.Prompts
    grids: dict[str, np.ndarray]


def _patch_pairs(
    model: models.LoadedModel,
    pairs: list[Pair],
    scores: dict[str, reply_scores.Score],
    options: PatchOptions,
    saes: list[tuple[dict[str, Any], Any]],
    chosen_on: set[str],
) -> list[dict[str, list[dict[str, Any]]]]:
    """Every pair's rows, in the pairs' order; the sweeps run in batches of pairs of
    similar suffix lengths (a batch pads its rows to its longest)."""
    encoded = [encode_pair(model, pair) for pair in pairs]
    results: list[dict[str, list[dict[str, Any]]]] = [{} for _ in pairs]
    with progress.bar("patching pairs", len(pairs)) as shown:
        for batch in sweeps.batches([(c.tolist(), x.tolist()) for c, x in encoded]):
            swept = _sweep(model, [encoded[i] for i in batch], scores, options)
            for index, one in zip(batch, swept, strict=True):
                pair = pairs[index]
                results[index] = _patch_pair(
                    model, pair, one, scores, options, saes, pair.situation in chosen_on
                )
                shown.advance()
    return results


def encode_pair(model: models.LoadedModel, pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean and corrupted prompts' token ids."""
    clean, corrupted = (
        model.encode([reply_scores.prompt_text(model, text)], chat_formatted=True)["input_ids"][0]
        for text in (pair.clean, pair.corrupted)
    )
    return clean, corrupted


def _sweep(
    model: models.LoadedModel,
    encoded: list[tuple[torch.Tensor, torch.Tensor]],
    scores: dict[str, reply_scores.Score],
    options: PatchOptions,
) -> list[_Swept]:
    """Run a batch of pairs' prompts, and sweep the levels asked for, all pairs at once."""
    prepared = [sweeps.prepare(model, c.tolist(), x.tolist()) for c, x in encoded]
    heads = options.level in ("heads", "all")
    prompts = sweeps.run_prompts(model, prepared, scores, options.score, heads)
    swept, every = scores[options.score], options.positions == "all"
    sweepers = {
        "resid": lambda: sweeps.resid_sweep(model, prepared, swept, prompts, every),
        "heads": lambda: sweeps.head_sweep(model, prepared, swept, prompts),
    }
    grids = {
        level: [g.float().cpu().numpy() for g in sweep()]
        for level, sweep in sweepers.items()
        if options.level in (level, "all")
    }
    return [
        _Swept(ids, p, prompt, {level: g[i] for level, g in grids.items()})
        for i, (ids, p, prompt) in enumerate(zip(encoded, prepared, prompts, strict=True))
    ]


def _patch_pair(
    model: models.LoadedModel,
    pair: Pair,
    swept: _Swept,
    scores: dict[str, reply_scores.Score],
    options: PatchOptions,
    saes: list[tuple[dict[str, Any], Any]],
    selection: bool,
) -> dict[str, list[dict[str, Any]]]:
    """One pair's scores, its residual and head sweep rows, and its feature-level patches."""
    prepared, values = swept.prepared, swept.prompts.values
    described = {"pair_id": pair.id, "condition": pair.condition}
    n_tokens = (len(swept.ids[0]), len(swept.ids[1]))
    score_rows = _score_rows(pair, described, scores, values, prepared, n_tokens, selection)
    clean_value, corrupted_value = values[options.score]
    gap = clean_value - corrupted_value
    sweep_rows = _sweep_rows(model, swept, options, described, corrupted_value, gap)
    features, faithfulness = _feature_rows(
        model, prepared, scores[options.score], saes, described, corrupted_value, gap
    )
    return {
        "scores": score_rows,
        "sweeps": sweep_rows,
        "features": features,
        "faithfulness": faithfulness,
    }


def _score_rows(
    pair: Pair,
    described: dict[str, Any],
    scores: dict[str, reply_scores.Score],
    values: dict[str, tuple[float, float]],
    prepared: sweeps.PreparedPair,
    n_tokens: tuple[int, int],
    selection: bool,
) -> list[dict[str, Any]]:
    """The pair's clean and corrupted prompt under every score, one row per score."""
    return [
        {
            **described,
            "situation": pair.situation,
            "topic": pair.topic,
            "score_name": name,
            "score_definition": scores[name].definition,
            "clean_score": c,
            "corrupted_score": x,
            "aligned": prepared.aligned,
            "prefix_length": prepared.prefix_length,
            "clean_tokens": n_tokens[0],
            "corrupted_tokens": n_tokens[1],
            "selection": selection,
        }
        for name, (c, x) in values.items()
    ]


def _sweep_rows(
    model: models.LoadedModel,
    swept: _Swept,
    options: PatchOptions,
    described: dict[str, Any],
    corrupted_value: float,
    gap: float,
) -> list[dict[str, Any]]:
    """The residual and head sweeps of the levels asked for, as one row per patch."""
    prepared = swept.prepared
    clean_ids, corrupted_ids = swept.ids
    extra = json.dumps({"score": options.score, "aligned": prepared.aligned})

    def differs(position: int | None) -> bool | None:
        if position is None or not prepared.aligned:
            return None
        return bool(clean_ids[position] != corrupted_ids[position])

    def rows(level: str, patched: np.ndarray, index: list[tuple[int, int | None, int | None]]):
        effects = patched - corrupted_value
        normalized = effects / gap if gap != 0 else np.full_like(effects, np.nan)
        return [
            {
                **described,
                "level": level,
                "layer": layer,
                "position": position,
                "head": head,
                "effect": float(e),
                "normalized": float(n),
                "differs": differs(position),
                "extra": extra,
            }
            for (layer, position, head), e, n in zip(index, effects, normalized, strict=True)
        ]

    sweep_rows = []
    if "resid" in swept.grids:
        every = options.positions == "all"
        positions = [
            prepared.prefix_length + target for target, _ in sweeps.resid_positions(prepared, every)
        ]
        index = [
            (layer, position, None) for layer in range(model.n_layers) for position in positions
        ]
        sweep_rows += rows("resid", swept.grids["resid"].ravel(), index)
    if "heads" in swept.grids:
        index = [
            (layer, None, head) for layer in range(model.n_layers) for head in range(model.n_heads)
        ]
        sweep_rows += rows("heads", swept.grids["heads"].ravel(), index)
    return sweep_rows


def _feature_rows(
    model: models.LoadedModel,
    prepared: sweeps.PreparedPair,
    swept: reply_scores.Score,
    saes: list[tuple[dict[str, Any], Any]],
    described: dict[str, Any],
    corrupted_value: float,
    gap: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The feature attributions and their faithfulness checks of every SAE patched."""
    features, faithfulness = [], []
    for row, sae in saes:
        result = attribution.attribute(
            model, prepared, swept, sae, row["hook"], corrupted_value, gap
        )
        at = {**described, "sae_id": row["sae_id"], "layer": row["layer"]}
        pair_features, pair_faithfulness = attribution.rows(result, at, gap)
        features += pair_features
        faithfulness += pair_faithfulness
    return features, faithfulness


# -- the conclusions ---------------------------------------------------------------------


def summarize(store: Store, model: str, n_layers: int, swept: str) -> dict[str, Any]:
    """Separation per score, peaks, the flip test and the features, from the store's
    patching tables and the `patching_peaks` view (the one definition of a peak)."""
    summary: dict[str, Any] = {"separation": _separation(store, model), "swept": swept}
    peaks = store.query(
        "SELECT condition, peak_layer, peak_depth, max_effect, score_gap FROM patching_peaks "
        "WHERE model = ? AND score_name = ? ORDER BY pair_id",
        [model, swept],
    ).to_pylist()
    by_condition = {c: [p for p in peaks if p["condition"] == c] for c in CONDITIONS}
    summary["peaks"] = {
        c: {
            "n": len(chosen),
            "layers": [p["peak_layer"] for p in chosen],
            "depths": [p["peak_depth"] for p in chosen],
            "effects": [p["max_effect"] for p in chosen],
            "gaps": [abs(p["score_gap"]) for p in chosen],
            "correlation": conclusions.correlation(
                np.array([p["max_effect"] for p in chosen]),
                np.array([abs(p["score_gap"]) for p in chosen]),
            ),
        }
        for c, chosen in by_condition.items()
        if chosen
    }
    summary["flips"] = flip_test(store, model, n_layers, swept)
    return summary


def _separation(store: Store, model: str) -> dict[str, dict[str, Any]]:
    """Per score, the clean prompts' own score by condition (right sign: good > 0, bad < 0);
    the `replies` score, whose reply set was chosen on the selection situations, is scored
    on the others only."""
    rows = store.query(
        "SELECT score_name, condition, clean_score, selection FROM pair_scores WHERE model = ?",
        [model],
    ).to_pylist()
    separation = {}
    for name in reply_scores.SCORES:
        chosen = [r for r in rows if r["score_name"] == name]
        if name == "replies":
            chosen = [r for r in chosen if not r["selection"]]
        if chosen:
            conditions = [r["condition"] for r in chosen]
            clean = np.array([r["clean_score"] for r in chosen])
            separation[name] = {"clean": conclusions.sign_summary(conditions, clean)}
    return separation


def flip_test(store: Store, model: str, n_layers: int, swept: str) -> dict[str, Any] | None:
    """The flip test: at a layer of the middle third chosen on the selection situations
    (where the patch moves the score furthest towards the clean prompt's, on average), does
    patching a good-news prompt push the score up and a bad-news one push it down? Scored
    on the other situations that have both conditions."""
    effects = store.query(
        "SELECT s.situation, s.condition, s.selection, r.layer, arg_max(r.effect, abs(r.effect)) "
        "AS effect, max(r.effect * sign(s.clean_score)) AS toward FROM patching_results r JOIN "
        "pair_scores s USING (model, pair_id) WHERE r.model = ? AND r.level = 'resid' AND "
        "r.differs AND s.score_name = ? AND s.clean_score <> 0 AND NOT isnan(r.effect) "
        "GROUP BY ALL",
        [model, swept],
    ).to_pylist()
    layer = conclusions.flip_layer(
        [(r["layer"], r["toward"]) for r in effects if r["selection"]], n_layers
    )
    scored: dict[str, dict[str, float]] = {}
    for r in effects:
        if r["layer"] == layer and not r["selection"]:
            scored.setdefault(r["situation"], {})[r["condition"]] = r["effect"]
    both = {name: e for name, e in scored.items() if set(e) == set(CONDITIONS)}
    if not both:
        return None
    flipped = conclusions.flips(
        np.array([e["good"] for e in both.values()]), np.array([e["bad"] for e in both.values()])
    )
    return {
        "layer": layer,
        "n": len(both),
        "flipped": int(flipped.sum()),
        "situations": dict(zip(both, flipped.tolist(), strict=True)),
    }


def tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The summary as printable tables: (title, columns, rows)."""
    separation = [
        [name, what, condition, f"{s['right']}/{s['n']}", s["mean"]]
        for name, kinds in summary["separation"].items()
        for what, by_condition in kinds.items()
        for condition, s in by_condition.items()
    ]
    out = [
        (
            "score separation (right sign: good > 0, bad < 0)",
            ["score", "of", "condition", "right sign", "mean"],
            separation,
        )
    ]
    peaks = summary.get("peaks")
    if peaks:
        out.append(
            (
                "peak layer of the residual patch, over the positions where the prompts "
                f"differ ({summary['swept']} score; gap: the clean prompt's own score)",
                [
                    "condition",
                    "prompts",
                    "median layer",
                    "median depth",
                    "depth IQR",
                    "max effect vs |gap| r",
                    "95% CI",
                ],
                [_peak_row(condition, peak) for condition, peak in peaks.items()],
            )
        )
    flips = summary.get("flips")
    if flips:
        rate = flips["flipped"] / flips["n"]
        columns = ["layer", "situations", "flipped", "rate"]
        rows = [[flips["layer"], flips["n"], flips["flipped"], rate]]
        out.append(
            (
                "flip test (layer chosen on the selection situations, scored on the others)",
                columns,
                rows,
            )
        )
    out += [_feature_table(level) for level in summary.get("features", [])]
    return out


def _feature_table(level: dict[str, Any]) -> tuple[str, list[str], list[list[Any]]]:
    """One SAE's feature-level patching results as a one-row table."""
    where = f"layer {level['layer']} features ({level['sae_id']})"
    check = level["attribution_vs_exact"]
    columns = [
        "condition",
        "pairs",
        *[f"recovered k={k} (random)" for k in attribution.TOP_KS],
        "attribution vs exact r (median within pair)",
        "error node effect",
        "top features (mean norm. attr.)",
    ]
    row = [
        level["condition"],
        level["pairs"],
        *[
            f"{top:.2f} ({random:.2f})"
            for top, random in zip(level["recovered"], level["random_recovered"], strict=True)
        ],
        check["r"] if check else "n/a",
        level["error_effect"] if level["error_effect"] is not None else "n/a",
        ", ".join(f"{f} ({v:+.2f})" for f, v in level["top_features"]),
    ]
    return where, columns, [row]


def _peak_row(condition: str, peak: dict[str, Any]) -> list[Any]:
    """One condition's line of the peak-layer table."""
    q1, q3 = np.quantile(peak["depths"], [0.25, 0.75])
    fit = peak["correlation"]
    return [
        condition,
        peak["n"],
        float(np.median(peak["layers"])),
        float(np.median(peak["depths"])),
        f"{q1:.2f}-{q3:.2f}",
        fit["r"] if fit else "n/a",
        f"[{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]" if fit else "n/a",
    ]
