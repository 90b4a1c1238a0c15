# Two commands: `make demo` (the study on the built-in synthetic stream) and `make test` (the whole suite).
# Both create or reuse the project-local virtual environment .venv.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0; on a GPU machine use e.g. `make setup TORCH=torch` for the CUDA build.
TORCH ?= torch==2.13.0
RESULTS ?= results/demo
# JupyterLab opens working copies of the notebooks, so that exploring never edits the committed ones (nbval's
# references). LAB is git-ignored; a copy already there is kept (delete it for a fresh one).
LAB ?= lab
PORT ?= 8888
# Jupyter refuses to start as root without --allow-root (containers, CI machines run as root).
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: setup demo test browser-test lab clean
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

# One worker per core (JOBS=1: one process). --dist loadscope: each test file, and each notebook's cells in order
# in one kernel, go to one worker. (loadgroup's groups are lost under pytest 9 with pytest-xdist 3.8: the cells
# of one notebook were spread over both workers, and each new kernel failed on the names of the cells before.)
JOBS ?= auto
test: setup
	$(PY) -m pytest tests notebooks --nbval -n $(JOBS) --dist loadscope

# The explorer in headless Chromium (tests/browser): needs Debian's chromium and chromium-driver, which
# .ci/run installs with apt-get; selenium comes from pip.
browser-test: setup
	$(PY) -m pip install --quiet "selenium>=4.20"
	$(PY) -m pytest -m browser tests/browser -s

lab: setup
	@mkdir -p $(LAB)
	@for nb in notebooks/0*.ipynb; do \
		if [ -e "$(LAB)/$${nb#notebooks/}" ]; then echo "kept $(LAB)/$${nb#notebooks/} (delete it for a fresh copy)"; \
		else cp "$$nb" "$(LAB)/"; echo "copied $$nb to $(LAB)/"; fi; done
	$(VENV)/bin/jupyter lab --notebook-dir=$(LAB) --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache
