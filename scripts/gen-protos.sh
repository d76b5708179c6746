#!/usr/bin/env bash
# Regenerates the committed protobuf-c code in Sources/CRadialProto from Protos/.
#   scripts/gen-protos.sh          rewrite the generated files
#   scripts/gen-protos.sh --check  fail (exit 1) if the committed files differ from what protoc-c generates now
# Needs protoc-c (Debian: protobuf-c-compiler). Builds never run this: the output is committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/Sources/CRadialProto"
protos=(radial.proto grpc/health/v1/health.proto)

command -v protoc-c >/dev/null || { echo "gen-protos: protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 2; }

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
(cd "$root/Protos" && protoc-c --proto_path=. --c_out="$tmp" "${protos[@]}")

# Lay out as a SwiftPM C target: .c beside the umbrella, headers under include/ (keeping their relative paths,
# which the generated .c files #include).
out="$tmp/target"; mkdir -p "$out/include"
(cd "$tmp" && find . -name '*.pb-c.c' -o -name '*.pb-c.h') | sort | while read -r f; do
  f="${f#./}"
  case "$f" in
    *.h) mkdir -p "$out/include/$(dirname "$f")"; cp "$tmp/$f" "$out/include/$f" ;;
    *.c) mkdir -p "$out/$(dirname "$f")"; cp "$tmp/$f" "$out/$f" ;;
  esac
done
# An explicit module map: SwiftPM refuses an umbrella header with subdirectories beside it.
cat > "$out/include/module.modulemap" <<'H'
// Written by scripts/gen-protos.sh; do not edit.
module CRadialProto {
    header "radial.pb-c.h"
    header "grpc/health/v1/health.pb-c.h"
    export *
}
H

if [[ "${1:-}" == "--check" ]]; then
  if diff -r "$out" "$target" >/dev/null; then echo "gen-protos: generated code is current"; exit 0; fi
  echo "gen-protos: Sources/CRadialProto is out of date with Protos/; run scripts/gen-protos.sh" >&2
  diff -r "$out" "$target" | head -40 >&2
  exit 1
fi
rm -rf "$target"; mkdir -p "$target"; cp -r "$out/." "$target/"
echo "gen-protos: wrote $(find "$target" -type f | wc -l) files to Sources/CRadialProto"
