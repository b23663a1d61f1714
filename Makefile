# `make benchmark` and `make test` are the two commands in README.md; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
DNNBENCH := $(VENV)/bin/dnnbench
RESULTS ?= results
DB ?= $(RESULTS)/dnnbench.sqlite
# The main job is sized to finish in minutes on 2 CPU cores: batch sizes 1 and 8, one thread, a short
# budget per cell. For the study's full sweep: .venv/bin/dnnbench run --suite paper (batch sizes 1..64).
THREADS ?= 1
QUICK_SWEEP ?= --batch-sizes 1,8 --threads $(THREADS) --time-budget 1 --min-samples 3 --warmup-iters 1 --warmup-s 0.2

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
	$(DNNBENCH) run --suite paper $(QUICK_SWEEP) --db $(DB)
	$(DNNBENCH) profile --suite paper --output $(RESULTS)/complexity-paper.csv
	$(DNNBENCH) export $(RESULTS)/dnnbench.csv --db $(DB)
	$(DNNBENCH) report --db $(DB) -o report

clean:
	rm -rf $(VENV) $(RESULTS) report
