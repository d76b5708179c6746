# Radial. Two commands do all the set-up on a fresh machine:
#   make demo   installs what is missing, builds, starts a local cluster (3 workers + coordinator on loopback,
#               the real model), streams a reply through it, shows its status, and stops it
#   make test   installs what is missing, builds, and runs every test (the numpy reference's own tests first)
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= What is the capital of France? Answer in one sentence.
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
	deploy/local-cluster.sh up --model $(MODEL)
	.build/release/radial generate --chat --greedy --max-tokens 96 "$(PROMPT)"; rc=$$?; \
	  .build/release/radial status; deploy/local-cluster.sh down; exit $$rc

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
