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
BIND      ?=

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test browser bench-embed bench-index bench-map lint clean-demo

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	LOOKALIKE_HOME=$(DEMO_HOME) $(BIN)/lookalike demo $(if $(IMAGES),--images $(IMAGES),) \
	    $(if $(BIND),--bind $(BIND),)

test: $(STAMP) browser
	$(BIN)/python -m pytest

browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }; }

lint: $(STAMP)
	$(BIN)/ruff check indexer workers search_api webui tests

bench-embed: $(STAMP)
	$(BIN)/python tests/bench/bench_embed.py

bench-index: $(STAMP)
	$(BIN)/python tests/bench/bench_index.py

bench-map: $(STAMP)
	$(BIN)/python tests/bench/bench_map.py

clean-demo:
	rm -rf $(DEMO_HOME)
