# Developer entry points. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The oldest supported Airflow minor gets a venv of its own (see test-oldest).
OLDEST       := .venv-airflow-3.0
OLDEST_STAMP := $(OLDEST)/.installed
# Python versions CI also runs the whole suite on, besides $(PYTHON) (3.11), each in a venv of its own
# (.venv-pyX.Y, pinned by constraints.txt): the newest one pyproject's classifiers name. The
# classifiers list every version from 3.11 up to it (tests/test_packaging.py); 3.12 is left out of CI
# to keep its time down (about 8 min a version); `make test-extra-pythons EXTRA_PYTHONS="3.12 3.13"` runs it.
EXTRA_PYTHONS := 3.13
PYENV_ROOT    ?= $(HOME)/.pyenv
# The suites run in parallel with pytest-xdist: JOBS workers (two per CPU), each with its own
# AIRFLOW_HOME, PostgreSQL server and temporary folders; the Airflow database is migrated once per run.
# worksteal: each worker starts on its own half (module fixtures stay with their tests) and takes
# over half of what the other has left when it runs dry. `make test JOBS=0` runs in one process.
# Twice as many workers as CPUs: the suite waits (servers' latency, timeouts, retries) about half
# its time, so on 2 CPUs 4 workers took 272 s for make test where 2 took about 380 s.
JOBS   ?= $(shell echo $$(( 2 * $$(nproc) )))
XDIST  := -n $(JOBS) --dist worksteal
# Packages go into the venvs with uv (pinned here): it resolves and unpacks Airflow's ~200 packages
# several times faster than pip, which matters for CI's five installs. uv lives in a venv of its own.
UV_VERSION := 0.13.9
UV         := .venv-uv/bin/uv
# `$(PIP) VENV ARGS…` installs ARGS into the venv VENV, compiled to bytecode: uv leaves that out by
# default, and then every Python process compiles what it imports again (Airflow alone: 7.5 s of CPU
# per process instead of 3.3 s, measured), in each of the suites' hundreds of processes.
PIP        := $(UV) pip install --quiet --compile-bytecode --python
# Where PYTHONDONTWRITEBYTECODE is set (as on the developer machine), the repository's own modules and
# pytest's rewritten test modules were compiled again by every process too: the recipes let Python
# cache them in __pycache__ (ignored by git).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install venvs postgres mariadb redis test test-fast test-slow test-oldest test-minors test-extra-pythons lint demo bench bench-distributed e2e e2e-distributed docs \
	docs-serve dist clean

# The development tools are PEP 735 dependency groups (pyproject's [dependency-groups]), which only
# pip 25.1+ installs (--group): each venv first gets the pip that constraints.txt pins.
DEV := -e '.[postgres,sqlite,openlineage]' --group dev

$(UV):
	$(PYTHON) -m venv .venv-uv
	.venv-uv/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): pyproject.toml constraints.txt | $(UV) mariadb
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(VENV) -c constraints.txt $(DEV)
	touch $(STAMP)

## install: create .venv with the provider (editable) and the test tools, pinned by constraints.txt
install: $(STAMP)

## postgres: install Debian's PostgreSQL server when missing (the tests start throwaway clusters of it)
postgres:
	bash scripts/ensure-postgres.sh

## mariadb: install Debian's MariaDB server and client headers when missing (the tests start throwaway
##          servers of it; the MySQL provider's driver, mysqlclient, compiles against the headers)
mariadb:
	bash scripts/ensure-mariadb.sh

## test: the test suite but its slow tier (in parallel, JOBS workers); CI also runs test-slow
test: $(STAMP) postgres mariadb
	$(BIN)/pytest $(XDIST) -m "not slow"

## test-slow: the slow tier (marker slow): long end-to-end tests (the demo, a user's pytest session,
##            secret hygiene over five Airflow runs, crash and race batches)
test-slow: $(STAMP) postgres mariadb
	$(BIN)/pytest $(XDIST) -m slow

## test-fast: the tests that run no Airflow (no DAG run, no `airflow` command, no migrated database),
##            for the edit-test loop, with 20 examples per property test (Hypothesis's profile "fast",
##            tests/conftest.py); `make test` runs them all, with 100
test-fast: $(STAMP) postgres mariadb
	$(BIN)/pytest $(XDIST) -m "not airflow" --hypothesis-profile=fast

$(OLDEST_STAMP): pyproject.toml constraints-airflow-3.0.txt | $(UV) mariadb
	$(PYTHON) -m venv $(OLDEST)
	$(PIP) $(OLDEST) -c constraints-airflow-3.0.txt -e '.[postgres,sqlite]' pytest hypothesis pytest-examples \
		pytest-xdist apache-airflow-providers-mysql
	touch $(OLDEST_STAMP)

## test-oldest: the suite but its slow tier on the oldest supported Airflow (3.0), pinned by
##              constraints-airflow-3.0.txt (the slow tier runs once, on the newest Airflow: CI's time)
test-oldest: $(OLDEST_STAMP) postgres mariadb
	$(OLDEST)/bin/pytest -p no:cacheprovider $(XDIST) -m "not slow"

# Each Airflow minor between the oldest and the newest gets a venv of its own (.venv-airflow-X.Y, pinned by
# constraints-airflow-X.Y.txt) that runs the docs and the example DAGs only: what a user pastes or starts from.
MINORS       := 3.1 3.2
MINOR_STAMPS := $(foreach v,$(MINORS),.venv-airflow-$(v)/.installed)
MINOR_TESTS  := tests/test_docs.py tests/test_docs_dags_folder.py tests/test_docs_scaling.py \
	tests/registry/test_guide.py tests/test_example_dags.py tests/test_example_nightly.py

.venv-airflow-%/.installed: pyproject.toml constraints-airflow-%.txt | $(UV)
	$(PYTHON) -m venv .venv-airflow-$*
	$(PIP) .venv-airflow-$* -c constraints-airflow-$*.txt -e '.[postgres,sqlite]' pytest hypothesis pytest-examples \
		pytest-xdist
	touch $@

## test-minors: the docs' examples and the example DAGs (MINOR_TESTS, but the slow tier) on each Airflow
##              minor between the oldest and the newest (MINORS), two workers each
test-minors: $(MINOR_STAMPS) postgres
	for v in $(MINORS); do .venv-airflow-$$v/bin/pytest -p no:cacheprovider -n 2 --dist worksteal -m "not slow" \
		$(MINOR_TESTS) || exit 1; done

## venvs: every venv the test targets use (.venv, the oldest Airflow's, EXTRA_PYTHONS'); `make -j3 venvs`
##        builds them at once (CI does: pip waits on the disk half of the time)
venvs: $(STAMP) $(OLDEST_STAMP) $(MINOR_STAMPS) $(foreach v,$(EXTRA_PYTHONS),.venv-py$(v)/.installed)

## test-extra-pythons: the suite but its slow tier on each of EXTRA_PYTHONS (newest Airflow, constraints.txt)
test-extra-pythons: $(foreach v,$(EXTRA_PYTHONS),.venv-py$(v)/.installed) postgres mariadb
	for v in $(EXTRA_PYTHONS); do .venv-py$$v/bin/pytest -p no:cacheprovider $(XDIST) -m "not slow" || exit 1; done

# The interpreter: pyenv's (as on the CI machine), else pythonX.Y on PATH.
.venv-py%/.installed: pyproject.toml constraints.txt | $(UV) mariadb
	py=$(firstword $(wildcard $(PYENV_ROOT)/versions/$*.*/bin/python$*) python$*); \
	"$$py" -c pass || { echo "No Python $*: install it (e.g. pyenv install $*)"; exit 1; }; \
	"$$py" -m venv .venv-py$* && $(PIP) .venv-py$* -c constraints.txt $(DEV)
	touch $@

## lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## demo: start the embedded AI-DOL server, run the example DAG in real Airflow, print the conversation ids
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## bench: install the bench extras, run the benchmarks, write docs/benchmarks.{md,json,png} (about 35 min)
bench: $(STAMP) postgres
	$(PIP) $(VENV) -c constraints.txt $(DEV) --group bench
	$(BIN)/python -m benchmarks

DOCS_INSTALL := $(PIP) $(VENV) -c constraints.txt -c constraints-docs.txt $(DEV) --group docs

## docs: install the docs extras, build the documentation site with mkdocs --strict into site/ (offline),
##       then check every link names a file, so site/index.html also works opened from disk
docs: $(STAMP)
	$(DOCS_INSTALL)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	$(BIN)/python scripts/check_site.py site

## docs-serve: the documentation site on http://127.0.0.1:8000/airflow-provider-aidol/, rebuilt on every change
docs-serve: $(STAMP)
	$(DOCS_INSTALL)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

## e2e: the real user path: Airflow 3.3 UI in Debian's headless Chromium (Playwright) against the embedded server,
##      and a triggerer SIGKILLed mid-request with a deferrable image task (about 1.5 min)
e2e: $(STAMP)
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	$(PIP) $(VENV) -c constraints.txt -c constraints-e2e.txt $(DEV) --group e2e
	$(BIN)/pytest e2e -q --ignore=e2e/distributed

## redis: install Debian's Redis server when missing (e2e-distributed starts a throwaway one as the Celery broker)
redis:
	bash scripts/ensure-redis.sh

E2E_DISTRIBUTED_INSTALL := $(PIP) $(VENV) -c constraints.txt -c constraints-e2e.txt \
	-c constraints-e2e-distributed.txt $(DEV) --group e2e --group e2e-distributed

## e2e-distributed: the nightly pipeline on Airflow with the CeleryExecutor (Redis, PostgreSQL, two Celery
##      workers, one SIGKILLed mid-run) (about 2.5 min)
e2e-distributed: $(STAMP) postgres redis
	$(E2E_DISTRIBUTED_INSTALL)
	$(BIN)/pytest e2e/distributed -q --ignore=e2e/distributed/test_batch_vs_mapped.py

## bench-distributed: batch vs mapped on that Celery deployment: one batch task against 200 mapped task
##      instances, measured side by side (about 4 min; a benchmark, so not in CI)
bench-distributed: $(STAMP) postgres redis
	$(E2E_DISTRIBUTED_INSTALL)
	$(BIN)/pytest e2e/distributed/test_batch_vs_mapped.py -q

## dist: build the sdist and wheel into dist/ and check them, with validators this project did not write
##       (pinned by constraints-release.txt): validate-pyproject, twine check --strict, check-wheel-contents,
##       pyroma 10/10; then scripts/check_dist.py: the wheel installed alone into a new venv passes pip check,
##       its provider info validates against Airflow's schema and `airflow providers list` shows it; the
##       unpacked sdist collects every test
RELEASE_PINS := PIP_CONSTRAINT='$(CURDIR)/constraints.txt $(CURDIR)/constraints-release.txt'
dist: $(STAMP)
	$(PIP) $(VENV) -c constraints.txt -c constraints-release.txt $(DEV) --group release
	$(BIN)/validate-pyproject pyproject.toml
	rm -rf dist
	$(RELEASE_PINS) $(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*
	$(BIN)/check-wheel-contents dist/*.whl
	$(RELEASE_PINS) $(BIN)/pyroma --min 10 dist/*.tar.gz
	$(BIN)/python scripts/check_dist.py dist

clean:
	rm -rf $(VENV) $(OLDEST) .venv-airflow-* .venv-py3.* .venv-uv dist site .pytest_cache .mypy_cache .ruff_cache .hypothesis .demo
