# The operator's interface. `make run` and `make test` install what they need on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run test lint bench up down status logs replay clean

help:
	@echo "make run     install, start the local services and every Switchboard process (Ctrl-C stops all)"
	@echo "make test    install, start the local services the tests need, and run the test suite"
	@echo "make lint    ruff, mypy, and tsc for the widget"
	@echo "make bench   benchmarks, each against a baseline measured in the same run"
	@echo "make up | down | status | logs   drive the local services (Kafka, FerretDB, Redis, S3, Nginx, Traefik)"
	@echo "make replay ARGS='show CONVERSATION_ID'   topic replay (see switchboard replay --help)"

$(STAMP): setup.cfg pyproject.toml
	@echo "==> Python environment: $(VENV) (installing Switchboard and its dependencies; log in $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(BIN)/python -m pip install -e ".[dev]" >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@echo "==> Python environment ready"
	@touch $(STAMP)

install: $(STAMP)

run: install
	@$(BIN)/switchboard run

test: install
	@$(BIN)/pytest

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
