#!/usr/bin/env bash
# The SiteHawk test command (see README): installs what is missing, then runs lint, formatting,
# types, the import layers and the test suite, and finally the edge tests again in a torch-free
# Python 3.10 virtualenv that holds only the base (edge) install.
#
# Reruns are fast: installs are skipped while pyproject.toml is unchanged since the last one.
#
# Environment:
#   SITEHAWK_SKIP_INSTALL=1   skip apt/pip entirely (a venv that was never set up is still set up)
#   SITEHAWK_FORCE_INSTALL=1  run the pip installs even if pyproject.toml is unchanged
#   SITEHAWK_SLOW=1           also run tests marked `slow` (same as pytest --run-slow)
#   SITEHAWK_PY310=PATH       the Python 3.10 interpreter for the edge-only run (default: pyenv's)
#   PYTHON=PATH               the main interpreter (default: python3)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"

PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"
VENV310="$REPO_ROOT/.venv-py310"
STAMP_DIR="$REPO_ROOT/.cache/test-sh"
# Packages the edge install must never pull in (DESIGN.md, "Packages and layers").
EDGE_FORBIDDEN=(torch transformers peft bitsandbytes gymnasium stable_baselines3)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Mosquitto lives in /usr/sbin, which is not on every user's PATH; the broker fixtures need it.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac

START_S=$SECONDS
RESULTS=()
NUM_FAILED=0

section() { printf '\n==== %s ====\n' "$*"; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
    exit 1
}
is_on() { [[ "${1:-}" =~ ^(1|true|yes|on)$ ]]; }

# check NAME CMD...: run one check, record the result, and go on to the next one.
check() {
    local name="$1" start=$SECONDS rc=0
    shift
    section "$name"
    "$@" || rc=$?
    if ((rc == 0)); then
        RESULTS+=("PASS  $name ($((SECONDS - start)) s)")
    else
        RESULTS+=("FAIL  $name (exit $rc, $((SECONDS - start)) s)")
        NUM_FAILED=$((NUM_FAILED + 1))
    fi
}

# Fingerprint of what an install depends on: pyproject.toml, the interpreter, and the top-level
# packages (setuptools' editable install maps those when it runs, so a new one needs a reinstall).
install_fingerprint() {
    {
        cat pyproject.toml
        "$1" -c 'import sys; print(sys.executable, sys.version)'
        find . -mindepth 2 -maxdepth 2 -name __init__.py | sort
    } | sha256sum | cut -d' ' -f1
}

# pip install -q, minus one warning per package that this image's pip.conf causes (it names
# local index directories that hold only some packages).
pip_install() {
    local python="$1"
    shift
    "$python" -m pip install -q "$@" 2>&1 |
        { grep -v "^WARNING: Location 'file://.*' is ignored: it is neither a file nor a directory" || true; }
}

ensure_mosquitto() {
    if command -v mosquitto >/dev/null; then
        echo "mosquitto: $(command -v mosquitto)"
        return
    fi
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "mosquitto is missing and installing it needs root (or sudo)"
        sudo="sudo"
    fi
    echo "mosquitto not found: installing it with apt-get"
    (
        # Keep apt from starting the system broker: the tests start their own on free ports.
        policy=/usr/sbin/policy-rc.d
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
            $sudo chmod +x "$policy"
            trap '$sudo rm -f "$policy"' EXIT
        fi
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients
    )
    command -v mosquitto >/dev/null || die "apt-get installed mosquitto but no mosquitto binary is on PATH"
}

# True when the main interpreter already holds this checkout's editable install and the torch pin.
main_install_is_current() {
    local stamp="$STAMP_DIR/main.sha256"
    [[ -f $stamp && "$(cat "$stamp")" == "$(install_fingerprint "$PYTHON")" ]] || return 1
    # -I: without the current directory on sys.path, so the build's ./sitehawk.egg-info is not
    # mistaken for the installed distribution.
    "$PYTHON" -I - "$REPO_ROOT" "${TORCH_PIN#torch==}" <<'EOF'
import json, sys
from importlib import metadata
from pathlib import Path

repo_root, torch_version = sys.argv[1], sys.argv[2]
try:
    url = json.loads(metadata.distribution("sitehawk").read_text("direct_url.json") or "{}")
    installed_torch = metadata.version("torch")
except metadata.PackageNotFoundError:
    sys.exit(1)
editable_here = url.get("dir_info", {}).get("editable") and url.get("url") == Path(repo_root).as_uri()
sys.exit(0 if editable_here and installed_torch.split("+")[0] == torch_version else 1)
EOF
}

install_main() {
    if ! is_on "${SITEHAWK_FORCE_INSTALL:-}" && main_install_is_current; then
        echo "up to date (pyproject.toml unchanged since the last install; SITEHAWK_FORCE_INSTALL=1 redoes it)"
        return
    fi
    # torch first, pinned: it is a local CPU wheel here, whereas a looser requirement resolved
    # later would pull a multi-GB CUDA build.
    echo "pip install $TORCH_PIN"
    pip_install "$PYTHON" "$TORCH_PIN"
    echo "pip install -e '.[all]'  (a fresh machine compiles llama-cpp-python: about 7 min)"
    pip_install "$PYTHON" -e '.[all]'
    mkdir -p "$STAMP_DIR"
    install_fingerprint "$PYTHON" >"$STAMP_DIR/main.sha256"
}

find_python310() {
    if [[ -n "${SITEHAWK_PY310:-}" ]]; then
        echo "$SITEHAWK_PY310"
        return
    fi
    local roots=() root candidate
    if command -v pyenv >/dev/null; then roots+=("$(pyenv root)"); fi
    roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
    for root in "${roots[@]}"; do
        candidate="$(find "$root/versions" -maxdepth 3 -path '*/versions/3.10*/bin/python' \
            2>/dev/null | sort -V | tail -n 1)"
        if [[ -n $candidate ]]; then
            echo "$candidate"
            return
        fi
    done
    command -v python3.10 || return 1
}

setup_venv310() {
    local python310
    python310="$(find_python310)" ||
        die "no Python 3.10 found (looked in pyenv's versions and on PATH); set SITEHAWK_PY310=/path/to/python3.10"
    "$python310" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' ||
        die "$python310 is not Python 3.10"
    if [[ -x $VENV310/bin/python ]] &&
        "$VENV310/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
        echo "reusing $VENV310 ($("$VENV310/bin/python" --version))"
    else
        echo "creating $VENV310 from $python310"
        rm -rf "$VENV310"
        "$python310" -m venv "$VENV310"
        # The pip bundled with 3.10.13 (23.0) is old; a current one resolves and reports better.
        pip_install "$VENV310/bin/python" --upgrade pip
    fi
    local stamp="$VENV310/.sitehawk-install.sha256" fingerprint
    fingerprint="$(install_fingerprint "$VENV310/bin/python")"
    if [[ -f $stamp ]] && { is_on "${SITEHAWK_SKIP_INSTALL:-}" ||
        { ! is_on "${SITEHAWK_FORCE_INSTALL:-}" && [[ "$(cat "$stamp")" == "$fingerprint" ]]; }; }; then
        echo "edge install up to date"
        return
    fi
    echo "pip install -e '.[test]'  (base = edge dependencies only)"
    pip_install "$VENV310/bin/python" -e '.[test]'
    echo "$fingerprint" >"$stamp"
}

assert_venv310_is_torch_free() {
    "$VENV310/bin/python" - "${EDGE_FORBIDDEN[@]}" <<'EOF'
import importlib.util, sys

present = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None]
if present:
    sys.exit(f"the edge-only install pulled in {present}: check [project].dependencies")
print("none of", ", ".join(sys.argv[1:]), "is importable")
EOF
}

run_edge_tests_py310() {
    local dirs=() dir
    # the MQTT integration tests use only edge + a real broker: they run on 3.10 too
    for dir in tests/edge tests/firmware_config tests/integration/test_mqtt_outbox.py \
        tests/integration/test_agent_mqtt.py; do
        [[ -e $dir ]] && dirs+=("$dir")
    done
    ((${#dirs[@]} > 0)) || {
        echo "no tests/edge or tests/firmware_config directory" >&2
        return 1
    }
    "$VENV310/bin/python" -m pytest "${dirs[@]}"
}

# ---------------------------------------------------------------------------------------------
section "SiteHawk tests: $REPO_ROOT ($("$PYTHON" --version))"
if is_on "${SITEHAWK_SLOW:-}"; then
    echo "slow tests: included (SITEHAWK_SLOW=$SITEHAWK_SLOW)"
else
    echo "slow tests: skipped (SITEHAWK_SLOW=1 includes them)"
fi

if is_on "${SITEHAWK_SKIP_INSTALL:-}"; then
    section "install: skipped (SITEHAWK_SKIP_INSTALL=1)"
else
    section "install: system packages"
    ensure_mosquitto
    section "install: Python packages ($PYTHON)"
    install_main
fi

SCRIPTS_DIR="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"

check "ruff check" "$PYTHON" -m ruff check .
check "ruff format --check" "$PYTHON" -m ruff format --check .
check "mypy" "$PYTHON" -m mypy
check "lint-imports" "$SCRIPTS_DIR/lint-imports"
check "pytest ($("$PYTHON" --version))" "$PYTHON" -m pytest

section "Python 3.10 edge-only virtualenv ($VENV310)"
setup_venv310
check "py3.10 venv is torch-free" assert_venv310_is_torch_free
check "py3.10 compiles edge + firmware_config" "$VENV310/bin/python" -m compileall -q edge firmware_config
check "pytest (Python 3.10, edge-only install)" run_edge_tests_py310

# ---------------------------------------------------------------------------------------------
section "summary"
printf '%s\n' "${RESULTS[@]}"
if ((NUM_FAILED > 0)); then
    echo "test.sh: FAILED: $NUM_FAILED of ${#RESULTS[@]} checks failed ($((SECONDS - START_S)) s)"
    exit 1
fi
echo "test.sh: OK: all ${#RESULTS[@]} checks passed ($((SECONDS - START_S)) s)"
