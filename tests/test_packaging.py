"""Packaging: every package folder ships in a regular install; dependency floors carry security fixes."""
from __future__ import annotations

from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_for_setuptools():
    setuptools = PYPROJECT["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    expected = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            expected.add(".".join([package, *relative.parts]))
    assert set(setuptools["packages"]) == expected


def test_dependency_floors_carry_the_security_fixes():
    """reliability.md 30: torch ≥ 2.6 (weights_only default), a current gradio, Pillow ≥ 11."""
    floors = {}
    for spec in PYPROJECT["project"]["dependencies"] + [d for extra in PYPROJECT["project"]["optional-dependencies"].values() for d in extra]:
        requirement = Requirement(spec)
        for clause in requirement.specifier:
            if clause.operator == ">=":
                floors[requirement.name.lower()] = Version(clause.version)
    assert floors["torch"] >= Version("2.6")
    assert floors["pillow"] >= Version("11.0")
    assert floors["gradio"] >= Version("6.0")
    assert floors["safetensors"] >= Version("0.4")
    assert floors["transformers"] >= Version("5.0")


def test_constraints_pin_every_floor_exactly():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = Version(version.strip())
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {requirement.specifier}"
