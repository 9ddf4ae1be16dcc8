# Two commands do all the set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	# torch is pinned (constraints.txt: torch==2.13.0) so that pip takes the CPU build, not a multi-GB CUDA one.
	$(PY) -m pip install --quiet -c constraints.txt -e ".[train,dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ea demo

# The test session starts a redis-server when none answers on EA_TEST_REDIS_URL and stops it afterwards.
test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# `make bench-NAME` runs bench/NAME.py (registry, recsys, anomaly, serving, alerts, load).
bench-%: $(STAMP)
	$(PY) bench/$*.py

clean:
	rm -rf $(VENV) .pytest_cache
