# Two entry points: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv on first use with the interpreter named by PYTHON.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
STAMP_FAST := $(VENV)/.installed-fast

.PHONY: demo test sweep bench lint docs protos clean compiled uncompiled

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

$(STAMP_FAST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[fast]'
	touch $@

demo: $(STAMP_RUN)
	$(BIN)/consensuskit demo
	$(BIN)/consensuskit cluster-demo
	$(BIN)/consensuskit up --nodes 3

test: $(STAMP_DEV)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

sweep: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP_RUN)
	$(BIN)/python benchmarks/sim_speed.py
	$(BIN)/python benchmarks/check_speed.py
	$(BIN)/python benchmarks/raft_vs_multipaxos.py
	$(BIN)/python benchmarks/wal_fsync.py
	$(BIN)/python benchmarks/snapshot_install.py
	$(BIN)/python benchmarks/gossip_epidemics.py

# The protocol tables of README.md, docs/architecture.md and the protocol READMEs, from the catalog.
docs: $(STAMP_RUN)
	$(BIN)/python -m consensuskit.catalog_docs --write

# The etcd API's generated protobuf/gRPC modules (committed), from our .proto subset of etcd's.
ETCDPB := src/consensuskit/services/etcdpb
protos: $(STAMP_DEV)
	cd src && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		$(patsubst src/%,%,$(wildcard $(ETCDPB)/*/*.proto))

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests benchmarks

# Opt-in: the simulator's hot path compiled with mypyc (the modules setup_mypyc.py lists),
# extensions left next to their sources in src/ (Python prefers them to the .py files).
# A compiled module does not see later edits of its source: rerun it, or undo it with
# `make uncompiled`.  Nothing else (pip install, make test) builds them here; make test
# builds a temporary copy and checks it runs the interpreted build's traces.
compiled: $(STAMP_FAST)
	$(BIN)/python setup_mypyc.py build_ext --inplace --build-temp build/mypyc-temp

uncompiled:
	find src -name '*.so' -delete
	rm -rf build/mypyc build/mypyc-temp build/lib.*

clean: uncompiled
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
