#!/usr/bin/env bash
# `make test`: the whole suite on the default Python (.venv, built by make),
# then, side by side, the core suites on every other supported CPython found
# here (pyenv installs or python3.X on PATH): the frame layouts differ per
# version (src/native/compat.h), so each needs its own build and run.
#
# Every version runs even when an earlier one fails; a summary line per
# version comes last, and the exit status is non-zero if any failed. The
# builds the later steps need (the sanitized copy for tests/test_sanitizers.py,
# the extension without libunwind for tests/test_native_stack.py, the other
# versions' venvs) are made in the background while the default
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
test_guest.py test_suite_guards.py test_surface.py test_boundary.py test_layering.py
test_lean_import.py test_thread_names.py test_wall_mode.py test_wall_blocking.py test_native_threads.py
test_native_stack.py test_native_frames.py"

counts_of() {  # the last pytest result line of a log, without its timing
  grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$1" | tail -1 | sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +| +$//g'
}

run_suite() {  # label directory python log [pytest args...]: writes log.summary, log.rc
  local label=$1 dir=$2 py=$3 log=$4
  shift 4
  local t0=$SECONDS rc
  (cd "$dir" && "$py" -m pytest -q -p no:cacheprovider --durations=15 "$@") > "$log" 2>&1
  rc=$?
  local secs=$((SECONDS - t0))
  local counts
  counts=$(counts_of "$log")
  [ -z "$counts" ] && counts="no result (pytest exit $rc)"
  local verdict=ok
  [ "$rc" -ne 0 ] && verdict=FAILED
  echo "test: $label: $counts in $((secs / 60))m$(printf %02d $((secs % 60)))s: $verdict" > "$log.summary"
  echo "$rc" > "$log.rc"
}

collect() {  # log: adds its summary line, fails the run if it failed
  summary+=("$(cat "$1.summary" 2>/dev/null || echo "test: $1: no summary: FAILED")")
  [ "$(cat "$1.rc" 2>/dev/null)" = 0 ] || status=1
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

# The extension built as without libunwind's headers, for
# tests/test_native_stack.py (it builds it itself when this is not done).
export SPPROF_NO_LIBUNWIND_BUILD="$root/build/no-libunwind"
(
  .venv/bin/python tools/memcheck/run_asan.py --build-only || true
  .venv/bin/python tools/build_without_libunwind.py "$SPPROF_NO_LIBUNWIND_BUILD" >/dev/null || true
  for minor in "${others[@]}"; do setup_version "$minor"; done
) > build/prebuild.log 2>&1 &
prebuild=$!

export SPPROF_REQUIRE_TOOLS=1
echo "test: Python $default_version (all suites): log in build/test-default.log"
rm -f build/test-default.log
tail -n +1 -F build/test-default.log 2>/dev/null &
follow=$!
run_suite "Python $default_version (all suites)" "$root" "$root/.venv/bin/python" \
  "$root/build/test-default.log" tests
sleep 1; kill "$follow" 2>/dev/null; wait "$follow" 2>/dev/null
collect build/test-default.log

# The other versions' core suites run side by side: each keeps about one
# core busy, and every test holds on a loaded machine.
wait "$prebuild"
logs=()
pids=()
for minor in "${others[@]}"; do
  py=$(python_for "$minor")
  label="Python $("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') (core suites)"
  setup=$(cat "build/setup-$minor.status" 2>/dev/null || echo "not set up")
  if [ "$setup" != ok ]; then
    summary+=("test: $label: $setup (build/prebuild.log): FAILED"); status=1; continue
  fi
  echo "test: $label ($py): log in build/test-$minor.log"
  log="$root/build/test-$minor.log"
  rm -f "$log.summary" "$log.rc"
  rm -rf "$root/build/tmp-$minor"
  # From tests/, so the installed package is imported, not src/.
  run_suite "$label" "$root/tests" "$root/build/venv-$minor/bin/python" "$log" \
    --rootdir="$root/build" --basetemp="$root/build/tmp-$minor" -m "not default_python" $CORE &
  pids+=($!)
  logs+=("$log")
done
for pid in "${pids[@]}"; do wait "$pid"; done
for log in "${logs[@]}"; do
  echo
  echo "== $log"
  cat "$log"
  collect "$log"
done

echo
printf '%s\n' "${summary[@]}"
exit $status
