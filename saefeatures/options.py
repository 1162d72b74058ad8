"""Every stage's options: typed fields, their defaults in one place, checked on creation.

The command line parses strings into these; Python code builds them directly. What
can be checked without a model or a store is checked here, in `__post_init__`, so a
bad value is refused before anything loads; a stage checks the rest (layer ranges,
what the store holds) before it writes anything. This module imports no torch, so
the command line can show every default in `--help` at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin, get_type_hints

from saefeatures.config import DEFAULT_CORPUS, DEFAULT_MODEL, project_data
from saefeatures.errors import SaefeaturesError

Dtype = Literal["auto", "float32", "bfloat16"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Level = Literal["direction", "features", "both"]
Method = Literal["denoised", "raw"]
PatchLevel = Literal["resid", "heads", "features", "all"]
ReplyScore = Literal["anchors", "replies"]
PatchPositions = Literal["differing", "all"]
Split = Literal["auto", "corpus", "passage", "topic"]
SaeFormat = Literal["saelens", "sparsify"]
HookSite = Literal["resid_post", "resid_pre", "mlp_out", "attn_out"]

Emotions = tuple[str, ...]
Layers = tuple[int, ...]


def read_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a text file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@cache
def all_emotions() -> Emotions:
    """The 171 emotion words of the source study, in its order."""
    return tuple(read_lines(project_data("corpora") / "emotions_all.txt"))


@cache
def default_emotions() -> Emotions:
    """The 30 default emotions (see corpora/README.md for how they were chosen)."""
    return tuple(read_lines(project_data("corpora") / "emotions_default.txt"))


DEFAULT_EMOTIONS: Emotions = default_emotions()


def check_emotions(words: Emotions | None) -> None:
    """Words of the shipped list only, at least one, each once."""
    if words is None:
        return
    known = set(all_emotions())
    unknown = [word for word in words if word not in known]
    if unknown:
        shown = ", ".join(word if word.isprintable() else repr(word) for word in unknown)
        raise SaefeaturesError(
            f"unknown emotion word(s): {shown}; use words of the shipped "
            "171-word list, or 'default', 'all', or a file with one word per line"
        )
    if not words:
        raise SaefeaturesError("no emotion words given; name at least one")
    if len(set(words)) != len(words):
        raise SaefeaturesError("an emotion word is named twice; name each once")


def default_layer(n_layers: int) -> int:
    """The layer a command reads when none is named: a third of the depth, where the shipped
    SAE presets sit."""
    return round(n_layers / 3)


def check_at_least(flag: str, value: int | float | None, low: int | float) -> None:
    if value is not None and not value >= low:
        raise SaefeaturesError(f"{flag} must be at least {low}, got {value}")


def check_scales(flag: str, scales: tuple[float, ...]) -> None:
    if not scales:
        raise SaefeaturesError(f"give at least one value for {flag}")
    for scale in scales:
        if not (math.isfinite(scale) and scale > 0):
            raise SaefeaturesError(f"{flag} must be finite numbers above 0, got {scale}")


def check_layers(layers: Layers | None) -> None:
    if layers is not None and (not layers or min(layers) < 0):
        raise SaefeaturesError("give layers as numbers >= 0, like 4,8,10, or 'all'")


@dataclass(frozen=True, kw_only=True)
class Options:
    """Checks every `Literal` field against its choices and any `seed`; subclasses add their
    own checks."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for item in fields(self):
            value = getattr(self, item.name)
            choices = _choices(hints[item.name])
            if choices and value not in choices:
                flag = "--" + item.name.replace("_", "-")
                raise SaefeaturesError(
                    f"unknown {flag} {value!r}; use one of {', '.join(map(str, choices))}"
                )
        seed = getattr(self, "seed", None)
        if seed is not None and not 0 <= seed < 2**63:  # numpy's and torch's seed range
            raise SaefeaturesError(f"--seed must be a whole number from 0 to 2**63 - 1, got {seed}")
        self.check()

    def check(self) -> None:
        """Checks that need no model or store."""


def _choices(hint: object) -> tuple[object, ...]:
    """The values a `Literal` field (or an optional one) may take; () for other fields."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (Union, UnionType):
        members = get_args(hint)
        if all(get_origin(m) is Literal or m is type(None) for m in members):
            literal = tuple(v for m in members if m is not type(None) for v in get_args(m))
            return (*literal, None) if type(None) in members else literal
    return ()


@dataclass(frozen=True, kw_only=True)
class Compute(Options):
    """Where and in what arithmetic a stage runs: `auto` picks per device."""

    dtype: Dtype = "auto"
    device: Device = "auto"


# -- corpora and vectors -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StoryOptions(Compute):
    model: str = DEFAULT_MODEL
    name: str = "generated"
    emotions: Emotions = DEFAULT_EMOTIONS
    topics: int = 3
    stories_per_topic: int = 1
    min_kept: int | None = None  # stories an emotion needs; None: every planned one
    top_up_rounds: int = 3  # extra sampling rounds for emotions below min_kept
    batch_size: int = 32  # per story, 1.4x faster than 16 on 2 CPU cores; 64 gains nothing
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.15
    seed: int = 0

    def check(self) -> None:
        check_emotions(self.emotions)
        check_at_least("--batch-size", self.batch_size, 1)
        check_at_least("--max-new-tokens", self.max_new_tokens, 16)
        check_at_least("--stories-per-topic", self.stories_per_topic, 1)
        check_at_least("--min-kept", self.min_kept, 1)
        check_at_least("--top-up-rounds", self.top_up_rounds, 0)
        # below 0.01 the logits divided by it overflow to inf and sampling fails
        if not (math.isfinite(self.temperature) and self.temperature >= 0.01):
            raise SaefeaturesError(
                f"--temperature must be a finite number of at least 0.01, got {self.temperature}"
            )

    @property
    def planned_per_emotion(self) -> int:
        return self.topics * self.stories_per_topic


@dataclass(frozen=True, kw_only=True)
class VectorOptions(Compute):
    model: str = DEFAULT_MODEL
    corpus: str = DEFAULT_CORPUS
    emotions: Emotions = DEFAULT_EMOTIONS
    layers: Layers | None = None  # None: every layer
    offset: int | None = None  # pool from this token on; None: the corpus's own offset
    min_passages: int = 2  # an emotion with fewer kept passages is left out, with a warning
    denoise_var: float = 0.5
    batch_size: int = 8

    def check(self) -> None:
        check_emotions(self.emotions)
        check_layers(self.layers)
        check_at_least("--offset", self.offset, 0)
        check_at_least("--min-passages", self.min_passages, 1)
        check_at_least("--batch-size", self.batch_size, 1)
        if not 0 < self.denoise_var < 1:
            raise SaefeaturesError(f"--denoise-var must be in (0, 1), got {self.denoise_var}")


@dataclass(frozen=True, kw_only=True)
class GeometryOptions(Compute):
    model: str = DEFAULT_MODEL
    corpus: str = DEFAULT_CORPUS
    ratings: Path | None = None
    strict: bool = False
    resamples: int = 1000
    seed: int = 0
    top_tokens: int = 10

    def check(self) -> None:
        check_at_least("--resamples", self.resamples, 100)
        check_at_least("--top-tokens", self.top_tokens, 1)


# -- SAE features and emotion vectors ----------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AlignOptions(Compute):
    layer: int = 0
    model: str = DEFAULT_MODEL
    sae: str | None = None  # None: every SAE on the layer's residual stream
    corpus: str = DEFAULT_CORPUS
    method: Method = "denoised"
    emotions: Emotions | None = None  # None: every emotion with a vector
    top_k: int = 50  # features kept per emotion and method
    k_max: int = 32
    null_samples: int = 1000
    text: str | None = None  # sample text source; None: the SAE's training text
    sample_rows: int = 64
    batch_size: int = 8
    seed: int = 0

    def check(self) -> None:
        check_emotions(self.emotions)
        check_at_least("--layer", self.layer, 0)
        for flag, value, low in (
            ("--top", self.top_k, 1),
            ("--k-max", self.k_max, 1),
            ("--null-directions", self.null_samples, 100),
            ("--sample-rows", self.sample_rows, 0),
            ("--batch-size", self.batch_size, 1),
        ):
            check_at_least(flag, value, low)


@dataclass(frozen=True, kw_only=True)
class UmapOptions(Options):
    layer: int = 0
    model: str = DEFAULT_MODEL
    sae: str | None = None  # None: the first SAE on the layer's residual stream
    corpus: str = DEFAULT_CORPUS
    method: Method = "denoised"
    top_k: int = 10  # features per emotion, by decoder-cosine rank
    background: int = 1000  # random other features, for context
    seed: int = 0
    neighbors: int = 15
    min_dist: float = 0.1
    output: Path | None = None  # stem, or a .png/.html path; None: <out>/umap/<sae>-<corpus>

    def check(self) -> None:
        check_at_least("--layer", self.layer, 0)
        check_at_least("--top", self.top_k, 1)
        check_at_least("--background", self.background, 0)
        check_at_least("--neighbors", self.neighbors, 2)
        if not 0 <= self.min_dist <= 1:
            raise SaefeaturesError(f"--min-dist must be between 0 and 1, got {self.min_dist}")


# -- interventions -----------------------------------------------------------------

STEER_EMOTIONS: Emotions = (
    "happy",
    "sad",
    "angry",
    "afraid",
    "calm",
    "proud",
    "loving",
    "disgusted",
)


@dataclass(frozen=True, kw_only=True)
class SteerOptions(Compute):
    model: str = DEFAULT_MODEL
    layer: int | None = None  # None: a third of the depth
    level: Level = "both"
    emotions: Emotions = STEER_EMOTIONS
    scales: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)  # x the layer's mean residual norm
    gen_scale: float = 0.1  # generations run at this one scale
    corpus: str = DEFAULT_CORPUS
    method: Method = "denoised"
    sae: str | None = None
    gen_tokens: int = 24
    clamp_multiples: tuple[float, ...] = (1.0, 2.0, 4.0)  # x each feature's observed max
    seed: int = 0  # the random feature sets of the baseline

    def check(self) -> None:
        check_emotions(self.emotions)
        check_at_least("--layer", self.layer, 0)
        check_scales("--scales", self.scales)
        check_scales("--clamp-multiples", self.clamp_multiples)
        check_scales("--gen-scale", (self.gen_scale,))
        check_at_least("--max-new-tokens", self.gen_tokens, 1)


@dataclass(frozen=True, kw_only=True)
class PatchOptions(Compute):
    model: str = DEFAULT_MODEL
    pairs: Path | None = None  # None: the shipped corpora/news_pairs.jsonl
    level: PatchLevel = "all"
    score: ReplyScore = "anchors"  # the score the sweeps patch; both are stored per pair
    positions: PatchPositions = "differing"  # residual sweep: differing tokens + the last
    limit: int | None = None  # first N situations
    layers: Layers | None = None  # feature level; None: every layer with an SAE

    def check(self) -> None:
        check_at_least("--limit", self.limit, 1)
        check_layers(self.layers)


@dataclass(frozen=True, kw_only=True)
class CircuitOptions(Compute):
    model: str = DEFAULT_MODEL
    pairs: Path | None = None  # None: the shipped corpora/news_pairs.jsonl
    score: ReplyScore = "anchors"
    limit: int | None = None  # first N situations
    layers: Layers | None = None  # None: every layer with a residual-stream SAE
    saes: tuple[str, ...] | None = None  # the SAE of each layer that has several
    nodes: int = 30  # circuit size: the top nodes by integrated-gradients effect
    steps: int = 5  # integrated-gradients steps along the path
    exact_pairs: int = 8  # selection pairs on which single-node estimates are checked
    exact_nodes: int = 10  # circuit nodes checked (and as many random nodes)
    edge_pairs: int = 16  # selection pairs the edges are averaged over
    edge_threshold: float = 0.01  # smallest |mean normalized effect| of a kept edge
    draws: int = 10  # random node sets per size of the curves' baseline
    null_directions: int = 99  # random subspaces (and node sets) per direction-view null
    seed: int = 0  # the selection/evaluation split and the random draws
    corpus: str = DEFAULT_CORPUS  # the emotion vectors of the direction view

    def check(self) -> None:
        check_at_least("--limit", self.limit, 1)
        check_layers(self.layers)
        if self.saes is not None and not self.saes:
            raise SaefeaturesError("--sae names no SAE; give ids like sae-a,sae-b or leave it out")
        for flag, value in (
            ("--nodes", self.nodes),
            ("--steps", self.steps),
            ("--exact-pairs", self.exact_pairs),
            ("--exact-nodes", self.exact_nodes),
            ("--edge-pairs", self.edge_pairs),
            ("--draws", self.draws),
            ("--null-directions", self.null_directions),
        ):
            check_at_least(flag, value, 1)
        if not (math.isfinite(self.edge_threshold) and self.edge_threshold >= 0):
            raise SaefeaturesError(
                f"--edge-threshold must be a finite number of at least 0, got {self.edge_threshold}"
            )


# -- validation experiments --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReadoutOptions(Compute):
    """What every read-out experiment reads, at which level, and how."""

    model: str = DEFAULT_MODEL
    corpus: str = DEFAULT_CORPUS  # the vectors' and the alignments' corpus
    emotions: Emotions | None = None  # None: every emotion with a vector
    layers: Layers | None = None  # None: every layer with vectors
    level: Level = "both"
    method: Method = "denoised"
    sae: str | None = None  # None: the first SAE at each layer that has one
    top_k: int = 10  # aligned features summed per emotion
    permutations: int = 1000
    batch_size: int = 8
    seed: int = 0

    def check(self) -> None:
        check_emotions(self.emotions)
        check_layers(self.layers)
        check_at_least("--top", self.top_k, 1)
        check_at_least("--permutations", self.permutations, 1)
        check_at_least("--batch-size", self.batch_size, 1)


@dataclass(frozen=True, kw_only=True)
class RetrievalOptions(ReadoutOptions):
    # auto: the corpus's own train/heldout split where it has one (the shipped stories hold
    # out whole topics), else half of each emotion's passages
    split: Split = "auto"


QUANTITY_EMOTIONS: Emotions = (
    "afraid",
    "calm",
    "desperate",
    "relieved",
    "panicked",
    "safe",
    "happy",
    "sad",
)


@dataclass(frozen=True, kw_only=True)
class QuantityOptions(ReadoutOptions):
    emotions: Emotions | None = QUANTITY_EMOTIONS
    batch_size: int = 16
    prompts: Path | None = None  # None: the shipped corpora/quantity.jsonl
    headline_layer: int | None = None  # the claim's layer, fixed in advance; None: a third
    null_directions: int = 200  # random directions (and feature sets) per null

    def check(self) -> None:
        super().check()
        check_at_least("--headline-layer", self.headline_layer, 0)
        check_at_least("--null-directions", self.null_directions, 20)


@dataclass(frozen=True, kw_only=True)
class ChoiceOptions(Compute):
    """What both choice experiments steer with, and how they run."""

    model: str = DEFAULT_MODEL
    layer: int | None = None  # None: a third of the depth, as `saefeatures steer`
    level: Level = "both"
    emotions: Emotions = ()
    scales: tuple[float, ...] = (0.1, 0.2)  # x the layer's mean residual norm
    top_k: int = 20  # features per emotion at the feature level
    corpus: str = DEFAULT_CORPUS
    method: Method = "denoised"
    sae: str | None = None
    resamples: int = 1000
    seed: int = 0
    batch_size: int = 16

    def check(self) -> None:
        check_emotions(self.emotions)
        check_at_least("--layer", self.layer, 0)
        check_scales("--scales", self.scales)
        check_at_least("--top", self.top_k, 1)
        check_at_least("--resamples", self.resamples, 1)
        check_at_least("--batch-size", self.batch_size, 1)


BEHAVIOUR_EMOTIONS: Emotions = ("desperate", "calm", "afraid", "happy")
PREFERENCE_EMOTIONS: Emotions = (
    "happy",
    "calm",
    "loving",
    "proud",
    "afraid",
    "sad",
    "angry",
    "disgusted",
)


@dataclass(frozen=True, kw_only=True)
class BehaviourOptions(ChoiceOptions):
    emotions: Emotions = BEHAVIOUR_EMOTIONS
    scenarios: Path | None = None  # None: the shipped corpora/pressure_scenarios.jsonl


@dataclass(frozen=True, kw_only=True)
class PreferenceOptions(ChoiceOptions):
    emotions: Emotions = PREFERENCE_EMOTIONS
    activities: Path | None = None  # None: the shipped corpora/activities.csv
    pairs: int = 240  # ordered pairs asked; all of them if this covers them
    steer_activities: int = 4  # activities steered, one at a time

    def check(self) -> None:
        super().check()
        check_at_least("--comparisons", self.pairs, 1)
        check_at_least("--steer-activities", self.steer_activities, 1)


# -- sparse autoencoders ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainOptions(Options):
    """None takes the SAE config's value (its YAML key of the same meaning)."""

    model: str = DEFAULT_MODEL
    layers: Layers | Literal["all"] | None = None  # None: the config's layers
    config: str | None = None  # a YAML file or a preset name; None: the model's preset
    hook: HookSite | None = None
    tokens: int | None = None  # the YAML key training_tokens
    dtype: Dtype | None = None  # None: the config's dtype; auto picks per device
    seed: int | None = None
    dataset: str | None = None
    cache_activations: bool = False
    restart: bool = False
    device: Device = "auto"
    overrides: tuple[str, ...] = ()  # KEY=VALUE, like the YAML keys
    progress: bool = True

    def check(self) -> None:
        if self.layers != "all":
            check_layers(self.layers)
        check_at_least("--training-tokens", self.tokens, 1)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions(Options):
    sae_id: str
    dataset: str | None = None  # default: the SAE's training dataset (or the offline default)
    eval_tokens: int | None = None
    batch_size: int | None = None
    dtype: Dtype | None = None  # None: the dtype the SAE was trained in
    device: Device = "auto"
    progress: bool = True


@dataclass(frozen=True, kw_only=True)
class LoadOptions(Compute):
    model: str = DEFAULT_MODEL
    path: Path | None = None
    format: SaeFormat = "saelens"  # the folder's layout (--layout)
    release: str | None = None
    hub_sae_id: str | None = None  # the SAE's id within the SAELens release (--saelens-id)
    hook: str | None = None  # a full hook name, overriding the SAE's own
    layer: int | None = None  # with `hook` a site, or for sparsify folders without a layer name


# -- the main job ------------------------------------------------------------------

STAGES = (
    "stories",
    "vectors",
    "geometry",
    "train",
    "align",
    "steer",
    "patch",
    "validate",
    "compare",
)


@dataclass(frozen=True, kw_only=True)
class RunOptions(Compute):
    """The main job: every stage, for each model in turn, then the comparison and report."""

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    layers: Layers | None = None  # None: every layer
    emotions: Emotions = DEFAULT_EMOTIONS
    corpora: tuple[str, ...] = ("templates", DEFAULT_CORPUS)  # the last is aligned, steered...
    model_stories: bool = False  # an instruct model also writes stories-<model>, read last
    sae_config: str | None = None  # None: the model's preset
    train: bool = True
    sae_tokens: int | None = None
    sae_overrides: tuple[str, ...] = ()  # KEY=VALUE, like `train --set`
    force: frozenset[str] = frozenset()

    def check(self) -> None:
        if not self.models:
            raise SaefeaturesError("no model given: pass --model NAME or --models a,b")
        if len(set(self.models)) != len(self.models):
            raise SaefeaturesError("a model is named twice in --models; name each once")
        if not self.corpora:
            raise SaefeaturesError("no corpus given: pass --corpora templates or more")
        check_layers(self.layers)
        check_emotions(self.emotions)
        check_at_least("--training-tokens", self.sae_tokens, 1)
        unknown = sorted(set(self.force) - {*STAGES, "all"})
        if unknown:
            raise SaefeaturesError(
                f"unknown stage {', '.join(unknown)} for --force; use {', '.join(STAGES)} or all"
            )

    @property
    def forced(self) -> frozenset[str]:
        return frozenset(STAGES) if "all" in self.force else frozenset(self.force)


# -- comparisons -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CompareOptions(Options):
    models: tuple[str, ...] | None = None  # None: every model with results
    corpus: str = DEFAULT_CORPUS  # the corpus whose geometry is compared
