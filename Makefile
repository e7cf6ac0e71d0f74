# The two commands the README promises: `make demo` and `make test`.
# Each sets up its own virtual environment first (idempotent; re-runs when
# pyproject.toml changes).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The demo's data directory and images; override: make demo IMAGES=~/photos
DEMO_HOME ?= lookalike-data/demo
IMAGES    ?=

.PHONY: demo test bench-embed bench-index lint clean-demo

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	LOOKALIKE_HOME=$(DEMO_HOME) $(BIN)/lookalike demo $(if $(IMAGES),--images $(IMAGES),)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check indexer workers search_api tests

bench-embed: $(STAMP)
	$(BIN)/python tests/bench/bench_embed.py

bench-index: $(STAMP)
	$(BIN)/python tests/bench/bench_index.py

clean-demo:
	rm -rf $(DEMO_HOME)
