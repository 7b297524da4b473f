# The two commands of a fresh clone: `make demo` and `make test`.
# Both create .venv and install what they need; neither touches a user's EPICS setup:
# the demo and the tests pin EPICS traffic to loopback themselves.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench soak chaos lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[files,crypto,codecs,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pvhpc run examples/workflows/demo.yaml

# Two workers (one per core here), a test file per worker at a time: most of an
# end-to-end test is waiting on real streams, so the suite takes about half as long.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py

soak: $(STAMP)
	$(PY) benchmarks/soak.py

chaos: $(STAMP)
	$(PY) benchmarks/chaos.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
