# facetubes: set-up, tests and the demo. Everything installs into ./.venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO   := demo

.PHONY: install test test-fast demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch/torchvision from the registry (CUDA builds; they run on CPU too)
	$(PIP) install --quiet "torch>=2.2" "torchvision>=0.17"
	$(PIP) install --quiet -e ".[test]"
	# facenet-pytorch pins torch<2.3 and numpy<2: install it without its dependencies
	$(PIP) install --quiet --no-deps "facenet-pytorch==2.6.0"
	$(PY) -c "import torch, torchvision, av, skimage, timm, facenet_pytorch; print('facetubes environment ready: torch', torch.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

demo: $(STAMP)
	$(PY) -m facetubes.demo --out $(DEMO)

bench: $(STAMP)
	$(PY) benchmarks/extract.py

clean:
	rm -rf $(DEMO) .pytest_cache
