# Set-up and the two main commands. `make run` trains; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test mpi bench clean

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

# Horovod with MPI for runner.py --MPI: OpenMPI and the build tools from apt (as root), then Horovod 0.28.1 patched
# for TF 2.21 (patches/horovod/), its wheel cached in ~/.cache/aggregathor.
mpi: $(STAMP)
	patches/horovod/install.sh $(PY) --apt
	$(PY) -m pip install --quiet -e '.[test,mpi]'

# The MPI tests need Horovod: built here where the tools are (else they skip, saying why).
test: $(STAMP)
	patches/horovod/install.sh $(PY) --if-possible
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/gars.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf $(VENV) *.egg-info
