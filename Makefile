# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Everything installs from the hash-locked requirements*.lock (compiled from pyproject.toml
# by `make lock`); a lock older than pyproject.toml's dependencies stops the build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
LOCKVENV := .venv-lock
# The components tests need from the OS (tools/system-deps.sh installs them when it can).
SYSTEM_DEPS := postgresql chromium
COMPILE = $(LOCKVENV)/bin/uv pip compile pyproject.toml --quiet --generate-hashes --universal \
	--python-version 3.11 --custom-compile-command "make lock"

.PHONY: help install run test test-latest check lint bench lock lock-upgrade system-deps clean

help:
	@echo "make run          serve policies/ on 127.0.0.1:8000 with the embedded CRM (prints a curl)"
	@echo "make test         the whole suite in 2 processes (TEST_WORKERS=0: one); installs system deps"
	@echo "make check        what CI runs: ruff, mypy, lint and fmt --check of policies/ and examples/, then make test"
	@echo "make lint         ruff, mypy, vapi-router lint and fmt --check"
	@echo "make bench        the benchmarks (python -m bench SECTION... for some)"
	@echo "make test-latest  the suite on the newest versions pyproject.toml allows (.venv-latest)"
	@echo "make lock         re-resolve the locks after pyproject.toml changed; lock-upgrade: newest pins"
	@echo "make system-deps  PostgreSQL and Chromium from apt-get when root on Debian/Ubuntu"
	@echo "make clean        remove the venvs and caches"

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PY) tools/lockcheck.py check requirements.lock requirements-dev.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m router.demo

system-deps:
	@tools/system-deps.sh $(SYSTEM_DEPS)

# Two processes (pytest-xdist), a file's tests in one of them: most tests wait on servers,
# so this halves the wall time on 2 cores. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) system-deps
	$(BIN)/pytest $(XDIST)

# The suite on the newest versions pyproject.toml allows, in a venv of its own (not in CI's
# run: it answers "will the next `make lock-upgrade` be safe?").
test-latest: system-deps
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/pip install -q --upgrade -e '.[dev]'
	.venv-latest/bin/pip freeze --exclude-editable | sed 's/^/  latest: /'
	.venv-latest/bin/pytest $(XDIST)
	@# uvicorn is pinned to one minor (the adapter reaches into its internals): try the newest
	@# release too, on the adapter's and the wire tests, and say clearly when it needs work.
	.venv-latest/bin/pip install -q --upgrade 'uvicorn[standard]'
	.venv-latest/bin/pytest -q tests/test_uvicorn_adapter.py tests/test_http_wire.py \
		&& echo "uvicorn $$(.venv-latest/bin/python -c 'import uvicorn; print(uvicorn.__version__)'): the adapter works" \
		|| { echo "!!! router/server/uvicorn_adapter.py needs work for the newest uvicorn (see its docstring)"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check router tests bench tools
	$(BIN)/ruff format --check router tests bench tools
	$(BIN)/mypy
	$(BIN)/vapi-router lint policies examples
	$(BIN)/vapi-router fmt --check policies examples

check: lint test

bench: $(STAMP)
	$(BIN)/python -m bench

$(LOCKVENV)/bin/uv:
	$(PY) -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/pip install -q uv==$(UV_VERSION)

# Re-resolve after pyproject.toml changed, keeping every pin that still fits.
lock: $(LOCKVENV)/bin/uv
	$(COMPILE) -o requirements.lock
	$(COMPILE) --extra dev -o requirements-dev.lock
	$(PY) tools/lockcheck.py stamp requirements.lock requirements-dev.lock

# Move every pin to the newest allowed version (run `make test-latest` first).
lock-upgrade: $(LOCKVENV)/bin/uv
	$(COMPILE) --upgrade -o requirements.lock
	$(COMPILE) --upgrade --extra dev -o requirements-dev.lock
	$(PY) tools/lockcheck.py stamp requirements.lock requirements-dev.lock

clean:
	rm -rf $(VENV) .venv-latest $(LOCKVENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
