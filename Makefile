# Two entry points: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint fashion-mnist
# Fashion-MNIST (the reference benchmark, its tests) comes from Debian's package, as the README says.
FMNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, so that no resolver pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The demo runs on built-in data; it installs Fashion-MNIST like `make test` (for the reference benchmark
# afterwards) but goes on without it where it cannot.
demo: $(STAMP)
	@$(MAKE) --no-print-directory fashion-mnist || echo "(the demo itself does not need Fashion-MNIST: going on)"
	$(BIN)/slimdiff demo

# Installs Debian's dataset-fashion-mnist when it is missing and we are root; otherwise says how, in one line.
fashion-mnist:
	@if [ -z "$$SLIMDIFF_FASHION_MNIST" ] && [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST is missing: sudo apt-get install dataset-fashion-mnist (or set SLIMDIFF_FASHION_MNIST)"; \
	    exit 2; \
	  fi; \
	fi

test: $(STAMP) fashion-mnist
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks
