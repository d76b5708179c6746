# Radial. Two commands do all the set-up on a fresh machine:
#   make demo   installs what is missing, builds, trains a router once (cached in models/), starts a local cluster
#               (6 workers + coordinator on loopback, the real model, routing on), asks it a question over gRPC and
#               over the OpenAI-compatible HTTP API, shows each token's depth and the cluster's status, stops it
#   make test   installs what is missing, builds, and runs every test (the numpy reference's own tests first)
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= What is the capital of France? Answer in one sentence.
# The demo's router: distilled from the model over 2048 tokens of fortunes on first use (~3 min), then reused.
ROUTER ?= $(MODEL:.gguf=.router)
SKIP_RATE ?= 0.1
WORKERS ?= 6
SWIFT_RELEASE = swift build -c release

.PHONY: demo run-local test setup model build release bench clean

setup:
	scripts/setup.sh all

model:
	scripts/setup.sh model

build:
	swift build

release:
	$(SWIFT_RELEASE)

demo:
	scripts/setup.sh deps
	scripts/setup.sh model
	$(SWIFT_RELEASE)
	$(MAKE) --no-print-directory $(ROUTER)
	scripts/demo.sh $(MODEL) $(ROUTER) "$(PROMPT)" $(SKIP_RATE) $(WORKERS)

$(ROUTER):
	scripts/setup.sh corpus
	.build/release/radial train-router --model $(MODEL) --text data/fortunes-train.txt --max-tokens 2048 --out $@.tmp
	mv $@.tmp $@

# The same model in this one process (no cluster).
run-local: release
	.build/release/radial run --model $(MODEL) --chat --greedy --max-tokens 96 "$(PROMPT)"

test:
	scripts/setup.sh all
	scripts/gen-protos.sh --check
	python3 Tests/reference/test_llama_ref.py
	deploy/check-manifests.sh
	swift build --build-tests
	swift test

bench: release
	bench/engine_vs_llamacpp.sh

clean:
	rm -rf .build
