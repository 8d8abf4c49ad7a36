#!/usr/bin/env bash
# `make test`: the whole suite on the default Python (.venv, built by make),
# then the core suites on every other supported CPython found here (pyenv
# installs or python3.X on PATH): the frame layouts differ per version
# (src/native/compat.h), so each needs its own build and run.
#
# Every version runs even when an earlier one fails; a summary line per
# version comes last, and the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pyenv_root=$(pyenv root 2>/dev/null || echo "${HOME}/.pyenv")
mkdir -p build
summary=()
status=0

# Core suites: everything that samples, on every version. The command line,
# the writers' external checks (browser, Go) and the sanitizer builds are
# version-independent and run on the default Python only.
CORE="test_sampling.py test_threading.py test_api.py test_outputs.py test_platform.py
test_truth.py test_sigprof_coexistence.py test_robustness.py test_exact_weights.py
test_guest.py test_suite_guards.py"

run_suite() {  # label directory python log [pytest args...]
  local label=$1 dir=$2 py=$3 log=$4
  shift 4
  local t0=$SECONDS rc
  (cd "$dir" && "$py" -m pytest -q -p no:cacheprovider "$@") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local secs=$((SECONDS - t0))
  local counts
  counts=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$log" | tail -1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +| +$//g')
  [ -z "$counts" ] && counts="no result (pytest exit $rc)"
  local verdict=ok
  if [ "$rc" -ne 0 ]; then verdict=FAILED; status=1; fi
  summary+=("test: $label: $counts in $((secs / 60))m$(printf %02d $((secs % 60)))s: $verdict")
}

default_version=$(.venv/bin/python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
export SPPROF_REQUIRE_TOOLS=1
run_suite "Python $default_version (all suites)" "$root" "$root/.venv/bin/python" \
  "$root/build/test-default.log" tests

default_minor=${default_version%.*}
for minor in 3.11 3.12 3.13; do
  [ "$minor" = "$default_minor" ] && continue
  py=""
  for cand in "$pyenv_root"/versions/"$minor".*/bin/python"$minor"; do
    [ -x "$cand" ] && py="$cand"
  done
  [ -z "$py" ] && py=$(command -v "python$minor" || true)
  if [ -z "$py" ]; then
    summary+=("test: Python $minor: not installed here, skipped")
    continue
  fi
  venv="build/venv-$minor"
  label="Python $("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') (core suites)"
  echo "test: $label ($py)"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.stamp" ]; then
    rm -rf "$venv"
    if ! { "$py" -m venv "$venv" &&
           "$venv/bin/pip" install -q --upgrade pip &&
           "$venv/bin/pip" install -q "scikit-build-core>=0.10" cmake ninja pytest pytest-timeout jsonschema gevent &&
           touch "$venv/.stamp"; }; then
      summary+=("test: $label: cannot set up $venv: FAILED"); status=1; continue
    fi
  fi
  # A regular (non-editable) install with its own build directory, so it
  # never disturbs the main .venv's editable build.
  if ! "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps \
       --config-settings=build-dir="$root/build/cmake-$minor" .; then
    summary+=("test: $label: build failed: FAILED"); status=1; continue
  fi
  # From tests/, so the installed package is imported, not src/.
  run_suite "$label" "$root/tests" "$root/$venv/bin/python" "$root/build/test-$minor.log" \
    --rootdir="$root/build" $CORE
done

echo
printf '%s\n' "${summary[@]}"
exit $status
