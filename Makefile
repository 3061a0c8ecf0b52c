# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evolens-installed
DEMO_DIR ?= runs/demo

CHROMIUM ?= /usr/bin/chromium

.PHONY: setup browser postgres demo test test-fast bench clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel that lies on disk; a plain `torch` requirement would pull CUDA.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install torch==2.13.0
	# constraints.txt pins torch: lightning, diffusers and accelerate must not pull a CUDA build
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	# torch-fidelity is the reference our FID Inception and its TF1 resize are tested against; it declares
	# torchvision, which cannot sit beside the CPU torch wheel, and the parts we compare with do not use it.
	$(PY) -m pip install --no-deps 'torch-fidelity==0.4.0'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/evolens demo --out $(DEMO_DIR)

# The browser tests drive Debian's Chromium with Playwright (no browser download); install it when missing.
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }; }

# The results store of workers on several hosts is tested against a real PostgreSQL server, which the test starts
# on loopback from Debian's server programs; install them when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  echo "installing Debian's postgresql for the results-store tests"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }; }

# The complete suite (what CI runs).
test: setup browser postgres
	EVOLENS_REQUIRE_BROWSER=1 EVOLENS_REQUIRE_POSTGRES=1 EVOLENS_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

# Everyday tier: everything but the tests marked slow (experiments, the demo, Inception, 2048-d metrics).
test-fast: setup
	EVOLENS_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) -m pip install -c constraints.txt -e '.[dev,bench]'
	# clean-fid declares torchvision, which cannot sit beside the CPU torch: its feature-level code needs none
	$(PY) -m pip install --no-deps 'clean-fid==0.1.35'
	$(PY) benchmarks/monitor_overhead.py
	$(PY) benchmarks/live.py
	$(PY) benchmarks/encoders.py
	$(PY) benchmarks/metrics.py
	$(PY) benchmarks/metrics_peers.py
	$(PY) benchmarks/projection.py
	$(PY) benchmarks/dashboard.py
	$(PY) benchmarks/scale.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
