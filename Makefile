# One command each: `make run` sets up and trains `linear`; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.regfw-installed

.PHONY: setup run test test-fast bench experiments reproducing ui-screenshots clean

setup: $(STAMP)

# Re-install only when the dependencies or pins change. Constraints pin torch/torchvision so pip
# takes the local build instead of the newest multi-GB release.
$(STAMP): pyproject.toml constraints.txt $(wildcard examples/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,ray]'
	@set -e; for d in examples/*/; do if [ -f "$$d/pyproject.toml" ]; then \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e "$$d"; fi; done
	@# The UI test drives a real browser: Debian's chromium, installed where this runs as root with apt (as CI
	@# does); elsewhere that one test is skipped with its reason.
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium is not installed; the browser test of the MLflow UI will be skipped"
	touch $(STAMP)

run: setup
	$(BIN)/regfw run linear

# --dist loadgroup: tests marked with one xdist_group run in one worker (the Ray tests then share one
# cluster instead of starting one per worker: lighter on a 2-core machine).
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# The developer's inner loop: everything but the tests marked slow (real servers, many processes,
# whole experiments). `make test` runs them all, as CI does.
test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -m "not slow"

bench: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run.py

# Regenerate docs/experiments.md's measured tables from real runs (about 15 minutes on one core;
# docs/tools/experiments.py --help for a subset or a quick check).
experiments: setup
	OMP_NUM_THREADS=1 $(BIN)/python docs/tools/experiments.py

# Regenerate docs/reproducing.md's terminal sessions (an identical and a diverging rerun; seconds).
reproducing: setup
	$(BIN)/python docs/tools/reproducing.py

# Regenerate docs/ui.md's screenshots from the browser tests and a `regfw tune` study (about five
# minutes; needs chromium, as the UI tests do).
ui-screenshots: setup
	OMP_NUM_THREADS=1 $(BIN)/python docs/tools/ui_screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info core/*.egg-info
