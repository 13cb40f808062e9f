# tinyadapt: `make demo` runs the demo, `make test` runs the tests. Both set up
# everything on a fresh machine (Python 3.11, gcc, make): a virtual environment with
# the pinned tools, MicroPython's headers from the pinned PyPI sdist, and, as root,
# the Debian packages for ARM builds.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH ?= x64
NATMOD_SRC := $(sort $(wildcard natmod/*.c))
NATMOD := build/natmod/$(ARCH)/_tinyadapt.mpy
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all venv mpy-headers deps natmod lib deploy test demo bench clean help

all: natmod lib  ## build the natmod for ARCH (default x64) and the .mpy library

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP)  ## create or refresh .venv with the pinned packages

mpy-headers: $(STAMP)  ## fetch MicroPython's py/ headers (skipped when MPY_DIR is set)
ifeq ($(MPY_DIR),)
	@$(PY) tools/fetch_mpy.py -q >/dev/null
endif

deps: $(STAMP) mpy-headers  ## also install Debian packages for ARM builds (as root)
	@bash tools/system_deps.sh

natmod: $(STAMP) mpy-headers  ## build build/natmod/$(ARCH)/_tinyadapt.mpy
	$(PY) tools/build_natmod.py --arch $(ARCH) -o $(NATMOD) $(NATMOD_SRC)

lib: $(STAMP)  ## compile python_lib/tinyadapt to .mpy with mpy-cross
	$(PY) tools/build_lib.py --arch $(ARCH)

test: deps natmod lib  ## run all tests (pytest)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: deps natmod lib  ## virtual rp2040: deploy, run a dense layer there and on the host
	$(PY) tools/demo.py

bench: natmod lib  ## kernels and models: board vs host vs TFLite Micro, time and RAM, ratios from one run
	$(PY) tools/bench_kernels.py
	$(PY) tools/bench_models.py

clean:  ## remove build outputs (keeps .venv)
	rm -rf build
