#!/usr/bin/env bash
# Execute notebooks/design-review.ipynb headless against a result directory.
#
#   notebooks/run.sh [RESULTS_DIR] [execute.py options, e.g. --output FILE]
#
# RESULTS_DIR defaults to results/quickstart. Installs notebooks/requirements.txt once into a
# virtual environment at $NOTEBOOK_VENV (default target/nbvenv, relative to the repository
# root) and reuses it while requirements.txt and the interpreter are unchanged. Where
# `python3 -m venv` cannot make a venv with pip (Debian without python3-venv: no ensurepip),
# it falls back to `python3 -m pip install --target $NOTEBOOK_VENV/site` and PYTHONPATH.
# NOTEBOOK_INSTALL=venv|target forces one way (default: auto); PYTHON picks the interpreter
# (default python3).
#
# The notebook runs in memory (nbclient); the committed file is never written, so its outputs
# stay cleared. Exit status: 0 when every cell ran, non-zero when a cell failed or the
# environment could not be set up.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
results="${1:-$root/results/quickstart}"
shift || true
venv="${NOTEBOOK_VENV:-target/nbvenv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"
mode="${NOTEBOOK_INSTALL:-auto}"
requirements="$here/requirements.txt"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install CPython 3.11+ (Debian: apt-get install python3 python3-venv)" >&2
  exit 2
fi
if [ ! -f "$results/summary.csv" ] || [ ! -f "$results/runs.csv" ]; then
  echo "error: $results: not a routelab result directory (needs summary.csv and runs.csv)" >&2
  echo "       make one with: cargo run --release -- run scenarios/smoke/sweep-load.yaml --out $results" >&2
  exit 2
fi

# What the installed environment must match: the requirements and the interpreter.
want="$( (cat "$requirements"; "$python" -c 'import sys; print(sys.executable, sys.version)') | sha256sum | cut -d' ' -f1)"
stamp="$venv/.installed"

ready() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }

install_venv() {
  rm -rf "$venv"
  "$python" -m venv "$venv" >/dev/null 2>&1 || return 1
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 || return 1
  echo "notebook: installing requirements into $venv (venv)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore -r "$requirements"
}

install_target() {
  rm -rf "$venv"
  mkdir -p "$venv"
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "error: $python has neither a working venv nor pip (Debian: apt-get install python3-venv python3-pip)" >&2
    return 1
  fi
  echo "notebook: installing requirements into $venv/site (pip --target)" >&2
  "$python" -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore --target "$venv/site" -r "$requirements"
}

if ! ready; then
  case "$mode" in
    venv) install_venv ;;
    target) install_target ;;
    auto)
      if ! install_venv; then
        echo "notebook: $python -m venv gave no working pip (ensurepip missing?); falling back to pip --target" >&2
        install_target
      fi
      ;;
    *) echo "error: NOTEBOOK_INSTALL=$mode: expected auto, venv or target" >&2; exit 2 ;;
  esac
  echo "$want" > "$stamp"
fi

if [ -x "$venv/bin/python" ]; then
  run_python=("$venv/bin/python")
else
  export PYTHONPATH="$venv/site${PYTHONPATH:+:$PYTHONPATH}"
  run_python=("$python")
fi
exec "${run_python[@]}" "$here/execute.py" "$here/design-review.ipynb" --results "$results" "$@"
