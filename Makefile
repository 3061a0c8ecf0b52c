# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.evolens-installed
DEMO_DIR ?= runs/demo

.PHONY: setup demo test bench clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel that lies on disk; a plain `torch` requirement would pull CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	# torch-fidelity is the reference our FID Inception and its TF1 resize are tested against; it declares
	# torchvision, which cannot sit beside the CPU torch wheel, and the parts we compare with do not use it.
	$(PY) -m pip install --no-deps 'torch-fidelity==0.4.0'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/evolens demo --out $(DEMO_DIR)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install -e '.[dev,bench]'
	$(PY) benchmarks/monitor_overhead.py
	$(PY) benchmarks/encoders.py
	$(PY) benchmarks/metrics.py
	$(PY) benchmarks/projection.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
