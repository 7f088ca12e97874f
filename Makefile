# Koinonia: `make run` serves the API + worker + SMS sandbox on embedded PostgreSQL;
# `make test` runs the whole suite. Both bootstrap .venv on first use, from requirements.lock
# (every dependency pinned with its hashes), so every install gets the versions tested.
# `make lock` updates the lock after a change to pyproject.toml (pins kept where still
# allowed; `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# The lock tool lives in its own venv: it is not a dependency of the project.
LOCK_VENV := .venv-lock
UV_VERSION := 0.13.9
LOCK_ARGS ?=

.PHONY: run test lint format typecheck bench bench-full migrate lock clean

# `pip install -e .` installs the `koinonia` package in place and, src layout, puts src/ on
# sys.path: the SMS sandbox (src/koinonia_sandbox, dev tooling the distribution leaves out)
# is importable by `make run`, the tests and the bench with no install of its own.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	@$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

lock:
	@test -x $(LOCK_VENV)/bin/uv || { $(PY) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
		--python-version 3.11 --custom-compile-command "make lock" --quiet $(LOCK_ARGS) -o $(LOCK)

run: $(STAMP)
	$(BIN)/koinonia dev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src bench

migrate: $(STAMP)
	$(BIN)/koinonia migrate

bench: $(STAMP)
	$(BIN)/python -m bench --quick

bench-full: $(STAMP)
	$(BIN)/python -m bench --full

clean:
	rm -rf $(VENV) $(LOCK_VENV) .koinonia .pytest_cache .mypy_cache .ruff_cache
