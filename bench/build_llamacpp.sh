#!/usr/bin/env bash
# Builds llama.cpp's RPC server (ggml-rpc-server), llama-bench and llama-server from the llama-cpp-python 0.3.36 sdist (its
# vendor/llama.cpp, commit 0c1e57098bba) with -DGGML_RPC=ON, for the distributed comparison in
# bench/cluster_bench.sh. Output: $LLAMACPP_DIR (default ~/.cache/radial/llama.cpp)/build/bin. Skips work done.
set -euo pipefail
dir="${LLAMACPP_DIR:-$HOME/.cache/radial/llama.cpp}"
bin="$dir/build/bin"
if [ -x "$bin/ggml-rpc-server" ] && [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-server" ]; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
command -v cmake >/dev/null || python3 -m pip install --quiet cmake
if [ ! -d "$dir/src" ]; then
  # The sdist straight from PyPI's simple index (pip download would build its metadata, pulling build backends).
  mkdir -p "$dir/sdist"
  url="$(curl -fsS https://pypi.org/simple/llama-cpp-python/ | grep -o 'https://[^"#]*llama_cpp_python-0.3.36.tar.gz' | head -1)"
  [ -n "$url" ] || { echo "build_llamacpp: llama-cpp-python 0.3.36 sdist not found on PyPI" >&2; exit 1; }
  curl -fsSL "$url" -o "$dir/sdist/llama.tar.gz"
  mkdir -p "$dir/unpack" && tar -xzf "$dir/sdist/llama.tar.gz" -C "$dir/unpack"
  mv "$dir/unpack/llama_cpp_python-0.3.36/vendor/llama.cpp" "$dir/src"
fi
echo "building llama.cpp (rpc-server, llama-bench, llama-server): ~5 minutes on 2 cores" >&2
cmake -S "$dir/src" -B "$dir/build" -DGGML_RPC=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$dir/build" -j2 --target ggml-rpc-server llama-bench llama-server >/dev/null
echo "$bin"
