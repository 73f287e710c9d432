"""Every console script declared in pyproject.toml resolves to a callable `main`."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SCRIPTS: dict[str, str] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]


def test_declared_scripts_are_installed() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    missing = {name: target for name, target in SCRIPTS.items() if installed.get(name) != target}
    assert not missing, f"not installed as declared (pip install -e .): {missing}"


@pytest.mark.parametrize(("name", "target"), sorted(SCRIPTS.items()))
def test_script_target_is_callable(name: str, target: str) -> None:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr)), f"{name} -> {target} is not callable"
