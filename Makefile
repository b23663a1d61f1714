# `make benchmark` and `make test` are the two commands in README.md; both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
DNNBENCH := $(VENV)/bin/dnnbench
RESULTS ?= results
DB ?= $(RESULTS)/dnnbench.sqlite
# The main job: batch sizes 1 and 8, one thread, a short budget per cell (0.3 s). A worker's start-up costs more
# than its timing, so 3 fresh-process trials of all 46 models would take about twice as long (~30 minutes on 2 cores).
# Instead a probe measures PROBE_MODELS in PROBE_REPEATS trials first: their trial medians give this machine's
# between-process spread, pooled (docs/METHODOLOGY.md), which every single-trial cell's interval in the report
# then carries. The probe adds about two minutes. REPEATS=3 gives every cell trials of its own (~30 minutes).
# For the study's full sweep: .venv/bin/dnnbench run --suite paper --repeats 3 (batch sizes 1..64).
THREADS ?= 1
REPEATS ?= 1
PROBE_MODELS ?= mobilenetv2 resnet18 vgg16
PROBE_REPEATS ?= 3
QUICK_SWEEP ?= --batch-sizes 1,8 --threads $(THREADS) --time-budget 0.3 --min-samples 3 \
	--warmup-iters 1 --warmup-s 0.1 --warmup-settle-s 0.25

.PHONY: install test benchmark clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The Ray cluster tests (marker `ray`) start a loopback cluster: they run in a network namespace with only
# loopback (Ray would otherwise probe for a public address), which needs root and iproute2.
RAY_NETNS ?= dnb
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -m "not ray"
	@if [ "$$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1 && \
		{ ip netns add $(RAY_NETNS) 2>/dev/null; ip netns exec $(RAY_NETNS) ip link set lo up; }; then \
		ip netns exec $(RAY_NETNS) env HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/pytest -q -m ray; \
	else \
		echo "skipping the Ray cluster tests (pytest -m ray): they run in a loopback-only network namespace (ip netns), which needs root and iproute2"; \
	fi

benchmark: install
	$(DNNBENCH) models --suite paper
	$(DNNBENCH) run $(PROBE_MODELS) $(QUICK_SWEEP) --repeats $(PROBE_REPEATS) --db $(DB)
	$(DNNBENCH) run --suite paper $(QUICK_SWEEP) --repeats $(REPEATS) --db $(DB)
	$(DNNBENCH) profile --suite paper --db $(DB) --output $(RESULTS)/complexity-paper.csv
	$(DNNBENCH) export $(RESULTS)/dnnbench.csv --db $(DB)
	$(DNNBENCH) report --db $(DB) -o report

clean:
	rm -rf $(VENV) $(RESULTS) report
