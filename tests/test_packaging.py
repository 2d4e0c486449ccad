"""What ``pyproject.toml`` declares: tested caps for ray, optuna and torch that agree with
``constraints.txt`` and the installed versions, the dashboard viewers as an extra, and every
third-party module that ``raygym/`` imports declared as a dependency or an extra.

Read with tomllib and packaging's own parsers, against the distributions installed here.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CAPPED = ("ray", "optuna", "torch")
"""raygym uses private Ray / Optuna attributes (raygym/compat.py) and torch's exporters."""


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements(items: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, items)}


def _pins() -> dict[str, Version]:
    """``constraints.txt``: distribution -> pinned version."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt pins exactly: {line}"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def _upper(spec: SpecifierSet) -> Version:
    uppers = [Version(s.version) for s in spec if s.operator == "<"]
    assert len(uppers) == 1, f"one '<' cap expected in {spec}"
    return uppers[0]


@pytest.mark.parametrize("name", CAPPED)
def test_installed_stack_satisfies_the_declared_range(name: str) -> None:
    """A venv upgraded past a cap (not yet tested) fails here, not somewhere in Ray."""
    spec = _requirements(_project()["dependencies"])[name].specifier
    installed = Version(metadata.version(name))
    assert installed in spec, (f"{name} {installed} is installed but pyproject.toml declares "
                               f"{spec}: run the suite on it, then move the cap and "
                               "constraints.txt together")


@pytest.mark.parametrize("name", CAPPED)
def test_cap_is_the_next_minor_of_the_tested_pin(name: str) -> None:
    """The cap and constraints.txt move together: a cap raised without a new tested pin (or
    a pin outside the range) fails."""
    spec = _requirements(_project()["dependencies"])[name].specifier
    pin = _pins()[name]
    assert pin in spec
    assert _upper(spec) == Version(f"{pin.major}.{pin.minor + 1}"), (
        f"{name}: cap {_upper(spec)} but constraints.txt tested {pin}")


def test_constraints_pin_every_declared_dependency() -> None:
    """Each core and dashboard dependency has its tested version in constraints.txt."""
    project = _project()
    declared = {**_requirements(project["dependencies"]),
                **_requirements(project["optional-dependencies"]["dashboard"])}
    pins = _pins()
    missing = sorted(set(declared) - set(pins))
    assert not missing, f"not pinned in constraints.txt: {missing}"
    outside = {n: str(pins[n]) for n, r in declared.items() if pins[n] not in r.specifier}
    assert not outside, f"pins outside pyproject's ranges: {outside}"


def test_viewers_are_the_dashboard_extra() -> None:
    project = _project()
    core = _requirements(project["dependencies"])
    extras = {k: _requirements(v) for k, v in project["optional-dependencies"].items()}
    viewers = {"optuna-dashboard", "tensorboard"}
    assert viewers.isdisjoint(core), "a search needs neither viewer"
    assert set(extras["dashboard"]) == viewers
    assert viewers <= set(extras["test"]), "the dashboard tests run in CI"
    assert canonicalize_name("tensorboardX") in {
        canonicalize_name(Requirement(r).name) for r in metadata.requires("ray") or []
        if Requirement(r).marker is None or Requirement(r).marker.evaluate({"extra": "tune"})
    }, "Tune's event files (tensorboardX) come with ray[tune], not with the viewers"
    smp = core["segmentation-models-pytorch"].specifier
    assert Version("0.5.9") not in smp and Version("0.6.0") in smp, \
        "Focal and Tversky take class_weights from smp 0.6"


def _imported_top_modules() -> dict[str, list[str]]:
    """Third-party top-level module -> raygym files importing it (lazily or not)."""
    found: dict[str, list[str]] = {}
    for file in sorted((REPO / "raygym").rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names}:
                if top not in sys.stdlib_module_names and top != "raygym":
                    found.setdefault(top, []).append(str(file.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared() -> None:
    """A module raygym imports must come from a declared distribution (core or an extra),
    not only through another package's dependencies (opencv came with albumentations)."""
    project = _project()
    declared = set(_requirements(project["dependencies"]))
    for name, items in project["optional-dependencies"].items():
        if name != "test":
            declared |= set(_requirements(items))
    providers = metadata.packages_distributions()
    imported = _imported_top_modules()
    assert {"cv2", "torch", "ray"} <= set(imported)
    # a module of an extra that is not installed here (bohb's ConfigSpace in CI) has no
    # provider to look up: its own name must then be the declared distribution's
    undeclared = {module: files[0] for module, files in imported.items()
                  if not declared & {canonicalize_name(d)
                                     for d in providers.get(module, [module])}}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
