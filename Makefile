# The README's two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv when it is missing and install the pinned set from requirements.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo bench clean clean-runs

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$$(grep '^torch==' requirements.txt)"
	$(PY) -m pip install -q -r requirements.txt
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# the tests that start no servers and train nothing (a few minutes): for the edit-test loop, not a substitute for `test`
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

demo: $(STAMP)
	$(PY) -m jobs demo

bench: $(STAMP)
	$(PY) benchmarks/bench_ops.py
	$(PY) benchmarks/bench_net.py

# the environment and caches only; trained runs, checkpoints and the MLflow store in runs/ are kept
clean:
	rm -rf $(VENV) .pytest_cache gpu_check_out

# deletes runs/: every checkpoint, Ray result and the embedded MLflow store (runs/mlflow.db) with its registry
clean-runs:
	rm -rf runs
