# Radial. Two commands do all the set-up on a fresh machine:
#   make demo   installs what is missing, builds, and streams a reply from the real model
#   make test   installs what is missing, builds, and runs every test
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= What is the capital of France? Answer in one sentence.
SWIFT_RELEASE = swift build -c release

.PHONY: demo test setup model build release bench clean

setup:
	scripts/setup.sh all

model:
	scripts/setup.sh model

build:
	swift build

release:
	$(SWIFT_RELEASE) --product radial

demo:
	scripts/setup.sh deps
	scripts/setup.sh model
	$(SWIFT_RELEASE) --product radial
	.build/release/radial run --model $(MODEL) --chat --greedy --max-tokens 96 "$(PROMPT)"

test:
	scripts/setup.sh all
	scripts/gen-protos.sh --check
	swift build --build-tests
	swift test

bench: release
	bench/engine_vs_llamacpp.sh

clean:
	rm -rf .build
