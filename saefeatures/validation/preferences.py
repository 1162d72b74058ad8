"""`saefeatures validate preferences`: do emotion vectors track what the model prefers to
do, and does steering an activity's tokens with an emotion change how much it is preferred?

The original study's test. For a seeded sample of ordered pairs of activities
(`corpora/activities.csv`), "Would you prefer to (A) ... or (B) ...?" is asked with the
answer prefilled to "(", and the logits of `A` and `B` at the next position give
P(A) = sigmoid(logit A - logit B). A Bradley-Terry model, fitted as a logistic regression
of those soft outcomes with a first-position term (so a bias for (A) is not credited to
the activities), gives each activity a strength, shown in Elo points, with a bootstrap
interval over pairs. Per layer and emotion, the vector's projection on each activity's
tokens (mean over its positions and over the prompts it appears in) is correlated with the
activity's Elo. Then a few activities are steered, one at a time and only on their own
tokens, with each emotion's direction and its top aligned SAE features at each scale; the
activity's Elo is refitted with its comparisons steered, and the shift is correlated
across emotions with the emotion's preference correlation at the steered layer.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import interventions, models, progress, stats
from saefeatures.config import project_data
from saefeatures.corpora import jsonl
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import PreferenceOptions
from saefeatures.store.database import Store
from saefeatures.store.read import VectorSet, read_vectors
from saefeatures.validation import choices
from saefeatures.validation.choices import Encoded

QUESTION_START, QUESTION_MIDDLE, QUESTION_END = "Would you prefer to (A) ", " or (B) ", "?"
ELO_BASE, ELO_PER_NAT = 1500.0, 400.0 / np.log(10.0)
RIDGE = 1e-3  # fixes the strengths' level (they sum to 0) and keeps the fit finite
CORRELATION_RESAMPLES = 200  # per layer and emotion: hundreds of correlations per run
KIND = "validation-preferences"


@dataclass(frozen=True)
class Activity:
    name: str
    category: str


# -- inputs ----------------------------------------------------------------------------


def shipped_activities() -> Path:
    return project_data("corpora") / "activities.csv"


def read_activities(path: Path | None = None) -> list[Activity]:
    """`activity,category` rows under that header; a malformed line names its number."""
    path = path or shipped_activities()
    found = jsonl.read_entries(
        path,
        "activities file",
        _activity_of_line,
        "activity",
        lambda a: a.name,
        header=_check_header,
    )
    if len(found) < 3:
        raise SaefeaturesError(f"activities file {path}: need at least 3 activities")
    return found


def _check_header(where: str, line: str) -> None:
    if _fields(line) != ["activity", "category"]:
        raise SaefeaturesError(f"{where}: the first line must be activity,category")


def _activity_of_line(where: str, line: str) -> Activity:
    fields = _fields(line)
    if len(fields) != 2 or not all(fields):
        raise SaefeaturesError(f"{where}: expected `activity,category`, two non-empty fields")
    return Activity(*fields)


def _fields(line: str) -> list[str]:
    return [field.strip() for field in next(csv.reader([line]))]


def sample_pairs(n_items: int, n_pairs: int, seed: int) -> np.ndarray:
    """`[pairs, 2]` (first, second): a seeded sample of the ordered pairs, or all of them."""
    ordered = np.array([(i, j) for i in range(n_items) for j in range(n_items) if i != j])
    if n_pairs >= len(ordered):
        return ordered
    chosen = np.random.default_rng(seed).choice(len(ordered), n_pairs, replace=False)
    return ordered[np.sort(chosen)]


def _check_coverage(pairs: np.ndarray, activities: list[Activity]) -> None:
    """Every activity needs a comparison, or it has no score to correlate."""
    seen = set(pairs.ravel().tolist())
    unseen = [a.name for i, a in enumerate(activities) if i not in seen]
    if unseen:
        raise SaefeaturesError(
            f"{len(unseen)} activities are never compared (e.g. {unseen[0]!r}); raise --pairs"
        )


# -- Bradley-Terry ---------------------------------------------------------------------


def fit_bradley_terry(
    first: np.ndarray, second: np.ndarray, p_first: np.ndarray, n_items: int
) -> tuple[np.ndarray, float]:
    """Strengths θ (natural log, summing to 0) and the first-position bias b of
    P(first preferred) = sigmoid(b + θ_first - θ_second), by Newton's method on the
    log-likelihood of the soft outcomes `p_first`, with a small ridge on θ."""
    design = np.zeros((len(first), n_items + 1))
    rows = np.arange(len(first))
    design[rows, first] += 1.0
    design[rows, second] -= 1.0
    design[:, -1] = 1.0
    penalty = np.diag(np.r_[np.full(n_items, RIDGE), 0.0])
    weights = np.zeros(n_items + 1)
    for _ in range(100):
        predicted = choices.sigmoid(design @ weights)
        gradient = design.T @ (p_first - predicted) - penalty @ weights
        curvature = design.T @ (design * (predicted * (1 - predicted))[:, None]) + penalty
        step = np.linalg.solve(curvature, gradient)
        weights += step
        if np.max(np.abs(step)) < 1e-10:
            break
    strengths = weights[:-1]
    return strengths - strengths.mean(), float(weights[-1])


def elo(strengths: np.ndarray) -> np.ndarray:
    return ELO_BASE + ELO_PER_NAT * strengths


def fitted_elo(pairs: np.ndarray, p_first: np.ndarray, n_items: int) -> np.ndarray:
    return elo(fit_bradley_terry(pairs[:, 0], pairs[:, 1], p_first, n_items)[0])


def resampled_elo(pairs: np.ndarray, p_first: np.ndarray, n_items: int) -> np.ndarray:
    """The Elo of a bootstrap resample of the pairs, NaN for an activity no resampled pair
    compares: the ridge alone would set its strength, so that resample is left out of its
    interval (the strengths of the compared ones sum to 0, as in the full fit)."""
    found = fitted_elo(pairs, p_first, n_items)
    found[~np.isin(np.arange(n_items), pairs)] = np.nan
    return found


# -- prompts and projections -----------------------------------------------------------


def pair_prompt(model: models.LoadedModel, first: str, second: str) -> Encoded:
    """The question with both activities' token positions (spans 0 and 1)."""
    question = f"{QUESTION_START}{first}{QUESTION_MIDDLE}{second}{QUESTION_END}"
    text = choices.answer_prompt(model, question)
    start = text.index(question) + len(QUESTION_START)
    middle = start + len(first) + len(QUESTION_MIDDLE)
    return choices.encode(
        model, text, [(start, start + len(first)), (middle, middle + len(second))]
    )


class ActivityMeans:
    """Running mean residual over each activity's tokens, per captured layer."""

    def __init__(self, rows: list[Encoded], pairs: np.ndarray, n_items: int, layers: list[int]):
        self.rows, self.pairs, self.layers = rows, pairs, layers
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(n_items)

    def read(self, chunk, captured: dict[int, torch.Tensor]) -> None:
        stacked = torch.stack([captured[layer] for layer in self.layers], dim=1)  # b, L, pos, d
        if self.sums is None:
            self.sums = np.zeros((len(self.counts), len(self.layers), stacked.shape[-1]))
        for row, index in enumerate(chunk):
            for side in (0, 1):
                positions = self.rows[index].spans[side]
                mean = stacked[row, :, positions].mean(dim=1).cpu().numpy()
                self.sums[self.pairs[index, side]] += mean
                self.counts[self.pairs[index, side]] += 1

    def means(self) -> np.ndarray:
        """`[activities, layers, d]`."""
        return self.sums / self.counts[:, None, None]


def projections(means: np.ndarray, vector_set: VectorSet) -> np.ndarray:
    """`[activities, layers, emotions]`: each activity's mean residual on each vector."""
    return np.einsum("ald,eld->ale", means, vector_set.vectors)


def correlation_rows(
    projected: np.ndarray, scores: np.ndarray, vector_set: VectorSet, seed: int
) -> list[dict]:
    """Per layer and emotion: Pearson and Spearman r with the Elo, bootstrap CI of Pearson."""
    rows = []
    for li, layer in enumerate(vector_set.layers):
        for ei, emotion in enumerate(vector_set.emotions):
            x = projected[:, li, ei]
            low, high = stats.bootstrap_ci(
                x, scores, stats.pearson_rows, CORRELATION_RESAMPLES, seed=seed
            )
            rows.append(
                {
                    "layer": layer,
                    "emotion": emotion,
                    "activities": len(x),
                    "pearson_r": stats.pearson(x, scores),
                    "spearman_r": stats.spearman(x, scores),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return rows


def strongest(correlations: list[dict]) -> list[dict]:
    """Per layer, the emotions with the most positive and the most negative r."""
    by_layer: dict[int, list[dict]] = {}
    for row in correlations:
        by_layer.setdefault(row["layer"], []).append(row)
    return [
        {
            "layer": layer,
            "positive": max(rows, key=lambda r: r["pearson_r"])["emotion"],
            "positive_r": max(r["pearson_r"] for r in rows),
            "negative": min(rows, key=lambda r: r["pearson_r"])["emotion"],
            "negative_r": min(r["pearson_r"] for r in rows),
        }
        for layer, rows in by_layer.items()
    ]


# -- steering one activity's tokens ----------------------------------------------------


@dataclass(frozen=True)
class SteeredRows:
    """Each target activity's prompts, with the target's token positions in each."""

    targets: list[int]
    target_of_row: np.ndarray  # which target each steered row belongs to
    prompt_of_row: np.ndarray  # index into the unsteered prompts
    positions: list[list[int]]


def steered_rows(rows: list[Encoded], pairs: np.ndarray, targets: list[int]) -> SteeredRows:
    target_of, prompt_of, positions = [], [], []
    for target in targets:
        for index in np.flatnonzero((pairs == target).any(axis=1)):
            side = 0 if pairs[index, 0] == target else 1
            target_of.append(target)
            prompt_of.append(index)
            positions.append(rows[index].spans[side])
    return SteeredRows(targets, np.array(target_of), np.array(prompt_of), positions)


def steering_for(layer: int, edit: Any, steered: SteeredRows) -> choices.Steering:
    """The edit at the layer, only on each row's target tokens."""

    def make(batch: choices.Batch, chunk) -> list[interventions.Intervention]:
        mask = choices.positions_mask([steered.positions[i] for i in chunk], batch.ids.shape[1])
        return [interventions.Intervention.at(layer, edit, token_mask=mask)]

    return make


def target_shifts(
    pairs: np.ndarray,
    p_base: np.ndarray,
    base_elo: np.ndarray,
    steered: SteeredRows,
    p_steered: np.ndarray,
) -> list[tuple[int, float, float]]:
    """Per target: (target, Elo before, Elo after) with only its comparisons steered;
    `base_elo` is the fit of the unsteered `p_base`."""
    shifts = []
    for target in steered.targets:
        mine = steered.target_of_row == target
        changed = p_base.copy()
        changed[steered.prompt_of_row[mine]] = p_steered[mine]
        after = fitted_elo(pairs, changed, len(base_elo))[target]
        shifts.append((target, float(base_elo[target]), float(after)))
    return shifts


# -- the stage -------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceResult:
    """One preferences run: Elo per activity (with the first-position bias), the emotion
    projections that track Elo best per layer, the steered shifts and their effects."""

    run_id: str
    model: str
    layer: int
    norm: float
    pairs: int
    bias: float
    scores: list[dict[str, Any]]
    strongest: list[dict[str, Any]]
    shifts: list[dict[str, Any]]
    effects: list[dict[str, Any]]


def preferences(
    store: Store, options: PreferenceOptions, model: LoadedModel | None = None
) -> PreferenceResult:
    """Scores, Elo with intervals, per-layer correlations, and steered shifts; stored."""
    activities = read_activities(options.activities)
    pairs = sample_pairs(len(activities), options.pairs, options.seed)
    _check_coverage(pairs, activities)
    setup = choices.check_setup(store, options)
    vector_set = read_vectors(store, setup.spec.name, options.corpus, options.method)
    targets = _targets(len(activities), options)
    config = _run_config(options, setup, activities, pairs, targets)
    with store.run("validate preferences", config, atomic=True) as run_id:
        model = models.load(
            setup.spec.name, dtype=options.dtype, device=options.device, loaded=model
        )
        rows = [pair_prompt(model, activities[i].name, activities[j].name) for i, j in pairs]
        means = ActivityMeans(rows, pairs, len(activities), vector_set.layers)
        logits = choices.letter_logits(
            model, rows, options.batch_size, capture=vector_set.layers, read=means.read
        )
        p_first = choices.first_probability(logits)
        strengths, bias = fit_bradley_terry(pairs[:, 0], pairs[:, 1], p_first, len(activities))
        scores = _score_rows(activities, pairs, p_first, strengths, options)
        scored = np.array([row["elo"] for row in scores])
        correlations = correlation_rows(
            projections(means.means(), vector_set), scored, vector_set, options.seed
        )
        norm = choices.neutral_norm(store, model, setup.layer)
        asked = Asked(activities, pairs, rows, p_first, elo(strengths))
        compared = _comparison_rows(activities, pairs, logits, "none", None, None, 0.0, None)
        steerers = choices.levers(store, setup, options, norm)
        steered_comparisons, shifts = _steer(model, asked, targets, setup, steerers, options)
        compared += steered_comparisons
        effects = effect_rows(shifts, correlations, setup.layer)
        _store_results(store, run_id, setup, compared, scores, correlations, shifts, effects)
    return PreferenceResult(
        run_id,
        setup.spec.name,
        setup.layer,
        norm,
        len(pairs),
        bias,
        scores,
        strongest(correlations),
        shifts,
        effects,
    )


@dataclass(frozen=True)
class Asked:
    """The unsteered questions: activities, pairs, their prompts, P(A) and the Elo fitted."""

    activities: list[Activity]
    pairs: np.ndarray
    rows: list[Encoded]
    p_first: np.ndarray
    elo: np.ndarray


def _steer(model, asked: Asked, targets, setup, steerers, options) -> tuple[list, list]:
    """Each lever at each scale on each target's tokens: the steered questions, and each
    target's Elo shift with only its own comparisons steered."""
    steered = steered_rows(asked.rows, asked.pairs, targets)
    prompts = [asked.rows[i] for i in steered.prompt_of_row]
    compared, shifts = [], []
    for lever, scale in progress.track(
        [(lever, scale) for lever in steerers for scale in setup.scales], "steering activities"
    ):
        steering = steering_for(setup.layer, lever.make(scale), steered)
        found = choices.letter_logits(model, prompts, options.batch_size, steering)
        compared += _steered_comparisons(
            asked.activities, asked.pairs, steered, found, lever, scale
        )
        p_steered = choices.first_probability(found)
        moved = target_shifts(asked.pairs, asked.p_first, asked.elo, steered, p_steered)
        shifts += [
            {
                "level": lever.level,
                "emotion": lever.emotion,
                "k": lever.k,
                "scale": scale,
                "activity": asked.activities[t].name,
                "elo_base": before,
                "elo_steered": after,
                "shift": after - before,
            }
            for t, before, after in moved
        ]
    return compared, shifts


def _targets(n_items: int, options: PreferenceOptions) -> list[int]:
    count = min(options.steer_activities, n_items)
    rng = np.random.default_rng(options.seed + 1)
    return sorted(rng.choice(n_items, count, replace=False).tolist())


def _run_config(
    options: PreferenceOptions,
    setup: choices.Setup,
    activities: list[Activity],
    pairs: np.ndarray,
    targets: list[int],
) -> dict[str, Any]:
    """The run's recorded configuration: the options and what they resolved to."""
    return {
        **asdict(options),
        "model": setup.spec.name,
        "layer": setup.layer,
        "activities": str(options.activities or "shipped"),
        "pairs": len(pairs),
        "targets": [activities[t].name for t in targets],
        "sae": setup.sae_row and setup.sae_row["sae_id"],
    }


def _store_results(
    store: Store,
    run_id: str,
    setup: choices.Setup,
    compared: list[dict],
    scores: list[dict],
    correlations: list[dict],
    shifts: list[dict],
    effects: list[dict],
) -> None:
    """Replace the model's preference tables and its rows in `comparisons` with this run's."""
    common = {"run_id": run_id, "model": setup.spec.name}
    layered = {**common, "layer": setup.layer}
    where = {"model": setup.spec.name}
    store.replace_all(
        [
            ("preference_comparisons", where, _table(layered, compared)),
            ("preference_scores", where, _table(common, scores)),
            ("preference_correlations", where, _table(common, correlations)),
            ("preference_steering", where, _table(layered, shifts)),
            ("comparisons", {**where, "kind": KIND}, _table(layered, effects)),
        ]
    )


def _table(common: dict, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{**common, **row} for row in rows])


def _score_rows(activities, pairs, p_first, strengths, options: PreferenceOptions) -> list[dict]:
    """Elo per activity (of the fitted `strengths`) with its bootstrap interval over the
    compared pairs."""
    n_items = len(activities)
    low, high = choices.bootstrap_intervals(
        len(pairs),
        lambda idx: resampled_elo(pairs[idx], p_first[idx], n_items),
        options.resamples,
        options.seed,
    )
    counts = np.bincount(pairs.ravel(), minlength=n_items)
    return [
        {
            "activity": a.name,
            "category": a.category,
            "comparisons": int(counts[i]),
            "strength": float(strengths[i]),
            "elo": float(elo(strengths[i])),
            "ci_low": float(low[i]),
            "ci_high": float(high[i]),
        }
        for i, a in enumerate(activities)
    ]


def _comparison_rows(activities, pairs, logits, level, emotion, k, scale, target) -> list[dict]:
    diff = logits[:, 0] - logits[:, 1]
    return [
        {
            "level": level,
            "emotion": emotion,
            "k": k,
            "scale": scale,
            "target": target,
            "first_activity": activities[i].name,
            "second_activity": activities[j].name,
            "logit_diff": float(d),
            "p_first": float(choices.sigmoid(d)),
        }
        for (i, j), d in zip(pairs, diff, strict=True)
    ]


def _steered_comparisons(activities, pairs, steered: SteeredRows, logits, lever, scale):
    rows = []
    for target in steered.targets:
        mine = steered.target_of_row == target
        rows += _comparison_rows(
            activities,
            pairs[steered.prompt_of_row[mine]],
            logits[mine],
            lever.level,
            lever.emotion,
            lever.k,
            scale,
            activities[target].name,
        )
    return rows


def effect_rows(shifts: list[dict], correlations: list[dict], layer: int) -> list[dict]:
    """For `comparisons`: each emotion's mean Elo shift per scale (direction vs features),
    and per scale the correlation across emotions of that shift with the emotion's
    preference correlation at the steered layer, as the original study reported."""
    means: dict[tuple, list[float]] = {}
    for row in shifts:
        means.setdefault((row["level"], row["emotion"], row["k"], row["scale"]), []).append(
            row["shift"]
        )
    mean_rows = [
        {
            "level": level,
            "emotion": emotion,
            "k": k,
            "scale": scale,
            "mean_shift": float(np.mean(values)),
        }
        for (level, emotion, k, scale), values in means.items()
    ]
    rows = choices.level_comparisons(KIND, mean_rows, "mean_shift", "mean Elo shift")
    r_at_layer = {c["emotion"]: c["pearson_r"] for c in correlations if c["layer"] == layer}
    for scale in sorted({row["scale"] for row in mean_rows}):
        by_level = {
            level: _shift_vs_r(
                [m for m in mean_rows if m["level"] == level and m["scale"] == scale], r_at_layer
            )
            for level in ("direction", "features")
        }
        rows.append(
            {
                "kind": KIND,
                "other_model": None,
                "metric": f"Elo shift vs preference r across emotions (scale {scale})",
                "direction_value": by_level["direction"],
                "feature_value": by_level["features"],
                "extra": None,
            }
        )
    return rows


def _shift_vs_r(rows: list[dict], r_at_layer: dict[str, float]) -> float | None:
    """Pearson r over emotions; undefined (None) for fewer than 3 or constant values."""
    if len(rows) < 3:
        return None
    shift = np.array([row["mean_shift"] for row in rows])
    r = np.array([r_at_layer[row["emotion"]] for row in rows])
    if np.ptp(shift) == 0 or np.ptp(r) == 0:
        return None
    return stats.pearson(shift, r)
