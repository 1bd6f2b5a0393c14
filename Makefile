# zkauth developer entry points. Every target sets up .venv by itself when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test check lint typecheck bench bench-timing clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/zkauth serve

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Benchmarks and the performance targets (docs/performance.md). The clock starts before the
# install, so the time target covers a clean clone's whole `make bench`. Options go in BENCH_ARGS,
# e.g. make bench BENCH_ARGS='--chart docs/throughput.png --json bench.json' (or '--quick').
BENCH_ARGS ?=
bench:
	@start=$$(date +%s); $(MAKE) --no-print-directory -s install && \
		$(BIN)/python -m bench --since $$start $(BENCH_ARGS)

# Timing of every refusal path against the accepted one, with statistical tests (red-team 30).
bench-timing: $(STAMP)
	$(BIN)/python -m bench.timing

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
