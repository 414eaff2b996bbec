# gridcrm: `make run` sets up what is missing and starts the app; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := run
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= S
SEED ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup system services db venv messages migrate demo bench lint clean-test-db

## Setup (idempotent; a second run skips what is done) -------------------------------------
system:            ## apt packages for running the app (and, with TEST=1, for browser tests)
	@scripts/system.sh $(if $(TEST),test,run)

services: system   ## start PostgreSQL and Redis if they are not running
	@scripts/services.sh

db: services       ## role, database and extensions (skipped when DATABASE_URL is set)
	@scripts/db.sh

$(VENV)/.stamp: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

venv: $(VENV)/.stamp

LOCALE_PO := $(wildcard locale/*/LC_MESSAGES/django.po)
LOCALE_MO := $(LOCALE_PO:.po=.mo)
locale/%/LC_MESSAGES/django.mo: locale/%/LC_MESSAGES/django.po
	msgfmt --check-format -o $@ $<

messages: $(LOCALE_MO)

setup: system db venv messages
	$(BIN)/python manage.py migrate --noinput -v 0

## The two commands -------------------------------------------------------------------------
run: setup         ## set up, load demo data once, start web + Celery worker + beat
	$(BIN)/python manage.py seed_demo --scale $(SCALE) --seed $(SEED) --fill
	@scripts/run.sh

test:              ## the whole suite against real PostGIS, Redis and Chromium
	@$(MAKE) --no-print-directory setup TEST=1
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

## Extras -------------------------------------------------------------------------------------
bench: setup       ## benchmarks at SCALE (S, M or L) in a separate database: endpoint vs raw SQL
	$(BIN)/python bench/run.py --scale $(SCALE)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
