"""Every command that computes runs where the hardware is best by default: `--device auto`
(cuda, then mps, then cpu), `--dtype auto` per device, and `SAEFEATURES_DEVICE` /
`SAEFEATURES_DTYPE` set both for a whole shell."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from saefeatures import models
from saefeatures.cli.app import app
from saefeatures.config import DEVICE_ENV, DTYPE_ENV
from tests.conftest import assert_user_error, run_cli_here

# train and evaluate default to the dtype an SAE is (or was) trained in; both accept auto.
DTYPE_OF_THE_SAE = {"train", "evaluate"}


def _commands(command: Any = None, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every leaf command of the CLI, with its words (`validate retrieval`)."""
    command = command or typer.main.get_command(app)
    children = getattr(command, "commands", None)
    if children is None:
        return [(" ".join(path), command)]
    return [
        found
        for name, child in sorted(children.items())
        for found in _commands(child, (*path, name))
    ]


def _param(command: Any, name: str) -> Any:
    return next((p for p in command.params if p.name == name), None)


COMPUTING = [(name, command) for name, command in _commands() if _param(command, "device")]


def test_the_commands_that_compute_are_found():
    names = {name for name, _ in COMPUTING}
    expected = {"run", "vectors", "geometry", "train", "evaluate", "load", "align", "steer"}
    assert expected | {"patch", "models info", "validate retrieval"} <= names


@pytest.mark.parametrize(("name", "command"), COMPUTING, ids=[n for n, _ in COMPUTING])
def test_device_and_dtype_default_to_auto_and_read_the_shell(name, command):
    device = _param(command, "device")
    assert device.default == "auto", name
    assert device.envvar == DEVICE_ENV, name
    assert device.opts == ["--device"], name
    dtype = _param(command, "dtype")
    assert dtype is not None, f"{name} has --device but no --dtype"
    if name in DTYPE_OF_THE_SAE:
        assert dtype.default is None and "auto" in dtype.help, name
    else:
        assert dtype.default == "auto" and dtype.envvar == DTYPE_ENV, name


def _required_values(command: Any) -> list[str]:
    """Placeholder values for a command's required arguments and options."""
    values: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if param.param_type_name == "argument":
            values.append("smollm2-135m-instruct")
        else:
            values += [param.opts[0], "1"]
    return values


@pytest.mark.parametrize(("name", "command"), COMPUTING, ids=[n for n, _ in COMPUTING])
def test_the_shell_device_reaches_every_command(name, command, tmp_path):
    """SAEFEATURES_DEVICE is the device of every command: an unknown one is refused by each,
    before anything is loaded or written."""
    db = tmp_path / "w.duckdb"
    env = {DEVICE_ENV: "tpu", "SAEFEATURES_DB": str(db), "SAEFEATURES_OUT": str(tmp_path / "o")}
    result = run_cli_here(*name.split(), *_required_values(command), env=env)
    assert_user_error(result, "'tpu'")
    assert not db.exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("available", "device"),
    [({"cuda", "mps"}, "cuda"), ({"mps"}, "mps"), (set(), "cpu")],
)
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, available, device):
    monkeypatch.setattr(models, "_available", lambda d: d == "cpu" or d in available)
    assert models.concrete_device("auto") == device
    assert models.concrete_device("cpu") == "cpu"


@pytest.mark.parametrize(("native", "dtype"), [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_follows_the_device(monkeypatch, native, dtype):
    monkeypatch.delenv(DTYPE_ENV, raising=False)
    monkeypatch.setattr(models, "_available", lambda d: d in ("cuda", "cpu"))
    monkeypatch.setattr(models, "native_bfloat16", lambda d: native and d == "cuda")
    assert models.concrete_dtype("auto", "auto") == dtype
    assert models.concrete_dtype("auto", "cpu") == "float32"
    assert models.concrete_dtype("float32", "cuda") == "float32"
    monkeypatch.setenv(DTYPE_ENV, "bfloat16")
    assert models.concrete_dtype("auto", "cpu") == "bfloat16"
