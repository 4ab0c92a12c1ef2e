# Clicktrack: `make up` runs the pipeline with a demo, `make test` runs every test, `make down` stops;
# `make test-unit` runs the tests that need no services, without starting any.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The native stack's addresses; override any of them to use services of your own.
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export REDIS_URL ?= redis://127.0.0.1:6379/0
export POSTGRES_DSN ?= postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack

.PHONY: up down test test-unit install stack-up stack-down services-up services-down keys schema demo status lint promtool \
	browser openapi-lint

up: install stack-up keys schema services-up demo
	@echo
	@echo "Clicktrack is running:"
	@echo "  redirector  http://127.0.0.1:8080/<code>   (health: /healthz, /readyz; metrics: http://127.0.0.1:8090/metrics)"
	@echo "  counter     http://127.0.0.1:8081/metrics"
	@echo "  api metrics http://127.0.0.1:8092/metrics"
	@echo "  api         http://127.0.0.1:8082/v1/openapi.json   (organisations: clicktrack org create)"
	@echo "  logs        .stack/logs/ (services), .stack/kafka/logs/, .stack/redis/, .stack/postgres/"
	@echo "  try         $(BIN)/clicktrack link https://example.com   then open the short URL"
	@echo "  stop        make down"

test: install stack-up schema lint promtool browser openapi-lint
	$(BIN)/pytest

# Every test without the integration or faults marker (today tests/unit): no Kafka, Redis or
# Postgres needed, and none started.
test-unit: install promtool
	$(BIN)/pytest -m "not integration and not faults"

down: services-down stack-down

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@

# promtool validates and unit-tests deploy/prometheus/alerts.yml (tests/unit/test_alert_rules.py).
promtool: $(BIN)/promtool

$(BIN)/promtool: | install
	bash deploy/prometheus/install-promtool.sh $@

stack-up:
	bash deploy/stack.sh up

stack-down:
	bash deploy/stack.sh down

services-up:
	bash deploy/services.sh up

services-down:
	bash deploy/services.sh down

# One set of random development keys (the visitor hash key, ...) for every process `make up`
# starts and for the CLI run from this folder; kept across runs. Never read in production.
keys: install
	$(BIN)/python -m shared.settings --dev-keys

schema: install
	$(BIN)/clicktrack migrate
	$(BIN)/clicktrack topics

demo: install
	$(BIN)/clicktrack demo

status:
	-bash deploy/stack.sh status
	-bash deploy/services.sh status

# Headless Chromium and its driver from Debian's packages, for the dashboard's browser test.
browser:
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { \
		echo "installing chromium and chromium-driver with apt-get (needs root)"; \
		apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Redocly's CLI, pinned in deploy/openapi/package-lock.json, lints the API's OpenAPI document as
# the API serves it (written to build/ without a server); rules in deploy/openapi/redocly.yaml.
OPENAPI := deploy/openapi

openapi-lint: install $(OPENAPI)/node_modules/.installed
	mkdir -p build
	$(BIN)/python -m services.api.openapi > build/openapi.json
	cd $(OPENAPI) && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		./node_modules/.bin/redocly lint ../../build/openapi.json --config redocly.yaml

$(OPENAPI)/node_modules/.installed: $(OPENAPI)/package.json $(OPENAPI)/package-lock.json
	cd $(OPENAPI) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@
