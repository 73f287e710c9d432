"""The package layers hold: import-linter contracts pass, and the edge CLI stays torch-free."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Must never be imported by the on-device runtime (DESIGN.md, "Packages and layers").
FORBIDDEN_ON_EDGE = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "gymnasium",
    "stable_baselines3",
    "trainer",
    "export",
)


def test_import_linter_contracts_hold() -> None:
    if importlib.util.find_spec("importlinter") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(
    ("module", "prog"),
    [("edge.cli", "sitehawk-edge"), ("firmware_config.cli", "sitehawk-fleet")],
)
def test_cli_help_imports_no_heavy_packages(module: str, prog: str) -> None:
    # A fresh interpreter: this pytest process may already hold torch from other tests.
    probe = textwrap.dedent(
        f"""
        import sys
        sys.argv = [{prog!r}, "--help"]
        import {module} as cli
        try:
            cli.main()
        except SystemExit as exc:
            assert exc.code in (0, None), f"--help exited with {{exc.code!r}}"
        loaded = sorted(
            name for name in {FORBIDDEN_ON_EDGE!r}
            if any(m == name or m.startswith(name + ".") for m in sys.modules)
        )
        assert not loaded, f"{module} --help imported {{loaded}}"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
