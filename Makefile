# Two commands do all the set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch==2.13.0 (constraints.txt) is taken from PyTorch's CPU wheel index when it answers, so a Linux
# machine gets the CPU build instead of PyPI's multi-GB CUDA one; when the index cannot be reached the
# install falls back to the public index alone. A GPU machine: `make TORCH_INDEX=https://download.pytorch.org/whl/cu128`
# (or `TORCH_INDEX=` for PyPI's default build).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= train,dev,bench,milvus
# The serving install (`pip install -c constraints.txt .`, no extras) that `make check-slim` tests.
SLIM_VENV ?= .venv-slim
SLIM_STAMP := $(SLIM_VENV)/.installed

.PHONY: demo test lint clean check-install check-slim

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	@index=""; \
	if [ -n "$(TORCH_INDEX)" ] && $(PY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$(TORCH_INDEX)" 2>/dev/null; then \
		index="--extra-index-url $(TORCH_INDEX)"; echo "torch from $(TORCH_INDEX)"; \
	fi; \
	echo "$(PY) -m pip install -c constraints.txt -e .[$(EXTRAS)] $$index"; \
	$(PY) -m pip install --quiet -c constraints.txt $$index -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ea demo

# The test session starts a redis-server when none answers on EA_TEST_REDIS_URL and stops it afterwards.
# The suite runs on EA_TEST_WORKERS pytest-xdist workers (its tests mostly wait on workers, servers and
# timeouts, so more workers than cores; 0 runs it in one process); tests/_scheduling.py says which tests share
# a worker. PYTEST_ARGS adds pytest options: `make test PYTEST_ARGS="-k cluster --durations=20"`.
EA_TEST_WORKERS ?= 4
PYTEST_ARGS ?=
test: $(STAMP)
	$(PY) -m pytest -q -n $(EA_TEST_WORKERS) $(PYTEST_ARGS) tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# `make bench-NAME` runs bench/NAME.py (registry, recsys, anomaly, serving, alerts, load, cluster, ...).
bench-%: $(STAMP)
	$(PY) bench/$*.py

# What a fresh machine resolves: the pinned install from PyPI alone, with this machine's local wheel
# folder and pip configuration switched off (a dry run: nothing is downloaded but metadata).
check-install: $(STAMP)
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
		$(PY) -m pip install --dry-run --ignore-installed --quiet --index-url https://pypi.org/simple \
		-c constraints.txt ".[$(EXTRAS)]"
	@echo "check-install: constraints.txt resolves from PyPI alone"

# The slim install: a second venv with no extras (this tree installed as a user would, not editable), then
# tests/slim against a real Redis: it submits a job and serves recommendations from the slim venv, with a
# model trained by a worker of the full venv. Dependencies are installed once per change of the pins.
$(SLIM_STAMP): pyproject.toml constraints.txt
	test -x $(SLIM_VENV)/bin/python || $(PYTHON) -m venv $(SLIM_VENV)
	$(SLIM_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(SLIM_VENV)/bin/python -m pip install --quiet -c constraints.txt .
	touch $(SLIM_STAMP)

check-slim: $(STAMP) $(SLIM_STAMP)
	rm -rf build
	$(SLIM_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall -c constraints.txt .
	rm -rf build
	EA_SLIM_VENV=$(abspath $(SLIM_VENV)) $(PY) -m pytest -q tests/slim

clean:
	rm -rf $(VENV) $(SLIM_VENV) build .pytest_cache
