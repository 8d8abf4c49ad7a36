#!/usr/bin/env bash
# Build spprof for every other supported CPython found on this machine
# (pyenv installs or python3.X on PATH) and run the core test suites there:
# the frame layouts differ per version (src/native/compat.h), so each one
# needs its own build and run. Used by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pyenv_root=$(pyenv root 2>/dev/null || echo "${HOME}/.pyenv")
status=0
found=0
for minor in 3.12 3.13; do
  py=""
  for cand in "$pyenv_root"/versions/"$minor".*/bin/python"$minor"; do
    [ -x "$cand" ] && py="$cand"
  done
  [ -z "$py" ] && py=$(command -v "python$minor" || true)
  if [ -z "$py" ]; then
    echo "test-versions: no Python $minor here, skipped"
    continue
  fi
  found=$((found + 1))
  venv="build/venv-$minor"
  echo "test-versions: $("$py" --version) ($py)"
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "scikit-build-core>=0.10" cmake ninja pytest pytest-timeout jsonschema
  fi
  # A regular (non-editable) install with its own build directory, so it
  # never disturbs the main .venv's editable build.
  "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps \
    --config-settings=build-dir="$root/build/cmake-$minor" .
  (cd tests && "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir="$root/build" \
     test_sampling.py test_threading.py test_api.py test_outputs.py test_platform.py test_truth.py test_sigprof_coexistence.py test_robustness.py) || status=1
done
echo "test-versions: $found other Python version(s) tested"
exit $status
