# `make demo` and `make test` set everything up on a fresh clone (Debian, Python 3.11, root or sudo).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# This machine kind serves these two from local disk; override on other machines.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed data

data:
	@[ -d $(FMNIST) ] || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
	  || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"

# Chromium for the dashboard's real-browser test (Playwright drives it; never `playwright install`).
browser:
	@[ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } \
	  || echo "warning: could not install chromium; the browser test will be skipped"

demo: setup
	$(VENV)/bin/se-analysis demo

test: setup browser
	$(PY) -m pytest

bench: setup
	$(PY) bench/collect_overhead.py

clean:
	rm -rf $(VENV) runs
