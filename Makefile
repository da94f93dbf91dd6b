# The commands a person types. Everything runs on this machine: the scripts in
# deploy/local/ install and start Kafka, Redis and Prometheus when missing.
SHELL := bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install up down status test lint faults bench bench-collector bench-shards bench-kafka bench-failover clean demo-reset

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

## Start Kafka, Redis, Prometheus, then collector, worker, exporter and simulator, with
## the demo configuration the README's examples use (deploy/local/demo.sh).
up: install
	bash deploy/local/services.sh start
	bash deploy/local/tracker.sh start
	@echo
	@echo "tracker is up:"
	@echo "  collector   http://127.0.0.1:$${TRACKER_COLLECTOR_PORT:-8080}/p.gif  (logs in .run/tracker/)"
	@echo "  KPIs        http://127.0.0.1:$${TRACKER_EXPORTER_PORT:-9108}/v1/kpis?dimension=channel&window=1m"
	@echo '              with -H "Authorization: Bearer $$(cat .run/api-token)"'
	@echo "  metrics     http://127.0.0.1:$${TRACKER_EXPORTER_PORT:-9108}/metrics"
	@echo "  Prometheus  http://127.0.0.1:$${TRACKER_PROMETHEUS_PORT:-9090}/graph"
	@echo "stop it all with 'make down'"

## Stop everything; Kafka and Redis keep their data in .run/ for the next 'make up'.
down:
	-bash deploy/local/tracker.sh stop
	bash deploy/local/services.sh stop

## What runs, and what tracker finds in Kafka and the store (tracker check).
status:
	-bash deploy/local/tracker.sh status
	-bash deploy/local/services.sh status
	$(BIN)/tracker check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The whole suite on real servers (started here when not running).
test: install
	bash deploy/local/services.sh start
	$(BIN)/pytest

## The fault battery (tests/faults): under HTTP load, Kafka brokers killed, paused and
## cut off, workers and the store's Redis primary killed; nothing acknowledged may be lost
## or counted twice. Runs on a three-broker cluster and a Redis Cluster of its own
## (deploy/local/kafka-cluster.sh and redis-cluster.sh, which install what is missing),
## started here and stopped after; about 8 minutes.
faults: install
	$(BIN)/python -m tests.faults

bench: install
	bash deploy/local/services.sh start kafka redis
	$(BIN)/python -m bench.pipeline

## One collector process under wrk (pixel and batch), against a baseline and the bare server.
bench-collector: install
	bash deploy/local/services.sh start kafka
	bash deploy/local/tools.sh wrk
	$(BIN)/python -m bench.collector

## The store's load on a three-primary Redis Cluster of its own: each primary's share.
bench-shards: install
	$(BIN)/python -m bench.store_shards

## Kafka's producer benchmark, tracker's records: one broker against three with 3 replicas.
bench-kafka: install
	bash deploy/local/services.sh start kafka
	$(BIN)/python -m bench.kafka_replication

## How long the store stands still when Redis Sentinel fails its primary over (own Redis).
bench-failover: install
	$(BIN)/python -m bench.failover

clean: down
	rm -rf .run

## Wipe the local data (Kafka, Redis, Prometheus, the demo history) and start afresh.
demo-reset: clean
	$(MAKE) up
