"""Suite-wide pytest hooks: hardware- and time-based skipping of marked tests.

This file must import nothing from the project and nothing heavy (no torch): it also runs in
the torch-free Python 3.10 virtualenv that tests the edge install.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SLOW_ENV_VAR = "SITEHAWK_SLOW"
TEGRA_RELEASE_FILE = Path("/etc/nv_tegra_release")
TESTS_DIR = Path(__file__).resolve().parent
PROJECT_PACKAGES = ("firmware_config", "edge", "trainer", "export")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help=f"run tests marked slow (>10 s); same as {SLOW_ENV_VAR}=1",
    )


def pytest_configure(config: pytest.Config) -> None:
    # tests/edge/__init__.py without tests/__init__.py makes the test dir importable as `edge`,
    # shadowing the real package (in every pytest import mode).
    if not (TESTS_DIR / "__init__.py").exists():
        shadowing = [
            str(init.relative_to(TESTS_DIR.parent))
            for init in (TESTS_DIR / name / "__init__.py" for name in PROJECT_PACKAGES)
            if init.exists()
        ]
        if shadowing:
            raise pytest.UsageError(
                f"{', '.join(shadowing)} would shadow the real package of the same name: "
                "delete it (test dirs need no __init__.py)"
            )


def _slow_enabled(config: pytest.Config) -> bool:
    env_value = os.environ.get(SLOW_ENV_VAR, "").strip().lower()
    return bool(config.getoption("--run-slow")) or env_value in {"1", "true", "yes", "on"}


def _is_jetson() -> bool:
    return TEGRA_RELEASE_FILE.exists()


@functools.lru_cache(maxsize=1)
def _cuda_status() -> tuple[bool, str]:
    """Whether a CUDA device is usable, and why not when it isn't.

    torch is asked in a subprocess: importing it here would slow every run, and initialising
    CUDA in the pytest process breaks tests that fork (multi-rank gloo/NCCL tests).
    """
    has_driver = _is_jetson()  # Jetsons have CUDA but (before JetPack 6) no nvidia-smi
    if not has_driver and shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            listing = None
        has_driver = listing is not None and listing.returncode == 0 and "GPU" in listing.stdout
    if not has_driver:
        return False, "no CUDA GPU (nvidia-smi lists none and this is not a Jetson)"
    if importlib.util.find_spec("torch") is None:
        return True, ""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        return False, "a GPU is present but torch.cuda.is_available() is False (CPU-only torch?)"
    return True, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = _slow_enabled(config)
    skip_slow = pytest.mark.skip(
        reason=f"slow test (>10 s): run with --run-slow or {SLOW_ENV_VAR}=1"
    )
    skip_jetson = pytest.mark.skip(reason=f"needs a Jetson ({TEGRA_RELEASE_FILE} not found)")
    for item in items:
        if item.get_closest_marker("slow") is not None and not run_slow:
            item.add_marker(skip_slow)
        if item.get_closest_marker("jetson") is not None and not _is_jetson():
            item.add_marker(skip_jetson)
        if item.get_closest_marker("gpu") is not None:
            # Probed only when a gpu test is actually collected.
            cuda_ok, why_not = _cuda_status()
            if not cuda_ok:
                item.add_marker(pytest.mark.skip(reason=f"gpu test: {why_not}"))


#: Modules that hold or compute the simulator's ground truth: the agent, the observation builder
#: and the alert pipeline must never import them (DESIGN.md: the agent never reads ground truth).
GROUND_TRUTH_MODULES = (
    "edge.sim.world",
    "edge.sim.render",
    "edge.sim.truth",
    "edge.sim.boxes",
    "edge.sim.figures",
    "edge.sim.generate",
    "edge.sim.perception",
    "edge.sim.virtual",
    "edge.sim.panorama",
    "edge.sim.scoring",
    "edge.sim.overview",
    "edge.camera.virtual",
    "trainer",
)


@pytest.fixture
def assert_no_ground_truth_imported():  # type: ignore[no-untyped-def]
    """Import ``modules`` in a fresh interpreter; fail if any ground-truth module came along."""

    def check(*modules: str) -> None:
        probe = (
            f"import sys, {', '.join(modules)}\n"
            f"bad = sorted(m for m in sys.modules if m.startswith({GROUND_TRUTH_MODULES!r}))\n"
            "assert not bad, bad\n"
        )
        repo = Path(__file__).resolve().parents[1]
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr

    return check
