# Switchboard: the README's commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help demo test lint format install brokers-up brokers-down clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

demo: $(STAMP)  ## Set up and run everything on 127.0.0.1 (embedded profile); Ctrl-C stops it
	$(PY) manage.py demo

test: $(STAMP)  ## Run the whole test suite (set SWITCHBOARD_REQUIRE_SERVICES=1 to fail, not skip)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## Format the code with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

install: $(STAMP)  ## Create the virtualenv and install the pinned requirements

brokers-up:  ## Start the local ActiveMQ network (NOC + datacenter brokers)
	scripts/brokers up

brokers-down:  ## Stop the local ActiveMQ network
	scripts/brokers down

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Switchboard needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

clean:  ## Remove runtime state (var/); keeps the virtualenv
	rm -rf var
