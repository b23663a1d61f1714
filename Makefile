# `make benchmark` and `make test` are the two commands in README.md; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
DNNBENCH := $(VENV)/bin/dnnbench
RESULTS ?= results

.PHONY: install test benchmark clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(VENV)/bin/pytest -q

benchmark: install
	$(DNNBENCH) models --suite paper
	$(DNNBENCH) profile --suite paper
	$(DNNBENCH) profile --suite paper --output $(RESULTS)/complexity-paper.csv

clean:
	rm -rf $(VENV) $(RESULTS)
