"""`saefeatures load --release R --saelens-id S` through the real command line, offline.

A Hugging Face hub cache is laid out as a download leaves it for a real SAELens release,
Gemma Scope 2 on Gemma 3 270M (resid_post, layer 12), and filled with a small SAE of the
same format made here (Gemma Scope's `params.safetensors` and `config.json`, d_in 640, as
the embedded gemma-3-270m). With `HF_HUB_OFFLINE=1` SAELens' own pretrained loader reads
it; the SAE is registered and its stored copy holds the weights written here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import duckdb
import pytest
import torch
from safetensors.torch import load_file, save

from saefeatures.store.database import Store
from tests.conftest import assert_user_error, digest, run_cli

RELEASE = "gemma-scope-2-270m-pt-res"
SAE_ID = "layer_12_width_16k_l0_medium"
REPO_ID = "google/gemma-scope-2-270m-pt"
FOLDER = "resid_post/layer_12_width_16k_l0_medium"
MODEL = "gemma-3-270m"  # the embedded Gemma 3 270M base: width 640, 18 layers
D_IN, D_SAE = 640, 48
COMMIT = hashlib.sha1(b"a snapshot of the SAE repository").hexdigest()


def _cache_file(cache: Path, repo_id: str, filename: str, data: bytes) -> None:
    """One file of a hub repository as `hf_hub_download` leaves it in the cache: the bytes
    in blobs/, a relative symlink under snapshots/<commit>/, the branch in refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)


def _gemma_scope_weights() -> dict[str, torch.Tensor]:
    """A JumpReLU SAE under Gemma Scope's tensor names and layout (`w_enc` is d_in x d_sae)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "w_enc": torch.randn(D_IN, D_SAE, generator=generator) / D_IN**0.5,
        "w_dec": torch.randn(D_SAE, D_IN, generator=generator) / D_SAE**0.5,
        "b_enc": torch.randn(D_SAE, generator=generator) * 0.1,
        "b_dec": torch.randn(D_IN, generator=generator) * 0.1,
        "threshold": torch.rand(D_SAE, generator=generator),
    }


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    db = tmp_path / "w.duckdb"
    with Store(db) as store, store.run("seed", {}):
        pass
    hf_home = tmp_path / "hf"
    return {
        "SAEFEATURES_DB": str(db),
        "SAEFEATURES_OUT": str(tmp_path / "out"),
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_OFFLINE": "1",
    }


def test_the_release_resolves_to_the_cached_repository():
    """What the cache below must hold, as SAELens' registry says."""
    from sae_lens.loading.pretrained_saes_directory import (
        get_pretrained_saes_directory,
        get_repo_id_and_folder_name,
    )

    entry = get_pretrained_saes_directory()[RELEASE]
    assert entry.model == "google/gemma-3-270m" and entry.conversion_func == "gemma_3"
    assert get_repo_id_and_folder_name(RELEASE, SAE_ID) == (REPO_ID, FOLDER)


@pytest.mark.embedded
def test_load_a_real_release_from_the_offline_cache(env):
    weights = _gemma_scope_weights()
    cache = Path(env["HF_HUB_CACHE"])
    config = {
        "architecture": "jump_relu",
        "model_name": "gemma-v3-270m-pt",
        "hf_hook_point_in": "model.layers.12.output",
        "width": D_SAE,
        "l0": 60,
    }
    _cache_file(cache, REPO_ID, f"{FOLDER}/config.json", json.dumps(config).encode())
    _cache_file(cache, REPO_ID, f"{FOLDER}/params.safetensors", save(weights))

    args = ("load", "--release", RELEASE, "--saelens-id", SAE_ID, "--model", MODEL)
    result = run_cli(*args, "--device", "cpu", env=env)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr

    con = duckdb.connect(env["SAEFEATURES_DB"], read_only=True)
    try:
        rows = con.execute(
            "SELECT sae_id, model, layer, hook, architecture, d_in, d_sae, source, path, config "
            "FROM saes"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1
    sae_id, model, layer, hook, architecture, d_in, d_sae, source, path, stored = rows[0]
    assert (model, layer, hook) == (MODEL, 12, "blocks.12.hook_resid_post")
    assert (architecture, d_in, d_sae, source) == ("jumprelu", D_IN, D_SAE, "pretrained")
    assert json.loads(stored)["source"] == f"{RELEASE}/{SAE_ID}"
    assert sae_id in result.stdout

    copy = load_file(str(Path(path) / "sae_weights.safetensors"))
    for ours, theirs in (
        ("W_enc", "w_enc"),
        ("W_dec", "w_dec"),
        ("b_enc", "b_enc"),
        ("b_dec", "b_dec"),
        ("threshold", "threshold"),
    ):
        assert torch.equal(copy[ours], weights[theirs]), ours
    cfg = json.loads((Path(path) / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE
    hook_name = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    assert hook_name == "blocks.12.hook_resid_post"


def test_offline_without_the_sae_in_the_cache(env):
    db = Path(env["SAEFEATURES_DB"])
    before = digest(db)
    result = run_cli(
        "load", "--release", RELEASE, "--saelens-id", SAE_ID, "--model", MODEL, env=env
    )
    assert_user_error(result, f"{RELEASE}/{SAE_ID} is not in the Hugging Face cache")
    assert digest(db) == before
