"""pyproject.toml declares what requirements*.txt lock: the same distributions, each pin inside its range.

requirements.txt is the lock the README, the Dockerfile and CI install;
pyproject.toml is what `pip install .` resolves. A runtime dependency added to
one and not the other would give a package that installs but fails at its
first PostgreSQL URL or JWT, or a lock that tests versions the package refuses.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def locked(path: Path) -> dict[str, Requirement]:
    """The ``name==version`` lines of a requirements file (comments and ``-r`` includes left out)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    pins = [Requirement(line) for line in lines if line and not line.startswith("-")]
    return {canonicalize_name(pin.name): pin for pin in pins}


def declared(requirements: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


@pytest.mark.parametrize(
    ("lock", "section"),
    [("requirements.txt", "dependencies"), ("requirements-dev.txt", "test extra")],
)
def test_each_locked_distribution_is_declared_with_a_range_holding_its_pin(lock, section):
    pins = locked(ROOT / lock)
    ranges = declared(PROJECT["dependencies"] if section == "dependencies" else PROJECT["optional-dependencies"]["test"])
    assert sorted(ranges) == sorted(pins)
    for name, pin in pins.items():
        (exact,) = pin.specifier
        assert exact.operator == "==", f"{lock}: {pin} is not a pin"
        assert ranges[name].specifier.contains(exact.version), f"{lock} pins {pin}, pyproject.toml allows {ranges[name]}"
        assert ranges[name].extras == pin.extras, name


def test_dev_extra_includes_the_test_extra():
    assert f"{PROJECT['name']}[test]" in PROJECT["optional-dependencies"]["dev"]


def test_requires_python_is_the_developers_guide_minimum():
    assert PROJECT["requires-python"] == ">=3.11"
