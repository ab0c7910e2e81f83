# SlicerMedNets developer commands. On a fresh machine:
#   make demo   - create .venv, install, run every module on bundled sample data, write demo-output/
#   make test   - create .venv, install .[test], run the whole test suite
# torch/torchvision are pinned for dev/test (requirements-dev.txt); the extension itself accepts torch>=2.1.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
PYTEST_ARGS ?=
export QT_QPA_PLATFORM ?= offscreen
export PIP_DISABLE_PIP_VERSION_CHECK = 1
# No wheel cache: the venv alone is ~5.6 GB (CUDA build of torch); a cached copy would double the disk it needs.
export PIP_NO_CACHE_DIR = 1

.PHONY: test test-learning demo venv bench screenshots clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e ".[test]"
	touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Every module's learning test, including the `long` ones too long for CI (OrganCombo's issue bar: ~20 min on 2
# idle cores; AdaptiveRecontour's: ~20 CPU-minutes on one thread).
test-learning: $(STAMP)
	MEDNETS_LONG_TESTS=1 $(PY) -m pytest $(PYTEST_ARGS) */Testing/Python/test_learning.py

demo: $(DEMO_STAMP)
	$(PY) Scripts/run_demo.py --output demo-output

screenshots: $(DEMO_STAMP)
	$(PY) Scripts/make_screenshots.py --output Docs

bench: $(STAMP)
	for b in Testing/Benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output .pytest_cache
