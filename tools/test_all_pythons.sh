#!/usr/bin/env bash
# `make test`: the whole suite on the default Python (.venv, built by make),
# then the core suites on every other supported CPython found here (pyenv
# installs or python3.X on PATH): the frame layouts differ per version
# (src/native/compat.h), so each needs its own build and run.
#
# Every version runs even when an earlier one fails; a summary line per
# version comes last, and the exit status is non-zero if any failed. The
# builds the later steps need (the sanitized copy for tests/test_sanitizers.py,
# the other versions' venvs) are made in the background while the default
# suite runs: its tests hold on a loaded machine by design.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pyenv_root=$(pyenv root 2>/dev/null || echo "${HOME}/.pyenv")
mkdir -p build
summary=()
status=0

# Core suites: everything that samples, on every version. The command line,
# the writers' external checks (browser, Go), the sanitizer builds and the
# tests marked default_python (version-independent, heavy) run on the
# default Python only.
CORE="test_sampling.py test_threading.py test_api.py test_outputs.py test_platform.py
test_truth.py test_sigprof_coexistence.py test_robustness.py test_exact_weights.py
test_guest.py test_suite_guards.py test_surface.py"

counts_of() {  # the last pytest result line of a log, without its timing
  grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$1" | tail -1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +| +$//g'
}

run_suite() {  # label directory python log [pytest args...]
  local label=$1 dir=$2 py=$3 log=$4
  shift 4
  local t0=$SECONDS rc
  (cd "$dir" && "$py" -m pytest -q -p no:cacheprovider --durations=15 "$@") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local secs=$((SECONDS - t0))
  local counts
  counts=$(counts_of "$log")
  [ -z "$counts" ] && counts="no result (pytest exit $rc)"
  local verdict=ok
  if [ "$rc" -ne 0 ]; then verdict=FAILED; status=1; fi
  summary+=("test: $label: $counts in $((secs / 60))m$(printf %02d $((secs % 60)))s: $verdict")
}

python_for() {  # the interpreter of CPython $1 here, or nothing
  local minor=$1 py="" cand
  for cand in "$pyenv_root"/versions/"$minor".*/bin/python"$minor"; do
    [ -x "$cand" ] && py="$cand"
  done
  [ -z "$py" ] && py=$(command -v "python$minor" || true)
  echo "$py"
}

setup_version() {  # venv and build for CPython $1; writes build/setup-$1.status
  local minor=$1 py venv="build/venv-$1"
  py=$(python_for "$minor")
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.stamp" ]; then
    rm -rf "$venv"
    if ! { "$py" -m venv "$venv" &&
           "$venv/bin/pip" install -q --upgrade pip &&
           "$venv/bin/pip" install -q "scikit-build-core>=0.10" cmake ninja pytest pytest-timeout jsonschema gevent &&
           touch "$venv/.stamp"; }; then
      echo "cannot set up $venv" > "build/setup-$minor.status"; return
    fi
  fi
  # A regular (non-editable) install with its own build directory, so it
  # never disturbs the main .venv's editable build.
  if ! "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps \
       --config-settings=build-dir="$root/build/cmake-$minor" .; then
    echo "build failed" > "build/setup-$minor.status"; return
  fi
  echo ok > "build/setup-$minor.status"
}

default_version=$(.venv/bin/python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
default_minor=${default_version%.*}
others=()
for minor in 3.11 3.12 3.13; do
  [ "$minor" = "$default_minor" ] && continue
  if [ -z "$(python_for "$minor")" ]; then
    summary+=("test: Python $minor: not installed here, skipped")
  else
    others+=("$minor")
    rm -f "build/setup-$minor.status"
  fi
done

(
  .venv/bin/python tools/memcheck/run_asan.py --build-only || true
  for minor in "${others[@]}"; do setup_version "$minor"; done
) > build/prebuild.log 2>&1 &
prebuild=$!

export SPPROF_REQUIRE_TOOLS=1
run_suite "Python $default_version (all suites)" "$root" "$root/.venv/bin/python" \
  "$root/build/test-default.log" tests

wait "$prebuild"
for minor in "${others[@]}"; do
  py=$(python_for "$minor")
  label="Python $("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') (core suites)"
  echo "test: $label ($py)"
  setup=$(cat "build/setup-$minor.status" 2>/dev/null || echo "not set up")
  if [ "$setup" != ok ]; then
    summary+=("test: $label: $setup (build/prebuild.log): FAILED"); status=1; continue
  fi
  # From tests/, so the installed package is imported, not src/.
  run_suite "$label" "$root/tests" "$root/build/venv-$minor/bin/python" "$root/build/test-$minor.log" \
    --rootdir="$root/build" -m "not default_python" $CORE
done

echo
printf '%s\n' "${summary[@]}"
exit $status
