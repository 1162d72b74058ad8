"""The Python API on a store made by the commands: the examples of docs/api.md, vectors as
stored, steering of a transformers model and of the bridge, and one-line errors."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import saefeatures
from saefeatures import activations, interventions, models
from saefeatures.config import DB_ENV, OUT_ENV, project_data
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store
from tests.conftest import run_cli_here
from tests.tiny import save_sae

LAYER = 2  # the vectors' layers are 1..3, the SAE's is 2
LAST = 3
EMOTION = "happy"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
IDS = torch.tensor([[5, 60, 61, 62, 70, 71, 80, 81, 82, 83]])


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_llama_dir) -> dict[str, Any]:
    """Vectors at layers 1..3, an SAE at layer 2 and its alignments, through the commands."""
    root = tmp_path_factory.mktemp("api")
    env = {DB_ENV: str(root / "w.duckdb"), OUT_ENV: str(root / "out")}
    model = ("--model", str(tiny_llama_dir))
    text = str(project_data("corpora") / "templates.jsonl")
    sae = save_sae(root / "sae", activations.hook_name(LAYER), 64)
    align = ("--text", text, "--sample-rows", "4", "--null-directions", "200", "--top", "10")
    steps = [
        ("vectors", *model, "--emotions", "happy,sad,calm", "--layers", "1,2,3", "--offset", "10"),
        ("load", "--path", str(sae), *model),
        ("align", "--layer", str(LAYER), *model, *align, "--k-max", "8"),
    ]
    for step in steps:
        result = run_cli_here(*step, env=env)
        assert result.code == 0, (step, result.stderr)
    with Store(root / "w.duckdb", read_only=True) as store:
        sae_id = store.query("SELECT sae_id FROM saes")["sae_id"][0].as_py()
    return {
        "db": root / "w.duckdb",
        "out": root / "out",
        "model": models.store_name(str(tiny_llama_dir)),
        "sae": sae_id,
    }


@pytest.fixture(scope="module")
def ws(made):
    with saefeatures.open(made["db"], out=made["out"]) as opened:
        yield opened


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir) -> models.LoadedModel:
    return models.load(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def hf(tiny_llama_dir) -> tuple[Any, Any]:
    return (
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(),
        AutoTokenizer.from_pretrained(tiny_llama_dir),
    )


# -- the documentation -------------------------------------------------------------------


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def _assigned(block: str) -> set[str]:
    return {
        target.id
        for node in ast.parse(block).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def test_every_example_of_the_docs_runs(made, tiny_llama_dir):
    """The page's first block holds its settings; the rest run in order with this store's
    settings in their place, so an example that goes stale fails here."""
    settings, *examples = _python_blocks()
    bindings = {
        "DB": str(made["db"]),
        "OUT": str(made["out"]),
        "MODEL": str(tiny_llama_dir),
        "HF_MODEL": str(tiny_llama_dir),
        "CORPUS": "stories",
        "LAYER": LAYER,
        "EMOTION": EMOTION,
        "SAE_ID": made["sae"],
    }
    assert _assigned(settings) == set(bindings)
    namespace: dict[str, Any] = {"saefeatures": saefeatures, **bindings}
    for block in examples:
        exec(compile(block, str(DOCS), "exec"), namespace)
    assert namespace["vectors"].tensor.shape == (3, 64)
    assert len(namespace["best"]) == 5
    assert namespace["steered"].shape[1] > namespace["ids"].shape[1]


# -- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["denoised", "raw"])
def test_vectors_are_the_stored_rows(made, ws, method):
    vectors = ws.vectors(made["model"], "stories", LAYER, method=method)
    with Store(made["db"], read_only=True) as store:
        rows = store.query(
            "SELECT emotion, vector FROM emotion_vectors WHERE model = ? AND corpus = 'stories' "
            "AND layer = ? AND method = ? ORDER BY emotion",
            [made["model"], LAYER, method],
        ).to_pylist()
    assert vectors.names == [row["emotion"] for row in rows] == ["calm", "happy", "sad"]
    assert torch.equal(vectors.tensor, torch.tensor([row["vector"] for row in rows]))
    assert torch.equal(vectors["sad"], vectors.tensor[2])
    assert (vectors.model, vectors.corpus, vectors.layer) == (made["model"], "stories", LAYER)


def test_tables_read_as_frames_with_named_parameters(made, ws):
    features = ws.features(made["sae"])
    assert features["feature"].tolist() == list(range(32))
    top = ws.alignments(made["sae"], emotion=EMOTION, method="decoder_cosine", top=3)
    assert top["rank"].tolist() == [1, 2, 3] and set(top["emotion"]) == {EMOTION}
    assert len(ws.alignments()) > len(ws.alignments(emotion=EMOTION)) > 0
    counted = ws.sql("SELECT count(*) AS n FROM alignments WHERE emotion = $e", e=EMOTION)
    assert counted["n"][0] == len(ws.alignments(emotion=EMOTION))
    assert ws.saes()["sae_id"].tolist() == [made["sae"]]
    assert ws.sae(made["sae"]).cfg.d_sae == 32


# -- steering ----------------------------------------------------------------------------


def _forward(model: Any) -> Callable[[], torch.Tensor]:
    """The logits of IDS from a LoadedModel (its bridge), a bridge or a transformers model."""
    call = model.bridge if isinstance(model, models.LoadedModel) else model

    def logits() -> torch.Tensor:
        out = call(IDS)
        return (out if isinstance(out, torch.Tensor) else out.logits).float()

    return logits


@torch.no_grad()
def _steered(ws, model: Any, **how: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """Logits before, inside and after a steering block, and the block's edit."""
    forward = _forward(model)
    before = forward()
    with ws.steer(model, **how) as edit:
        inside = forward()
    return before, inside, forward(), edit


def _targets(loaded, hf) -> list[tuple[Any, dict[str, Any]]]:
    """Each kind of model `steer` takes, with what it needs besides."""
    return [(loaded, {}), (loaded.bridge, {}), (hf[0], {"tokenizer": hf[1]})]


@pytest.mark.parametrize("scale", [0.0, 2.0])
def test_a_direction_steers_inside_the_block_only_and_means_the_cli_scale(ws, loaded, hf, scale):
    """The bridge and a plain transformers model of the same weights are steered alike, with
    the unit of `saefeatures steer` (the mean residual norm on neutral text)."""
    neutral = [passage.text for passage in catalog.read_corpus(ws.store, "neutral")]
    unit = interventions.mean_residual_norm(loaded, neutral, [LAYER])[LAYER]
    inside_each = []
    for model, extra in _targets(loaded, hf):
        before, inside, after, edit = _steered(
            ws, model, emotion=EMOTION, layer=LAYER, scale=scale, **extra
        )
        assert torch.equal(before, after)
        assert edit.norm == pytest.approx(unit, rel=1e-4)
        if scale == 0:
            torch.testing.assert_close(inside, before, atol=1e-5, rtol=0)
        else:
            assert (inside - before).abs().max() > 1e-3
        inside_each.append(inside)
    for inside in inside_each[1:]:
        torch.testing.assert_close(inside, inside_each[0], atol=1e-4, rtol=0)


def test_a_large_push_at_the_last_layer_predicts_the_direction_logit_lens(ws, loaded, hf):
    """Pushed far along a vector, the residual is that vector: every position predicts the
    token the vector's logit lens ranks first."""
    vector = ws.vectors(loaded.name, "stories", LAST)[EMOTION]
    promoted = int(activations.logit_lens(loaded, vector[None].numpy(), 1)[0][0, 0])
    for model, extra in _targets(loaded, hf):
        before, inside, _, _ = _steered(
            ws, model, emotion=EMOTION, layer=LAST, scale=1000.0, **extra
        )
        assert inside.argmax(dim=-1).eq(promoted).all()
        assert not before.argmax(dim=-1).eq(promoted).all()


def test_features_steer_inside_the_block_only(made, ws, loaded, hf):
    aligned = ws.alignments(made["sae"], emotion=EMOTION, method="decoder_cosine", top=5)
    for model, extra in _targets(loaded, hf):
        how = {"sae": made["sae"], **extra}
        before, inside, after, edit = _steered(ws, model, emotion=EMOTION, k=5, scale=2.0, **how)
        assert list(edit.features) == aligned["feature"].tolist()
        assert torch.equal(before, after) and (inside - before).abs().max() > 1e-3
        _, still, _, _ = _steered(ws, model, features=[3, 7], scale=0.0, **how)
        torch.testing.assert_close(still, before, atol=1e-5, rtol=0)


# -- errors ------------------------------------------------------------------------------


def _steer(ws, model: Any, **how: Any) -> None:
    with ws.steer(model, **how):
        pass


def test_bad_input_is_one_line_naming_what_to_do(made, ws, loaded, hf, tmp_path):
    name, sae, plain = made["model"], made["sae"], hf[0]
    cases: list[tuple[Callable[[], Any], tuple[str, ...]]] = [
        (lambda: saefeatures.open(tmp_path / "nope.duckdb"), ("does not exist",)),
        (lambda: ws.vectors("owner/other", "stories", LAYER), ("owner/other", name, "1, 2, 3")),
        (lambda: ws.vectors(name, "novels", LAYER), ("corpus novels", "stories")),
        (lambda: ws.vectors(name, "stories", 7), ("layers 7", "at layers 1, 2, 3")),
        (lambda: ws.vectors(name, "stories", LAYER)["glorbed"], ("glorbed", "calm, happy")),
        (lambda: ws.features("no-sae"), ("no SAE 'no-sae'", "saefeatures saes")),
        (lambda: ws.alignments("no-sae"), ("no SAE 'no-sae'",)),
        (lambda: ws.sae("no-sae"), ("no SAE 'no-sae'",)),
        (lambda: ws.sql("SELEC 1"), ("SQL error", "syntax")),
        (lambda: ws.sql("DELETE FROM runs"), ("read-only",)),
        (lambda: ws.sql("SELECT $a AS a", b=1), ("SQL error",)),
        (lambda: _steer(ws, "a model", emotion=EMOTION, scale=1.0), ("cannot steer a str",)),
        (lambda: _steer(ws, loaded, emotion=EMOTION, layer=9, scale=1.0), ("out of range",)),
        (lambda: _steer(ws, loaded, emotion=EMOTION, scale=1.0), ("pass layer=",)),
        (lambda: _steer(ws, loaded, layer=LAYER, scale=1.0), ("emotion= or with features=",)),
        (lambda: _steer(ws, loaded, features=[1], scale=1.0), ("needs sae=",)),
        (lambda: _steer(ws, loaded, emotion=EMOTION, layer=1, scale=math.nan), ("finite",)),
        (
            lambda: _steer(ws, loaded, emotion="proud", layer=LAYER, scale=1.0),
            ("no denoised vectors for proud", "saefeatures vectors"),
        ),
        (
            lambda: _steer(ws, loaded, features=[32], sae=sae, scale=1.0),
            ("0..31", "not 32"),
        ),
        (
            lambda: _steer(ws, loaded, emotion=EMOTION, sae=sae, layer=1, scale=1.0),
            ("reads blocks.2.hook_resid_post",),
        ),
        (lambda: _steer(ws, plain, emotion=EMOTION, layer=LAYER, scale=1.0), ("tokenizer=",)),
        (
            lambda: _steer(ws, plain, emotion=EMOTION, layer=LAYER, scale=1.0, model_name="o/m"),
            ("model o/m", name),
        ),
    ]
    for call, fragments in cases:
        with pytest.raises(SaefeaturesError) as raised:
            call()
        message = str(raised.value)
        assert "\n" not in message, message
        for fragment in fragments:
            assert fragment in message, (fragment, message)
