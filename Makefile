# facetubes: set-up, tests and the demo. Everything installs into ./.venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO   := demo

.PHONY: install test test-fast docs figures demo bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch/torchvision from the registry (CUDA builds; they run on CPU too)
	$(PIP) install --quiet "torch>=2.2" "torchvision>=0.17"
	$(PIP) install --quiet -e ".[test,docs]"
	# facenet-pytorch pins torch<2.3 and numpy<2: install it without its dependencies
	$(PIP) install --quiet --no-deps "facenet-pytorch==2.6.0"
	$(PY) -c "import torch, torchvision, av, skimage, timm, facenet_pytorch; print('facetubes environment ready: torch', torch.__version__)"
	touch $(STAMP)

# One pytest-xdist worker per core (`worksteal` rebalances the long tests); `PYTEST_ARGS=-n0` runs in-process.
PYTEST_ARGS ?= -n auto --dist worksteal

# The suite, then the documentation build (--strict), so CI catches broken docs too.
test: $(STAMP)
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)
	$(MAKE) --no-print-directory docs

# The documentation site (MkDocs, mkdocs.yml) into site/; a broken link, anchor or include fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# Redraw docs/img/*.png (needs the shared real data for the DFDC pictures; see docs/contributing.md).
figures: $(STAMP)
	MPLBACKEND=Agg $(PY) docs/make_figures.py

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra $(PYTEST_ARGS) -m "not slow"

# The whole pipeline on a synthetic sample (real face photos, real and manipulated videos): a few minutes on CPU.
demo: $(STAMP)
	rm -rf $(DEMO)
	$(PY) -m facetubes sample $(DEMO)/videos --real 4 --fake 4 --scenario one --width 320 --height 240 --frames 72
	$(PY) -m facetubes extract $(DEMO)/videos --out $(DEMO)/tubes --labels $(DEMO)/videos/metadata.json
	$(PY) -m facetubes preview $(DEMO)/tubes --output $(DEMO)/preview.png
	$(VENV)/bin/train3d --arch mc3 --data $(DEMO)/tubes --out $(DEMO)/run --epochs 1 --batch-size 4 \
		--clip-len 8 --crop-size 64 --split column --no-progress
	$(PY) -m facetubes predict $(DEMO)/videos --ensemble examples/demo-ensemble.yaml \
		--out $(DEMO)/predictions.csv --per-model --quiet
	$(PY) -m facetubes evaluate $(DEMO)/predictions.csv --labels $(DEMO)/videos/metadata.json --out $(DEMO)/eval
	@echo "demo done: $(DEMO)/preview.png (what was extracted), $(DEMO)/run (training), $(DEMO)/eval (metrics, plots)"

bench: $(STAMP)
	$(PY) benchmarks/extract.py --videos 3 --grain 4 --compare-sparse 2
	$(PY) benchmarks/extract.py --videos 3 --grain 7 --no-memory --batch 1,2

# Every GPU figure in one run (extraction, training steps with AMP, data loading, ensemble inference, GPU checks),
# within 8 minutes, written into benchmarks/RESULTS.md with the device named. Refuses without CUDA.
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu.py

clean:
	rm -rf $(DEMO) .pytest_cache site
