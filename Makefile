# CareLine: `make run` (the whole demo, embedded defaults) and `make test` (the suite on PostgreSQL + Redis).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
FHIR_PORT ?= 8091
MLLP_PORT ?= 2575

.PHONY: up-scaled run test test-embedded lint typecheck audit services bench surge chaos clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## run: install, migrate, seed the demo clinic, start the demo EHR, daphne, Celery worker and beat, the MLLP listener.
run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo --base-url http://127.0.0.1:$(PORT)
	CARELINE_PORT=$(PORT) CARELINE_FHIR_PORT=$(FHIR_PORT) CARELINE_MLLP_PORT=$(MLLP_PORT) FHIR_BASE_URL=http://127.0.0.1:$(FHIR_PORT)/fhir \
		$(VENV)/bin/honcho --procfile Procfile start

## up-scaled: the production-like topology on PostgreSQL + Redis: HAProxy on 127.0.0.1:$(PORT) in front of
## $(WEB_NODES) daphne nodes, 2 Celery workers, beat, the MLLP listener, the demo EHR (README "Operating CareLine").
WEB_NODES ?= 2
up-scaled: $(VENV)/.installed
	VENV=$(VENV) PORT=$(PORT) WEB_NODES=$(WEB_NODES) FHIR_PORT=$(FHIR_PORT) MLLP_PORT=$(MLLP_PORT) scripts/up-scaled.sh

## test: the whole suite against PostgreSQL and Redis on localhost (started if down), Chromium for e2e.
test: $(VENV)/.installed
	scripts/ensure-test-services.sh
	$(PY) -m pytest

## test-embedded: the suite (browser tests aside) on SQLite, the embedded default `make run` uses.
test-embedded: $(VENV)/.installed
	mkdir -p var
	rm -f var/test-embedded.sqlite3
	DATABASE_URL=sqlite:///$(CURDIR)/var/embedded-unused.sqlite3 CARELINE_TEST_DB=$(CURDIR)/var/test-embedded.sqlite3 \
		$(PY) -m pytest -q -m "not e2e"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

## audit: known vulnerabilities in the pinned runtime dependencies (pip-audit against the OSV database).
## --strict fails when any dependency could not be audited, so the target never passes without auditing.
## Not called from .ci/run: this machine kind cannot reach api.osv.dev, and the package mirror does not serve
## PyPI's vulnerability JSON (see README "Security" -> "Dependency audit").
audit: $(VENV)/.installed
	$(VENV)/bin/pip-audit --strict --vulnerability-service osv -r requirements.txt

## chaos: the fault-injection tests alone at full scale (tests/chaos, marker `chaos`; 200 consoles in the Redis
## restart test; they also run in `make test`, that one with 60 consoles).
chaos: $(VENV)/.installed
	scripts/ensure-test-services.sh
	CARELINE_CHAOS_CONSOLES=200 $(PY) -m pytest -m chaos tests/chaos

bench: $(VENV)/.installed
	scripts/ensure-test-services.sh
	$(PY) bench/claim.py
	$(PY) bench/fanout.py
	$(PY) bench/writeback_drain.py
	$(PY) bench/ivr_webhook.py
	$(PY) bench/claim_latency.py
	$(PY) bench/kleinrock.py
	$(PY) bench/nurse_line.py

## surge: 10x the demo clinic's normal arrivals for 15 simulated minutes through the scaled topology (HAProxy,
## 2 daphne nodes, Celery, MLLP, demo EHR) that bench/surge.py starts on free ports and stops (~3-4 min).
surge: $(VENV)/.installed
	scripts/ensure-test-services.sh
	$(PY) bench/surge.py

clean:
	rm -rf var .pytest_cache
