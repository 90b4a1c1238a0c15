# Two commands: `make demo` (the study on the built-in synthetic stream) and `make test` (the whole suite).
# Both create or reuse the project-local virtual environment .venv.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0; on a GPU machine use e.g. `make setup TORCH=torch` for the CUDA build.
TORCH ?= torch==2.13.0
RESULTS ?= results/demo

.PHONY: setup demo test clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,distributed]"
	touch $@

demo: setup
	$(PY) -m autoemb_core demo --results-dir $(RESULTS)

test: setup
	$(PY) -m pytest tests notebooks --nbval

clean:
	rm -rf $(VENV) results .pytest_cache
