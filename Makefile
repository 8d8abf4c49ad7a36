# spprof: `make run` builds and profiles the bundled demo; `make test` builds
# and runs every test. Both set up everything they need on a fresh clone:
# a .venv with packages from PyPI, and Debian packages for the browser and Go
# based checks (installed with apt-get only when missing).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OUT := build/demo
NATIVE_SOURCES := $(wildcard src/native/*.cpp src/native/*.h) CMakeLists.txt pyproject.toml

.PHONY: all venv build build-deps run test test-fast bench memcheck clean system-deps

all: build

$(VENV)/.stamp: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "scikit-build-core>=0.10" cmake ninja pytest pytest-timeout jsonschema selenium gevent cython numpy black
	touch $@

venv: $(VENV)/.stamp

# Editable install: Python files are used from src/, the extension is built
# into the venv. Rebuilt whenever a native source changes, or when
# libunwind's headers came (native frames are built only with them).
$(VENV)/.built: $(VENV)/.stamp $(NATIVE_SOURCES) build/.libunwind-headers
	$(PIP) install -q --no-build-isolation -e .
	touch $@

build: build-deps $(VENV)/.built

# The headers of libunwind and libdw (Debian's libunwind-dev, libdw-dev),
# which the build looks for (native frames, their source lines): installed
# when missing and apt-get can (as root); the stamp changes when they
# appear, so the extension is rebuilt with them.
NATIVE_DEPS := libunwind-dev libdw-dev
build-deps:
	@mkdir -p build
	@missing=""; for p in $(NATIVE_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@have=""; for p in $(NATIVE_DEPS); do dpkg -s $$p >/dev/null 2>&1 && have="$$have $$p"; done; \
	[ "$$(cat build/.libunwind-headers 2>/dev/null)" = "$$have" ] || echo "$$have" > build/.libunwind-headers

build/.libunwind-headers: build-deps

# Debian packages used by tests: Go (reads pprof files), Chromium and its
# driver (renders the HTML report), valgrind (leak checks).
system-deps:
	@missing=""; \
	command -v go >/dev/null 2>&1 || [ -x /usr/lib/go/bin/go ] || missing="$$missing golang-go"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v valgrind >/dev/null 2>&1 || missing="$$missing valgrind"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: build
	@mkdir -p $(OUT)
	$(PY) -m spprof run -o $(OUT)/profile.html examples/demo.py
	$(PY) examples/run_demo.py $(OUT)

# Every suite on the default Python, then the core suites on every other
# supported CPython installed here; all run even if one fails, and a summary
# line per version comes last.
test: system-deps build
	tools/test_all_pythons.sh

# Quick loop for development: no system packages, browser/Go tests skip.
test-fast: build
	$(PY) -m pytest -q -x tests

# Overhead of cpu and wall modes at 10 and 1 ms on each backend, next to the
# bare-kernel floor (bench/floor/timer_floor.c, built with cc into
# build/bench/); results also in build/bench/overhead.json. BENCH_ARGS is
# passed to it, e.g. make bench BENCH_ARGS="--repeats 9" or "--quick".
BENCH_ARGS ?=
bench: build
	$(PY) bench/bench_overhead.py $(BENCH_ARGS)
	$(PY) bench/bench_writers.py
	$(PY) bench/bench_deep_stacks.py

# Leak and memory-error check of the native code: the start/stop stress
# (1000 sessions, CPU and wall mode mixed, while threads come and go, block
# and fork) under valgrind memcheck, then under an ASan+UBSan build with
# LeakSanitizer. Each checker first shows, with spprof's self-test leak (48
# bytes per stop()), that it reports such a leak.
memcheck: system-deps build
	$(PY) tools/memcheck/run_memcheck.py --inject-leak --cycles 20
	$(PY) tools/memcheck/run_memcheck.py --cycles 1000
	$(PY) tools/memcheck/run_asan.py --inject-leak --cycles 20
	$(PY) tools/memcheck/run_asan.py --cycles 1000

clean:
	rm -rf build $(VENV) src/spprof/*.so
