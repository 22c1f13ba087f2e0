# Fluvial — the two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit bench clean flink

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/fluvial demo --project .demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

# Apache Flink, the reference engine (tests/stream/test_against_flink.py,
# benchmarks/stream/bench_vs_flink.py): PyFlink pins old pyarrow/pandas, so its own venv.
# 1.20 is the newest 1.x (LTS): Python 3.8-3.11, Java 11/17. Needs java on PATH.
FLINK_VENV    ?= .venv-flink
FLINK_VERSION ?= 1.20.3
FLINK_SMOKE   := from pyflink.table import EnvironmentSettings as S, TableEnvironment as T; \
	t = T.create(S.in_streaming_mode()); t.get_config().set('parallelism.default', '1'); \
	r = t.execute_sql('SELECT COUNT(*) FROM (VALUES (1), (2), (3)) AS v(x)'); \
	n = [row[0] for row in r.collect()][-1]; assert n == 3, n; print('pyflink ok')

$(FLINK_VENV)/.installed:
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLINK_VENV)/bin/python -m pip install --quiet apache-flink==$(FLINK_VERSION)
	$(FLINK_VENV)/bin/python -I -c "$(FLINK_SMOKE)"
	touch $@

flink: $(FLINK_VENV)/.installed

# under CI=true the Flink-differential test must run, not skip: build the venv first
ifeq ($(CI),true)
unit: $(FLINK_VENV)/.installed
endif
