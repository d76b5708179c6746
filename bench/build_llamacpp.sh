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
  # The sdist through pip's own client (it prepares the package's metadata, fetching its build backend first).
  mkdir -p "$dir/sdist"
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$dir/sdist" \
    || { echo "build_llamacpp: pip download llama-cpp-python==0.3.36 failed" >&2; exit 1; }
  mv "$dir/sdist"/llama_cpp_python-0.3.36.tar.gz "$dir/sdist/llama.tar.gz"
  mkdir -p "$dir/unpack" && tar -xzf "$dir/sdist/llama.tar.gz" -C "$dir/unpack"
  mv "$dir/unpack/llama_cpp_python-0.3.36/vendor/llama.cpp" "$dir/src"
fi
echo "building llama.cpp (rpc-server, llama-bench, llama-server): ~5 minutes on 2 cores" >&2
cmake -S "$dir/src" -B "$dir/build" -DGGML_RPC=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$dir/build" -j2 --target ggml-rpc-server llama-bench llama-server >/dev/null
echo "$bin"
