#!/usr/bin/env bash
# Seeded mutational fuzzing of every request decoder, the worker's Forward, Configure and RestoreSession handlers, and the GGUF
# reader (Tests/RadialClusterTests/FuzzTests.swift), at a count CI does not afford.
#   scripts/fuzz.sh [ITERATIONS]     default 100000 per target (the GGUF target runs a third of them)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
RADIAL_FUZZ_ITERATIONS="${1:-100000}" swift test --skip-build --filter FuzzTests
