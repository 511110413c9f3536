# Draftwire: `make up` runs the service with everything it needs; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: up demo test test-fast deps system-deps lint bench loadtest fuzz chaos drill clean help

help:
	@echo "make up      start Postgres, Redis, migrations, API :8080, worker :9091, Prometheus :9090,"
	@echo "             Alertmanager :9093 (Ctrl-C stops)"
	@echo "make demo    send gentle, realistic traffic to a running make up for 5 min (DEMO_ARGS=--minutes 1)"
	@echo "make test    install what the suite needs and run every test (two processes; TEST_WORKERS=0 for one)"
	@echo "make test-fast  only the tests that start no server (under a minute)"
	@echo "make bench   run the benchmarks recorded in docs/BENCHMARKS.md"
	@echo "make loadtest  the Locust suite on its own stack (LOADTEST_CONFIG=staging, LOADTEST_ARGS=--workers 2)"
	@echo "make fuzz    schemathesis, every check, 100 examples per operation (make test runs 5)"
	@echo "make chaos   the fault scenarios at full size (docs/RELIABILITY.md); make test runs them short"
	@echo "make drill   game-day drill of every alert on a live stack (make drill ALERT=RedisDown for one)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,load]'
	@touch $@

deps: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

up: system-deps deps
	DRAFTWIRE_ENV=dev $(PY) -m devstack

demo: deps
	DRAFTWIRE_ENV=dev $(PY) -m loadtests.demo $(DEMO_ARGS)

# Two pytest-xdist workers, whole folders of tests/ each (most live tests wait on timers, servers
# and Prometheus, not on CPU); TEST_WORKERS=0 runs everything in one process, as servers of your
# own (TEST_DATABASE_URL / TEST_REDIS_URL) require.
TEST_WORKERS ?= $(if $(TEST_DATABASE_URL)$(TEST_REDIS_URL),0,2)

test: system-deps deps lint
	$(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The fast tier: no servers (config, tokens, rules, dashboards, manifests, house rules).
test-fast: deps lint
	$(PY) -m pytest -p no:cacheprovider -m fast $(PYTEST_ARGS)

# Lint and generated files are checked before the tests: a stale dashboard or a lint error fails fast.
lint: deps
	$(VENV)/bin/ruff check app observability devstack drills loadtests tests dashboards deploy
	$(VENV)/bin/mypy app observability
	$(VENV)/bin/lint-imports
	$(PY) dashboards/generate.py --check
	$(PY) deploy/kubernetes/generate.py --check

# The schema fuzz of tests/security, longer: 100 examples per operation instead of 5 (a few minutes).
fuzz: system-deps deps
	FUZZ_EXAMPLES=100 FUZZ_REPORT_DIR=$(CURDIR)/.data $(PY) -m pytest -p no:cacheprovider -s tests/security/test_schema_fuzz.py

bench: system-deps deps
	$(PY) -m loadtests.bench_autosave
	$(PY) -m loadtests.bench_queue
	$(PY) -m loadtests.bench_redis_call
	$(PY) loadtests/bench_realtime.py

# The Locust suite against a throwaway stack; reports in loadtests/reports/<date>-<config>/.
LOADTEST_CONFIG ?= smoke
loadtest: system-deps deps
	$(PY) -m loadtests.suite --config loadtests/configs/$(LOADTEST_CONFIG).yaml --start-stack \
		--output loadtests/reports/$$(date +%F)-$(LOADTEST_CONFIG) --label $(LOADTEST_CONFIG) $(LOADTEST_ARGS)

# Full forms of tests/chaos (10,000 saves, 200 subscribers, 30 s Postgres outage...); figures go
# to .data/chaos/full.jsonl and docs/RELIABILITY.md.
chaos: system-deps deps
	CHAOS_FULL=1 $(PY) -m pytest -p no:cacheprovider tests/chaos -s $(PYTEST_ARGS)

# Every alert's drill (about 20 minutes; the SLO tickets wait out their scaled `for`), or one.
drill: system-deps deps
	$(PY) -m drills $(if $(ALERT),--alert $(ALERT)) --json .data/drills.json

clean:
	rm -rf .data $(VENV)
