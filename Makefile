# pokedex-k210 — the two commands a fresh clone needs:
#   make kmodel   set everything up, then build the newest released model's kmodel for a Maix Bit
#   make test     set everything up, then run the test suite (what CI runs)
# Both are idempotent: set-up steps re-run only when their pinned inputs change.

VENV      := .venv
PY        := $(VENV)/bin/python
HOST      := $(VENV)/bin/pokedex-host
STAMP     := $(VENV)/.pokedex-setup
BOARD     ?= maix-bit
MODEL     ?=
OUT       ?= build/default
DATA      ?= data
SOURCE    ?= ../shared/data/pokemon
CARDS     ?= ../shared/data/cards
RECIPE    ?=
PYTEST_ARGS ?=

.PHONY: setup toolchain kmodel data release test lint format test-all bench bench-interp doctor clean

$(STAMP): pyproject.toml requirements/host.txt requirements/host-lock.txt
	@py=$$(tools/find-python.sh 3.11) || exit 1; \
	  [ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements/host.txt -c requirements/host-lock.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $@

setup: $(STAMP) toolchain

toolchain: $(STAMP)
	$(HOST) toolchain install

# verification on the held-out test split when the data is there (else the calibration folder's rest)
kmodel: setup
	$(HOST) build-kmodel $(MODEL) --board $(BOARD) --out $(OUT) \
	  $(if $(wildcard $(DATA)/processed/classify/test),--verify-data $(DATA)/processed/classify/test)

# the shared image set, ingested and split once (skipped when DATA/processed exists)
$(DATA)/processed/yolo_dataset/split.csv: | $(STAMP)
	$(HOST) data ingest $(SOURCE) --out $(DATA)
	$(HOST) data process --data $(DATA)

# the official card scans, checked and split by set (the release's real-card views and benchmarks)
$(DATA)/processed/cards/scans.csv: | $(STAMP)
	$(HOST) data cards $(CARDS) --data $(DATA)

data: setup $(DATA)/processed/yolo_dataset/split.csv $(DATA)/processed/cards/scans.csv

# teacher fine-tune + distillation + build + evaluation + release folder; resumable (run it again)
release: data
	nice $(HOST) release $(if $(RECIPE),--recipe $(RECIPE)) --data $(DATA)

# ruff (settings in pyproject.toml) first: the format is checked, not rewritten (`make format` does that)
test: setup lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench_build.py

# the interpreter alone: CPU flags, which full-convolution path this machine picks, images/s of each
bench-interp: $(STAMP)
	$(PY) tools/bench_interp.py

doctor: $(STAMP)
	$(HOST) doctor

clean:
	rm -rf build .pytest_cache
