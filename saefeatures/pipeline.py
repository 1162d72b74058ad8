"""The main job (`saefeatures run`): every stage in order, each writing to the store.

Today the job loads the model, registers it, and harvests the residual stream
of one sample prompt at the requested layers; each capability joins here as it
lands, so that `make demo` always runs the whole pipeline there is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefeatures import activations, models
from saefeatures.store import Store

SAMPLE_PROMPT = "I just got accepted into my dream PhD program today!"


@dataclass(frozen=True)
class Workspace:
    db: Path
    out: Path

    def open_store(self, read_only: bool = False) -> Store:
        return Store(self.db, read_only=read_only)


def register_model(store: Store, run_id: str, model: models.LoadedModel) -> dict[str, Any]:
    """Write (or refresh) the model's row in `models`."""
    row = {"run_id": run_id, **model.describe()}
    store.replace("models", {"model": model.name}, {key: [value] for key, value in row.items()})
    return row


def run(
    workspace: Workspace, model_name: str, layers: str, dtype: str, device: str
) -> dict[str, Any]:
    """Run the pipeline for one model and return what it did, for printing.

    Every option is checked before the store is opened, so bad input changes nothing.
    """
    models.check_options(dtype, device)
    spec = models.resolve(model_name)
    chosen = activations.select_layers(layers, models.shape_of(spec)["n_layers"], spec.name)
    workspace.out.mkdir(parents=True, exist_ok=True)
    config = {"model": spec.name, "layers": chosen, "dtype": dtype, "device": device}
    with workspace.open_store() as store, store.run("run", config) as run_id:
        model = models.load(model_name, dtype=dtype, device=device)
        described = register_model(store, run_id, model)
        batch = model.encode([model.format_prompt(SAMPLE_PROMPT)], chat_formatted=True)
        acts = activations.harvest(model, batch, chosen)
    residuals = [
        (layer, tuple(act.shape), float(act.float().norm(dim=-1).mean()))
        for layer, act in acts.items()
    ]
    return {"run_id": run_id, "model": described, "residuals": residuals}
