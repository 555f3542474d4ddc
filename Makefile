# Two commands do everything on a fresh machine (Python 3.11 + gcc; nvcc optional):
#   make demo   set up, check every backend that runs here against the reference, write results/REPORT.md
#   make test   set up, then the whole test suite (what CI runs)
# and one for a lent GPU machine without network (no venv, no package index; its own python3 and torch):
#   make gpu-check [PYTHON=python3]   build in place, GPU tests, compute-sanitizer, GPU benchmarks; see below
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# On a machine with a GPU, `pip install torch==2.13.0` brings the CUDA build; here it resolves to the CPU wheel.
# Elsewhere without a GPU, point TORCH_INDEX at a CPU-only index so no CUDA packages are pulled.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
# Backends the test run insists on: the C++ extension is built here, Triton runs in its interpreter without a GPU.
EXPECT_BACKENDS ?= reference,cpp,triton$(if $(shell nvidia-smi -L 2>/dev/null),$(comma)cuda)
comma := ,
EXT_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' 2>/dev/null) setup.py

.PHONY: setup demo test cuda-check cost-model compile-report bench gpu-check clean

setup: $(VENV)/.deps-stamp $(VENV)/.ext-stamp $(VENV)/.torchvision-hook-stamp

$(VENV)/.deps-stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@# the test extra of pyproject.toml, installed without building the package yet
	$(PIP) install -q $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['test']))")
	$(PIP) install -q --no-deps $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['test-no-deps']))")
	@touch $@

# The package is installed editable, with its C++ extension built in place (never in an isolated
# build environment, which would fetch another torch).
$(VENV)/.ext-stamp: $(VENV)/.deps-stamp $(EXT_SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@touch $@

# An import hook (a .pth file) so that any script this venv runs can import torchvision, timm and transformers'
# Swin although PyPI's torchvision is built against the CUDA torch (tools/torchvision_compat.py).
$(VENV)/.torchvision-hook-stamp: $(VENV)/.deps-stamp tools/torchvision_compat.py
	$(PY) -m tools.torchvision_compat --install
	@touch $@

demo: setup
	$(PY) -m benchmarks.demo $(DEMO_ARGS)

test: setup
	@if [ -n "$(NVCC)" ]; then $(MAKE) --no-print-directory cuda-check; else echo "cuda-check skipped: nvcc not found"; fi
	$(MAKE) --no-print-directory compile-report
	$(MAKE) --no-print-directory cost-model
	SWIN_KERNELS_EXPECT_BACKENDS=$(EXPECT_BACKENDS) $(PY) -m pytest tests -q --durations=15
	$(PY) -m pytest benchmarks -q --benchmark-disable

cuda-check: setup
	$(PY) -m tools.cuda_check

# static GPU cost model of the Triton kernels (table in results/cost_model.md); fails when a kernel exceeds the
# instruction or register budget recorded in tools/cost_model/budgets.json. Compiles are cached in results/.
cost-model: setup
	$(PY) -m tools.cost_model --check-budgets

compile-report: setup
	$(PY) -m tools.compile_report

bench: setup
	$(PY) -m pytest benchmarks --benchmark-json=results/benchmarks.json

# Uses $(PYTHON) and the packages already installed: builds the extension in place for the present GPU, imports
# the package from this tree, and runs every stage within GPU_CHECK_BUDGET seconds (tools/gpu_check.py).
# Results in $OUT when set, else results/gpu/. Runs as a file, so a package that fails to import still gets a report.
GPU_CHECK_BUDGET ?= 480
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(PYTHON) tools/gpu_check.py \
		--budget $(GPU_CHECK_BUDGET) $(GPU_CHECK_ARGS)

clean:
	rm -rf build *.egg-info swin_kernels/*.so results/*.png results/REPORT.md
