# pokedex-k210 — the two commands a fresh clone needs:
#   make kmodel   set everything up, then build the default model's kmodel for a Maix Bit
#   make test     set everything up, then run the test suite (what CI runs)
# Both are idempotent: set-up steps re-run only when their pinned inputs change.

VENV      := .venv
PY        := $(VENV)/bin/python
HOST      := $(VENV)/bin/pokedex-host
STAMP     := $(VENV)/.pokedex-setup
BOARD     ?= maix-bit
MODEL     ?= models/kpu_mobilenet_v1-075-224.toml
OUT       ?= build/default
PYTEST_ARGS ?=

.PHONY: setup toolchain kmodel test test-all bench doctor clean

$(STAMP): pyproject.toml requirements/host.txt requirements/host-lock.txt
	@py=$$(tools/find-python.sh 3.11) || exit 1; \
	  [ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements/host.txt -c requirements/host-lock.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

setup: $(STAMP) toolchain

toolchain: $(STAMP)
	$(HOST) toolchain install

kmodel: setup
	$(HOST) build-kmodel $(MODEL) --board $(BOARD) --out $(OUT)

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench_build.py

doctor: $(STAMP)
	$(HOST) doctor

clean:
	rm -rf build .pytest_cache
