# Set-up and the two main commands. `make run` trains; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: a short robust training on the embedded digits dataset (no network, no data files).
run: $(STAMP)
	$(PY) runner.py --experiment digits --aggregator krum --nb-workers 7 --nb-decl-byz-workers 2 \
	  --nb-real-byz-workers 2 --attack little --max-steps 300 --evaluation-delta 100 \
	  --evaluation-file runs/main/evaluation.tsv --summary-dir runs/main/tensorboard \
	  --study-period 10 --study-file runs/main/study.tsv

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/gars.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf $(VENV) *.egg-info
