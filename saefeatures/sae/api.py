"""The SAE stages the CLI calls: train, evaluate, list, load.

Each takes a `Store`, the output folder and a frozen options dataclass, checks
every input before the run is recorded (so bad input changes nothing), and
returns a summary dict for printing. SAE files live under `<out>/saes/<sae_id>/`
in SAELens' format; an SAE is registered in `saes` (with its metrics in
`sae_metrics` and its training curve in `sae_training`) only once it is complete
and evaluated, all in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import shutil
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from saefeatures import activations, models
from saefeatures.corpora import training_text
from saefeatures.errors import SaefeaturesError
from saefeatures.options import EvaluateOptions, LoadOptions, TrainOptions
from saefeatures.sae import config as sae_config
from saefeatures.sae import distributed, loading
from saefeatures.sae.metrics import HEADLINE
from saefeatures.store.database import Store

SPLIT = "heldout"


def model_tag(spec: models.ModelSpec) -> str:
    """A short, path-safe name for a model: local folders get their name and a path hash."""
    if spec.source == "local":
        digest = hashlib.sha256(spec.name.encode()).hexdigest()[:4]
        return f"{Path(spec.name).name}-{digest}"
    return spec.slug


def _short_hook(hook_name: str) -> str:
    tail = re.sub(r"^blocks\.\d+\.", "", hook_name)
    return re.sub(r"[^A-Za-z0-9]+", "_", tail.replace("hook_", "")).strip("_")


def sae_dir(out: Path, sae_id: str) -> Path:
    return out / "saes" / sae_id


# -- train ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    spec: models.ModelSpec
    cfg: sae_config.SaeConfig
    source: str
    layers: list[int]
    d_in: int
    d_sae: int
    hooks: dict[int, str]
    ids: dict[int, str]


def plan_training(options: TrainOptions) -> Plan:
    """Every check of a train command, before anything runs or is written."""
    spec = models.resolve(options.model)
    overrides = {
        "training_tokens": options.tokens,
        "dtype": options.dtype,
        "seed": options.seed,
        "hook": options.hook,
        "dataset": options.dataset,
        **sae_config.parse_overrides(options.overrides),
    }
    cfg, source = sae_config.load(options.config, spec.slug, overrides)
    models.check_options(cfg.dtype, options.device)
    shape = models.shape_of(spec)
    chosen = options.layers if options.layers is not None else cfg.layers
    if chosen is None:
        raise SaefeaturesError(
            "no layer to train: pass --layer N or --layers 4,8,10 (or 'all'), or set "
            "`layers` in the SAE config"
        )
    everything = chosen == "all"
    layers = activations.select_layers(None if everything else chosen, shape["n_layers"], spec.name)
    d_in = shape["d_model"]
    d_sae = cfg.width(d_in)
    training_text.check_dataset(cfg.dataset)
    digest = cfg.digest(spec.name, d_in)
    tag = model_tag(spec)
    hooks = {layer: activations.hook_name(layer, cfg.hook) for layer in layers}
    k = f"-k{cfg.k:g}" if cfg.k is not None else ""
    ids = {
        layer: f"{tag}-L{layer}-{cfg.hook}-{cfg.architecture}{d_sae}{k}-{digest}"
        for layer in layers
    }
    return Plan(spec, cfg, source, layers, d_in, d_sae, hooks, ids)


def _run_dir(out: Path, plan: Plan, layers: list[int]) -> Path:
    """Where training these layers together keeps its checkpoint until their SAEs are saved."""
    return out / "sae-runs" / f"{model_tag(plan.spec)}-{plan.cfg.digest(plan.spec.name, layers)}"


def _registered(store: Store, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    marks = ", ".join("?" for _ in ids)
    rows = store.con.execute(f"SELECT sae_id FROM saes WHERE sae_id IN ({marks})", ids).fetchall()
    return {row[0] for row in rows}


def _cache_folder(out: Path, plan: Plan) -> Path:
    cfg = plan.cfg
    key = {
        "model": plan.spec.name,
        "dtype": cfg.dtype,
        "hook": cfg.hook,
        "dataset": cfg.dataset,
        "context_size": cfg.context_size,
        "holdout_fraction": cfg.holdout_fraction,
        "rows_per_buffer": cfg.buffer_batches * cfg.lm_batch_size,
        "exclude_special_tokens": cfg.exclude_special_tokens,
        "epoch_tokens": cfg.epoch_tokens,
        "format": 2,  # later epochs repeat the first epoch's buffers
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    folder = out / "activations" / model_tag(plan.spec) / digest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(key, indent=1))
    return folder


@dataclass(frozen=True)
class Trained:
    """One `train` run: the SAE config, the text, how much was trained how fast (None when
    every SAE was trained before), and each SAE's status and headline metrics."""

    run_id: str
    model: str
    config: str
    architecture: str
    d_sae: int
    k: int | None
    hook: str
    dtype: str
    training_tokens: int
    dataset: str
    train_rows: int | None
    heldout_rows: int | None
    peak_memory_mb: int
    saes: list[dict[str, Any]]
    trained_tokens: int | None = None
    resumed_from_tokens: int | None = None
    train_seconds: float | None = None
    tokens_per_s: int | None = None
    lm_tokens: int | None = None
    lm_tokens_per_s: int | None = None


class _ModelHolder:
    """Loads the language model on first use only (a full activation cache never needs it),
    unless the caller holds it already."""

    def __init__(self, name: str, dtype: str, device: str, held: models.LoadedModel | None):
        self.name, self.dtype, self.device, self.held = name, dtype, device, held
        self.model: models.LoadedModel | None = None

    def __call__(self) -> models.LoadedModel:
        if self.model is None:
            self.model = models.load(self.name, self.dtype, self.device, loaded=self.held)
        return self.model


def train(
    store: Store,
    out: Path,
    options: TrainOptions,
    on_step: Any = None,
    model: models.LoadedModel | None = None,
    team: distributed.Team | None = None,
) -> Trained:
    """Train one SAE per layer from one forward pass per batch, evaluate, register.

    A rerun of the same command resumes from the last checkpoint (or starts
    clean with `restart`); SAEs already trained with the same config are not
    trained again. Under torchrun (`team`) this is rank 0: it trains its share of
    the layers, the other ranks theirs (`train_share`), and it registers them all.
    """
    options, plan = _planned(options, team)
    cfg = plan.cfg
    config = {
        "model": plan.spec.name,
        "layers": plan.layers,
        "config_source": plan.source,
        "sae_config": cfg.model_dump(),
        "cache_activations": options.cache_activations,
        "restart": options.restart,
        "device": options.device,
        "sae_ids": list(plan.ids.values()),
    }
    with (
        store.run("train", config, atomic=True) as run_id,
        distributed.joined(team, options.device),
    ):
        to_train, to_register = _work_left(store, out, plan, options.restart)
        distributed.broadcast((run_id, to_train), team)
        data = _token_data(options, plan, model) if to_train or to_register else None
        holder = _ModelHolder(options.model, cfg.dtype, options.device, model)
        trained = _train_share(out, options, plan, to_train, data, holder, run_id, on_step, team)
        metrics = {}
        if to_register and data is not None:
            metrics = _evaluate_and_register(store, run_id, out, holder(), plan, to_register, data)
    return _summary(run_id, plan, to_train, data, trained, metrics)


def train_share(out: Path, options: TrainOptions, team: distributed.Team) -> None:
    """A torchrun rank other than 0: train its share of the layers rank 0 says are left and
    save their SAEs into `out`, for rank 0 to evaluate and register; never the store."""
    options, plan = _planned(replace(options, progress=False), team)
    with distributed.joined(team, options.device):
        run_id, to_train = distributed.broadcast(None, team)
        data = _token_data(options, plan, None) if to_train else None
        holder = _ModelHolder(options.model, plan.cfg.dtype, options.device, None)
        _train_share(out, options, plan, to_train, data, holder, run_id, None, team)


def _planned(options: TrainOptions, team: distributed.Team | None) -> tuple[TrainOptions, Plan]:
    """The options with a concrete device, and the checked plan (the same on every rank)."""
    options = replace(options, device=models.concrete_device(options.device))
    plan = plan_training(options)
    distributed.check_size(plan.layers, team)
    return options, plan


def _token_data(
    options: TrainOptions, plan: Plan, model: models.LoadedModel | None
) -> training_text.TokenData:
    """The config's text as training and held-out token rows."""
    tokenizer = models.load_tokenizer(options.model, loaded=model)
    cfg = plan.cfg
    return training_text.prepare(cfg.dataset, tokenizer, cfg.context_size, cfg.holdout_fraction)


def _train_share(
    out: Path,
    options: TrainOptions,
    plan: Plan,
    to_train: list[int],
    data: Any,
    holder: _ModelHolder,
    run_id: str,
    on_step: Any,
    team: distributed.Team | None,
) -> dict[str, Any]:
    """Train and save this rank's layers of `to_train` (every layer alone); at rank 0, the
    training facts of the slowest rank, once every rank has saved its SAEs."""
    own = distributed.share(plan.layers, team)
    mine = [layer for layer in own if layer in to_train]
    trained: dict[str, Any] = {}
    if mine:
        trained = _train_layers(out, options, plan, mine, data, holder, run_id, on_step)
    else:  # the SAEs saved by a run killed before it removed its checkpoint: remove it now
        shutil.rmtree(_run_dir(out, plan, own), ignore_errors=True)
    facts = [part for part in distributed.gather(trained, team) if part]
    return max(facts, key=lambda part: part["train_seconds"], default={})


def _work_left(store: Store, out: Path, plan: Plan, restart: bool) -> tuple[list[int], list[int]]:
    """The layers whose SAE is not saved yet, and those not registered yet (with `restart`,
    every layer, its saved SAE removed first)."""
    if restart:
        for sae_id in plan.ids.values():
            shutil.rmtree(sae_dir(out, sae_id), ignore_errors=True)
    to_train = [
        layer for layer in plan.layers if not (sae_dir(out, plan.ids[layer]) / "cfg.json").is_file()
    ]
    registered = set() if restart else _registered(store, list(plan.ids.values()))
    to_register = [
        layer for layer in plan.layers if layer in to_train or plan.ids[layer] not in registered
    ]
    return to_train, to_register


def _train_layers(
    out: Path,
    options: TrainOptions,
    plan: Plan,
    to_train: list[int],
    data: Any,
    holder: _ModelHolder,
    run_id: str,
    on_step: Any,
) -> dict[str, Any]:
    """Train the layers' SAEs together from one activation source (resuming a checkpoint),
    save each, and say how much was trained how fast."""
    from saefeatures.sae.provider import ActivationSource
    from saefeatures.sae.training import Coordinator, save_final

    cfg = plan.cfg
    run_dir = _run_dir(out, plan, to_train)
    if options.restart:
        shutil.rmtree(run_dir, ignore_errors=True)
    source = ActivationSource(
        cfg.epoch_rows(data.train),
        to_train,
        cfg.hook,
        rows_per_buffer=cfg.buffer_batches * cfg.lm_batch_size,
        lm_batch_size=cfg.lm_batch_size,
        special=data.special,
        exclude_special=cfg.exclude_special_tokens,
        load_model=holder,
        cache=_cache_folder(out, plan) if options.cache_activations else None,
        seed=cfg.seed,
        keep=cfg.epoch_tokens is not None,
    )
    hooks = {layer: plan.hooks[layer] for layer in to_train}
    metadata = _saelens_metadata(plan, data.source)
    coordinator = Coordinator(cfg, source, hooks, plan.d_in, run_dir, options.device, metadata)
    if coordinator.has_checkpoint():
        coordinator.restore()
    result = coordinator.train(progress=options.progress, on_step=on_step)
    for layer, layer_run in result.layers.items():
        extra = {"sae_id": plan.ids[layer], "config": cfg.model_dump(), "run_id": run_id}
        save_final(layer_run, sae_dir(out, plan.ids[layer]), extra)
    shutil.rmtree(run_dir, ignore_errors=True)
    tokens = (result.steps - result.resumed_from) * cfg.train_batch_size
    return {
        "trained_tokens": tokens,
        "resumed_from_tokens": result.resumed_from * cfg.train_batch_size,
        "train_seconds": round(result.seconds, 1),
        "tokens_per_s": round(tokens / max(result.seconds, 1e-9)),
        "lm_tokens": result.lm_tokens,
        "lm_tokens_per_s": round(result.lm_tokens / result.lm_seconds)
        if result.lm_seconds
        else None,
    }


def _saelens_metadata(plan: Plan, dataset: str) -> dict[str, Any]:
    """What SAELens records of the model and text an SAE was trained on."""
    return {
        "model_name": plan.spec.name,
        "model_class_name": "TransformerBridge",
        "context_size": plan.cfg.context_size,
        "prepend_bos": True,
        "dataset_path": dataset,
        "exclude_special_tokens": plan.cfg.exclude_special_tokens,
        "hook_head_index": None,
    }


def _summary(
    run_id: str,
    plan: Plan,
    to_train: list[int],
    data: Any,
    trained: dict[str, Any],
    metrics: dict[str, Any],
) -> Trained:
    """What `train` prints: the config, the training's speed, each SAE's headline metrics."""
    cfg = plan.cfg
    saes = [
        {
            "sae_id": plan.ids[layer],
            "layer": layer,
            "status": "trained" if layer in to_train else "already trained",
            **{name: metrics.get(plan.ids[layer], {}).get(name) for name in HEADLINE},
        }
        for layer in plan.layers
    ]
    return Trained(
        run_id=run_id,
        model=plan.spec.name,
        config=plan.source,
        architecture=cfg.architecture,
        d_sae=plan.d_sae,
        k=int(cfg.k) if cfg.architecture == "topk" else cfg.k,
        hook=cfg.hook,
        dtype=cfg.dtype,
        training_tokens=cfg.total_steps * cfg.train_batch_size,
        dataset=training_text.describe(cfg.dataset),
        train_rows=len(data.train) if data is not None else None,
        heldout_rows=len(data.held_out) if data is not None else None,
        **trained,
        peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        saes=saes,
    )


def _curve_rows(run_id: str, sae_id: str, folder: Path) -> dict[str, list[Any]]:
    info = json.loads((folder / "saefeatures.json").read_text())
    rows: dict[str, list[Any]] = {key: [] for key in ("run_id", "sae_id", "tokens", "metric")}
    rows["value"] = []
    for point in info.get("curve", []):
        for metric, value in point.items():
            if metric == "tokens":
                continue
            rows["run_id"].append(run_id)
            rows["sae_id"].append(sae_id)
            rows["tokens"].append(int(point["tokens"]))
            rows["metric"].append(metric)
            rows["value"].append(float(value))
    return rows


def _evaluate_and_register(
    store: Store,
    run_id: str,
    out: Path,
    model: models.LoadedModel,
    plan: Plan,
    layers: list[int],
    data: training_text.TokenData,
) -> dict[str, dict[str, float]]:
    from saefeatures.sae.evaluation import Target, evaluate_saes

    cfg = plan.cfg
    targets = [
        Target(
            plan.ids[layer], loading.read_saelens(sae_dir(out, plan.ids[layer])), plan.hooks[layer]
        )
        for layer in layers
    ]
    rows = _eval_rows(data.held_out, cfg.eval_tokens)
    metrics = evaluate_saes(
        model, targets, rows, data.special, cfg.exclude_special_tokens, cfg.eval_batch_size
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    sae_rows = [
        {
            "run_id": run_id,
            "sae_id": plan.ids[layer],
            "model": plan.spec.name,
            "layer": layer,
            "hook": plan.hooks[layer],
            "architecture": cfg.architecture,
            "d_in": plan.d_in,
            "d_sae": plan.d_sae,
            "k": round(cfg.k) if cfg.k is not None else None,
            "tokens": cfg.total_steps * cfg.train_batch_size,
            "path": str(sae_dir(out, plan.ids[layer]).resolve()),
            "config": json.dumps(cfg.model_dump(), default=str),
            "source": "trained",
            "dataset": data.source,
            "created": now,
        }
        for layer in layers
    ]
    with store.transaction():
        ids = [plan.ids[layer] for layer in layers]
        _delete(store, ids)
        store.insert("saes", pa.Table.from_pylist(sae_rows))
        store.insert("sae_metrics", _metric_rows(run_id, metrics))
        for layer in layers:
            curve = _curve_rows(run_id, plan.ids[layer], sae_dir(out, plan.ids[layer]))
            if curve["tokens"]:
                store.insert("sae_training", curve)
    return metrics


def _delete(store: Store, ids: list[str], metrics_only: bool = False) -> None:
    marks = ", ".join("?" for _ in ids)
    tables = ("sae_metrics",) if metrics_only else ("saes", "sae_metrics", "sae_training")
    for table in tables:
        store.con.execute(f"DELETE FROM {table} WHERE sae_id IN ({marks})", ids)


def _metric_rows(run_id: str, metrics: dict[str, dict[str, float]]) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {key: [] for key in ("run_id", "sae_id", "split", "metric")}
    rows["value"] = []
    for sae_id, values in metrics.items():
        for metric, value in values.items():
            rows["run_id"].append(run_id)
            rows["sae_id"].append(sae_id)
            rows["split"].append(SPLIT)
            rows["metric"].append(metric)
            rows["value"].append(float(value))
    return rows


def _eval_rows(held_out: Any, eval_tokens: int) -> Any:
    n = max(1, -(-eval_tokens // held_out.shape[1]))
    return held_out[:n]


# -- evaluate --------------------------------------------------------------------------


def _sae_row(store: Store, sae_id: str) -> dict[str, Any]:
    table = store.con.sql("SELECT * FROM saes WHERE sae_id = ?", params=[sae_id]).to_arrow_table()
    if table.num_rows == 0:
        raise SaefeaturesError(
            f"no SAE {sae_id!r} in the store; `saefeatures saes` lists the registered ones"
        )
    return table.to_pylist()[0]


@dataclass(frozen=True)
class Evaluated:
    """An SAE's held-out metrics, recomputed on the named text."""

    run_id: str
    sae_id: str
    dataset: str
    metrics: dict[str, float]


def evaluate(store: Store, out: Path, options: EvaluateOptions) -> Evaluated:
    """Recompute an SAE's held-out metrics and replace them in `sae_metrics`."""
    options = replace(options, device=models.concrete_device(options.device))
    from saefeatures.sae.evaluation import Target, evaluate_saes

    row = _sae_row(store, options.sae_id)
    stored = json.loads(row["config"] or "{}") if row["source"] == "trained" else {}
    context_size = int(stored.get("context_size", 128))
    holdout = float(stored.get("holdout_fraction", 0.02))
    exclude = bool(stored.get("exclude_special_tokens", True))
    dataset = options.dataset or stored.get("dataset")
    eval_tokens = options.eval_tokens or int(stored.get("eval_tokens", 32_768))
    batch_size = options.batch_size or int(stored.get("eval_batch_size", 8))
    dtype = options.dtype or stored.get("dtype", "float32")
    models.check_options(dtype, options.device)
    if eval_tokens <= 0 or batch_size <= 0:
        raise SaefeaturesError("--eval-tokens and --batch-size must be positive")
    training_text.check_dataset(dataset)
    path = Path(row["path"])
    sae = loading.read_saelens(path, options.device)
    config = {**asdict(options), "model": row["model"], "dataset": dataset}
    with store.run("evaluate", config, atomic=True) as run_id:
        model = models.load(row["model"], dtype=dtype, device=options.device)
        loading.check_fit(model, int(sae.cfg.d_in), row["hook"])
        data = training_text.prepare(dataset, model.tokenizer, context_size, holdout)
        rows = _eval_rows(data.held_out, eval_tokens)
        metrics = evaluate_saes(
            model,
            [Target(options.sae_id, sae, row["hook"])],
            rows,
            data.special,
            exclude,
            batch_size,
            options.progress,
        )
        with store.transaction():
            _delete(store, [options.sae_id], metrics_only=True)
            store.insert("sae_metrics", _metric_rows(run_id, metrics))
    return Evaluated(run_id, options.sae_id, data.source, metrics[options.sae_id])


# -- list ------------------------------------------------------------------------------


def list_saes(store: Store, model: str | None = None) -> pa.Table:
    """Registered SAEs with their headline held-out metrics, one row each."""
    pivot = ", ".join(
        f"max(CASE WHEN metric = '{name}' THEN value END) AS {name}" for name in HEADLINE
    )
    where = "WHERE s.model = ?" if model else ""
    sql = (
        f"WITH m AS (SELECT sae_id, {pivot} FROM sae_metrics WHERE split = '{SPLIT}' "
        "GROUP BY sae_id) "
        "SELECT s.sae_id, s.layer, s.architecture, s.d_sae, s.k, s.tokens, s.source, "
        f"{', '.join(f'm.{name}' for name in HEADLINE)} "
        f"FROM saes s LEFT JOIN m USING (sae_id) {where} ORDER BY s.model, s.layer, s.sae_id"
    )
    return store.con.sql(sql, params=[model] if model else None).to_arrow_table()


# -- load ------------------------------------------------------------------------------


def _hook_for(options: LoadOptions, own_hook: str | None, kind: str, source: str) -> str:
    """The hook to register: --hook NAME, --hook SITE/--layer N, the folder name, or the SAE's."""
    if options.hook and options.hook.startswith("blocks."):
        return options.hook
    if options.hook or options.layer is not None:
        layer = options.layer
        if layer is None and own_hook:
            layer = loading.layer_of(own_hook)
        if layer is None:
            raise SaefeaturesError("--hook SITE needs --layer N for an SAE without a hook name")
        return activations.hook_name(layer, options.hook or "resid_post")
    if kind == "sparsify":
        layer = loading.sparsify_layer(Path(source))
        if layer is None:
            raise SaefeaturesError(
                f"cannot tell the layer of sparsify SAE {source} from its folder name "
                "(layers.N); pass --layer N"
            )
        return activations.hook_name(layer, "resid_post")
    if not own_hook:
        raise SaefeaturesError("the SAE's cfg.json names no hook; pass --hook and --layer")
    return own_hook


@dataclass(frozen=True)
class Loaded:
    """A registered SAE: its id in the store, where it reads, what it is, where it came from
    and where its copy is, and the command that measures it."""

    run_id: str
    sae_id: str
    model: str
    hook: str
    architecture: str
    d_in: int
    d_sae: int
    source: str
    path: str
    next: str


def load(store: Store, out: Path, options: LoadOptions) -> Loaded:
    """Register an SAE from a folder or SAELens' registry for a model, after checking it fits."""
    options = replace(options, device=models.concrete_device(options.device))
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    if (options.path is None) == (options.release is None):
        raise SaefeaturesError("pass either --path DIR or --release R --saelens-id ID")
    if options.path is not None:
        # Folders are checked from cfg.json first: a misfit is refused before SAELens loads.
        path = Path(options.path).expanduser()
        kind, source = options.format, str(path.resolve())
        info = loading.folder_info(path, options.format)
        d_in, own_hook, sae = info.d_in, info.hook_name, None
    else:
        if not options.hub_sae_id:
            raise SaefeaturesError("--release needs --saelens-id (the SAE's id within the release)")
        kind, source = "pretrained", f"{options.release}/{options.hub_sae_id}"
        sae = loading.read_pretrained(options.release or "", options.hub_sae_id, options.device)
        d_in, own_hook = int(sae.cfg.d_in), sae.cfg.metadata.hook_name
    hook = _hook_for(options, own_hook, kind, source)
    model = models.load(options.model, dtype=options.dtype, device=options.device)
    layer = loading.check_fit(model, d_in, hook)
    if sae is None:
        read = loading.read_sparsify if kind == "sparsify" else loading.read_saelens
        sae = read(path, options.device)
    architecture = sae.cfg.architecture()
    d_sae = int(sae.cfg.d_sae)
    digest = hashlib.sha256(f"{kind}:{source}:{hook}:{spec.name}".encode()).hexdigest()[:8]
    sae_id = f"{model_tag(spec)}-L{layer}-{_short_hook(hook)}-{architecture}{d_sae}-{kind}-{digest}"
    config = {**asdict(options), "model": spec.name, "hook": hook, "sae_id": sae_id}
    with store.run("load", config, atomic=True) as run_id:
        sae.cfg.metadata.hook_name = hook
        sae.cfg.metadata.model_name = spec.name
        folder = sae_dir(out, sae_id)
        _save_loaded(sae, folder)
        row = _loaded_row(run_id, sae_id, spec.name, layer, hook, sae, folder, source, kind)
        with store.transaction():
            _delete(store, [sae_id])
            store.insert("saes", pa.Table.from_pylist([row]))
    return Loaded(
        run_id,
        sae_id,
        spec.name,
        hook,
        architecture,
        int(sae.cfg.d_in),
        d_sae,
        source,
        str(folder),
        f"saefeatures evaluate {sae_id}",
    )


def _save_loaded(sae: Any, folder: Path) -> None:
    """The SAE in SAELens' format, written beside the old folder, then swapped in."""
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    sae.save_model(str(partial))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _loaded_row(
    run_id: str,
    sae_id: str,
    model: str,
    layer: int,
    hook: str,
    sae: Any,
    folder: Path,
    source: str,
    kind: str,
) -> dict[str, Any]:
    """The `saes` row of a loaded SAE: no training tokens nor dataset of ours."""
    k = getattr(sae.cfg, "k", None)
    return {
        "run_id": run_id,
        "sae_id": sae_id,
        "model": model,
        "layer": layer,
        "hook": hook,
        "architecture": sae.cfg.architecture(),
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "k": int(k) if k is not None else None,
        "tokens": None,
        "path": str(folder.resolve()),
        "config": json.dumps({"source": source, **sae.cfg.to_dict()}, default=str),
        "source": kind,
        "dataset": None,
        "created": datetime.now(UTC).replace(tzinfo=None),
    }
