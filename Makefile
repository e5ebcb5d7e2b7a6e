# The two commands a new user types: `make demo` and `make test`. Everything else hangs off them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/lyrics-classifier
MODEL  := models/default

export CDK_DISABLE_CLI_TELEMETRY := true
# This machine has no network at run time: never let Hugging Face libraries try a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test bench model synth clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[build,deploy,test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# build-model keeps its own input hash: it is a no-op when nothing changed.
model: $(VENV)/.installed
	$(CLI) build-model --out $(MODEL)

demo: model
	$(CLI) run samples/lyrics.csv -o build/demo/lyrics.classified.csv
	$(PY) samples/show.py build/demo/lyrics.classified.csv
	$(CLI) run samples/multilingual.csv -o build/demo/multilingual.classified.csv
	$(PY) samples/show.py build/demo/multilingual.classified.csv

test: model node_modules/.installed
	$(PY) -m pytest

# The scale section streams 0.1, 1 and 5 GB CSVs through Split and Merge on a local moto S3
# server (~20 GB of disk at the peak, deleted afterwards); override with BENCH_SIZES_GB="0.1 1".
BENCH_SIZES_GB ?= 0.1 1 5
bench: model
	$(CLI) build-model --encoder minilm --out models/minilm
	$(PY) bench/model_speed.py
	$(PY) bench/languages.py --model $(MODEL) --model models/minilm
	$(PY) bench/labels.py --model $(MODEL)
	$(PY) bench/load.py
	$(PY) bench/workflow_scale.py --sizes-gb $(BENCH_SIZES_GB)

synth: model node_modules/.installed
	npx --no-install cdk synth --no-notices --quiet

clean:
	rm -rf build cdk.out bench/out
