# Switchboard: the README's commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help demo test test-fast lint format install brokers-up brokers-down clean deb

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

demo: $(STAMP)  ## Set up and run everything on 127.0.0.1 (embedded profile); Ctrl-C stops it
	$(PY) manage.py demo

test: $(STAMP)  ## Run the whole test suite (set SWITCHBOARD_REQUIRE_SERVICES=1 to fail, not skip)
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tier: no broker (not even the embedded one), no PostgreSQL, Redis, browser or
# worker process, no Debian package build; SQLite and in-memory channels, two processes at once.
FAST_MARKERS := not (integration or browser or activemq or postgres or redis or faults or netns or deb or deploy)

test-fast: $(STAMP)  ## Run the unit tier only (no real services; about a minute and a half)
	env -u DATABASE_URL -u REDIS_URL -u STOMP_BROKERS $(PY) -m pytest -n 2 -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint and format check, the import contracts, the type check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

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

deb:  ## Build the node's Debian package, dist/switchboard-node_<version>_all.deb (scripts/install-deb-tools first)
	packaging/node/build-deb

clean:  ## Remove runtime state (var/); keeps the virtualenv
	rm -rf var
