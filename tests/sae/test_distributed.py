"""`train` under torchrun: two gloo processes on the CPU train the SAEs one process trains."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saefeatures.config import DB_ENV, OUT_ENV, project_data
from saefeatures.errors import SaefeaturesError
from saefeatures.options import TrainOptions
from saefeatures.sae import api, distributed
from saefeatures.sae.distributed import Team
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, digest, run_cli_here

DATASET = str(project_data("corpora") / "templates.jsonl")
LAYERS = (1, 3)
TRAIN = ("--layers", "1,3", "--config", "tiny", "--training-tokens", "4096", "--dataset", DATASET)
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2")
TORCHRUN_VARS = {
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_NAME",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch_env(workspace: dict[str, str]) -> dict[str, str]:
    """This environment without torchrun's variables (a test run under torchrun must not
    hand its own rank to the launch), one thread a process, and the workspace."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if key not in TORCHRUN_VARS and not key.startswith("TORCHELASTIC_")
    }
    return {**kept, "OMP_NUM_THREADS": "1", **workspace}


def _train(model_dir: Path) -> tuple[str, ...]:
    """`train` of layers 1 and 3 of the tiny model on 4,096 tokens of the shipped templates."""
    return ("train", "--model", str(model_dir), *TRAIN, "--device", "cpu")


def _workspace(root: Path) -> dict[str, str]:
    db = root / "w.duckdb"
    with Store(db) as store, store.run("seed", {}):
        pass
    return {DB_ENV: str(db), OUT_ENV: str(root / "out")}


def _saved(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        folder.name: load_file(str(folder / "sae_weights.safetensors"))
        for folder in (out / "saes").iterdir()
    }


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_llama_dir) -> dict[str, dict[str, torch.Tensor]]:
    """The SAEs of layers 1 and 3 trained by one process (here, one thread)."""
    root = tmp_path_factory.mktemp("single")
    options = TrainOptions(
        model=str(tiny_llama_dir),
        layers=LAYERS,
        config="tiny",
        dataset=DATASET,
        tokens=4096,
        device="cpu",
        progress=False,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with Store(root / "w.duckdb") as store:
            api.train(store, root / "out", options)
    finally:
        torch.set_num_threads(threads)
    return _saved(root / "out")


def test_two_ranks_train_the_saes_of_one_process(tiny_llama_dir, tmp_path, single):
    workspace = _workspace(tmp_path)
    port = str(_free_port())
    done = subprocess.run(
        [*TORCHRUN, "--master-port", port, "-m", "saefeatures", *_train(tiny_llama_dir)],
        capture_output=True,
        text=True,
        env=_launch_env(workspace),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("SAE training") == 1  # rank 0 alone reports
    out = Path(workspace[OUT_ENV])
    spread = _saved(out)
    assert sorted(spread) == sorted(single) and len(spread) == len(LAYERS)
    for sae_id, tensors in spread.items():
        for name, tensor in tensors.items():
            torch.testing.assert_close(tensor, single[sae_id][name], rtol=0, atol=1e-5)
    with Store(Path(workspace[DB_ENV]), read_only=True) as store:
        rows = store.con.execute("SELECT sae_id, count(*) FROM saes GROUP BY sae_id").fetchall()
    assert sorted(rows) == [(sae_id, 1) for sae_id in sorted(spread)]
    assert not list(out.glob("sae-runs/*"))  # no rank left a checkpoint behind


@pytest.mark.parametrize("rank", [0, 1])
def test_more_ranks_than_layers_is_one_error_line(tiny_llama_dir, tmp_path, rank):
    workspace = _workspace(tmp_path)
    before = digest(Path(workspace[DB_ENV]))
    torchrun = {"WORLD_SIZE": "3", "RANK": str(rank), "LOCAL_RANK": str(rank)}
    result = run_cli_here(*_train(tiny_llama_dir), env={**workspace, **torchrun})
    assert_user_error(result, "3 processes for 2 layer(s)")
    assert digest(Path(workspace[DB_ENV])) == before


def test_layers_are_split_in_contiguous_slices():
    layers = [2, 4, 6, 8, 10]
    assert [distributed.share(layers, Team(r, 2, r)) for r in range(2)] == [[2, 4, 6], [8, 10]]
    assert [distributed.share(layers, Team(r, 5, r)) for r in range(5)] == [[n] for n in layers]
    assert distributed.share(layers, None) == layers


def test_too_many_ranks_are_refused():
    distributed.check_size([1, 2], Team(1, 2, 1))
    distributed.check_size([1], None)
    with pytest.raises(SaefeaturesError, match="start at most 2"):
        distributed.check_size([1, 2], Team(0, 3, 0))


def test_backend_follows_the_device():
    assert distributed.backend("cuda") == "nccl"
    assert distributed.backend("cuda:1") == "nccl"
    assert distributed.backend("cpu") == "gloo"
    assert distributed.backend("mps") == "gloo"


def test_team_from_torchrun_variables():
    assert distributed.from_env({}) is None
    assert distributed.from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None
    team = distributed.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert team == Team(rank=3, world=4, local_rank=1) and not team.leader
