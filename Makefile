# The operator's interface. `make run` and `make test` install what they need on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Hash-checked locks (`make lock` writes them): dev.lock for this virtualenv, runtime.lock
# (the same versions, without the dev extra) for the Docker image.
LOCK   := requirements/dev.lock
# The locking tool, pinned, in a virtualenv of its own; a new pin here installs it afresh.
PIP_TOOLS      := 7.7.0
LOCKER_PIP     := 26.3
LOCKER         := .local/pip-tools
LOCKER_STAMP   := $(LOCKER)/.installed-pip-tools-$(PIP_TOOLS)-pip-$(LOCKER_PIP)
LOCK_FLAGS     := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links

.DEFAULT_GOAL := help
.PHONY: help install lock run test lint bench up down status logs replay clean

help:
	@echo "make run     install, start the local services and every Switchboard process (Ctrl-C stops all)"
	@echo "make test    install, start the local services the tests need, and run the test suite (ARGS='-x tests/unit')"
	@echo "make lint    ruff, mypy, and tsc for the widget"
	@echo "make lock    re-resolve requirements/*.lock from setup.cfg (ARGS='--upgrade' for the newest)"
	@echo "make bench   benchmarks, each against a baseline measured in the same run"
	@echo "make up | down | status | logs   drive the local services (Kafka, FerretDB, Redis, S3, Nginx, Traefik)"
	@echo "make replay ARGS='show CONVERSATION_ID'   topic replay (see switchboard replay --help)"

$(STAMP): $(LOCK) setup.cfg pyproject.toml
	@echo "==> Python environment: $(VENV), the exact versions of $(LOCK), hash-checked (log in $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --require-hashes -r $(LOCK) > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@echo "==> Switchboard itself: editable, built by the locked setuptools"
	@$(BIN)/python -m pip install --no-deps --no-build-isolation -e . >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(BIN)/python -m pip check >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; echo "setup.cfg and $(LOCK) disagree: make lock"; exit 1)
	@echo "==> Python environment ready"
	@touch $(STAMP)

install: $(STAMP)

$(LOCKER_STAMP):
	@echo "==> pip-tools $(PIP_TOOLS) (on pip $(LOCKER_PIP)) in $(LOCKER)"
	@test -x $(LOCKER)/bin/python || $(PYTHON) -m venv $(LOCKER)
	@$(LOCKER)/bin/python -m pip install --quiet "pip==$(LOCKER_PIP)" "pip-tools==$(PIP_TOOLS)"
	@touch $(LOCKER_STAMP)

# Pins already in a lock are kept while setup.cfg still allows them; ARGS='--upgrade' (or
# '--upgrade-package NAME') moves them. runtime.lock constrains dev.lock, so both agree.
lock: $(LOCKER_STAMP)
	@echo "==> requirements/runtime.lock: setup.cfg's install_requires, with pip, setuptools and wheel"
	@CUSTOM_COMPILE_COMMAND="make lock" $(LOCKER)/bin/pip-compile $(LOCK_FLAGS) $(ARGS) \
		--output-file requirements/runtime.lock setup.cfg requirements/build.in
	@echo "==> requirements/dev.lock: the same versions, and the dev extra"
	@CUSTOM_COMPILE_COMMAND="make lock" $(LOCKER)/bin/pip-compile $(LOCK_FLAGS) $(ARGS) \
		--extra dev --constraint requirements/runtime.lock \
		--output-file requirements/dev.lock setup.cfg requirements/build.in
	@echo "==> locks written; \`make install\` installs them"

run: install
	@$(BIN)/switchboard run

test: install
	@$(BIN)/switchboard test -- $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m infra.widget

bench: install
	@$(BIN)/python -m bench

up: install
	@$(BIN)/switchboard up

down: install
	@$(BIN)/switchboard down

status: install
	@$(BIN)/switchboard status

replay: install
	@$(BIN)/switchboard replay $(ARGS)

logs:
	@tail -n 40 -F .local/logs/*.log

clean: down
	rm -rf .local/data .local/logs .local/run .local/conf
