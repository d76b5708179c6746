#!/usr/bin/env python3
"""Reference data for Radial's GGUF dequantisers, produced with llama.cpp's
own Python package `gguf` (gguf-py), as an implementation independent of the
Swift code.

Tested with: gguf==0.19.0 (PyPI), numpy 2.4.6.
Install:     python3 -m pip install gguf

Usage:
    python3 dequant_ref.py OUTDIR

Writes
    OUTDIR/quant.gguf          GGUF v3, arch "test", one tensor per type, each of
                               logical shape 4 rows x 256 columns (GGUF dims [256, 4]):
                               t_F32 t_F16 t_BF16 t_Q8_0 t_Q4_0 t_Q4_1 t_Q5_0 t_Q5_1 t_Q4_K t_Q5_K t_Q6_K
    OUTDIR/expected_<TYPE>.f32 raw little-endian float32, 1024 values, row-major:
                               gguf.quants.dequantize() of exactly the bytes written
    OUTDIR/manifest.json       names, types, type ids, shapes, byte sizes, files

F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 are produced with gguf.quants.quantize() from random
normal data. Q4_K, Q5_K and Q6_K (whose quantize() is not implemented in gguf-py)
are random block bytes with sane positive f16 super-block scales (d, dmin in
[0.01, 0.1]). Everything is deterministic (fixed seed). After writing, the file
is read back with gguf.GGUFReader and dequantised again to verify.
"""

import json
import os
import sys

import numpy as np

from importlib import metadata

import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 1234
ROWS, COLS = 4, 256
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]


def f16_bytes(vals):
    return np.asarray(vals, dtype="<f2").view(np.uint8).reshape(-1, 2)


def make_q4_k(rng, n_blocks):
    # block_q4_K: f16 d, f16 dmin, u8 scales[12], u8 qs[128]  (144 bytes)
    blk = rng.integers(0, 256, size=(n_blocks, 144), dtype=np.uint8)
    blk[:, 0:2] = f16_bytes(rng.uniform(0.01, 0.1, n_blocks))
    blk[:, 2:4] = f16_bytes(rng.uniform(0.01, 0.1, n_blocks))
    return blk


def make_q5_k(rng, n_blocks):
    # block_q5_K: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]  (176 bytes)
    blk = rng.integers(0, 256, size=(n_blocks, 176), dtype=np.uint8)
    blk[:, 0:2] = f16_bytes(rng.uniform(0.01, 0.1, n_blocks))
    blk[:, 2:4] = f16_bytes(rng.uniform(0.01, 0.1, n_blocks))
    return blk


def make_q6_k(rng, n_blocks):
    # block_q6_K: u8 ql[128], u8 qh[64], i8 scales[16], f16 d  (210 bytes)
    blk = rng.integers(0, 256, size=(n_blocks, 210), dtype=np.uint8)
    blk[:, 208:210] = f16_bytes(rng.uniform(0.01, 0.1, n_blocks))
    return blk


def build(rng):
    """Returns {type_name: (qtype, data_to_write)}; data is what GGUFWriter gets."""
    out = {}
    for name in TYPES:
        qt = T[name]
        if name in ("Q4_K", "Q5_K", "Q6_K"):
            block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
            n_blocks = ROWS * COLS // block_size
            blk = {"Q4_K": make_q4_k, "Q5_K": make_q5_k, "Q6_K": make_q6_k}[name](rng, n_blocks)
            data = blk.reshape(ROWS, COLS // block_size * type_size)
        else:
            x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
            data = quants.quantize(x, qt)
        out[name] = (qt, np.ascontiguousarray(data))
    return out


def dequant(data, qt):
    if qt == T.F32:
        return np.asarray(data, dtype=np.float32)
    if qt == T.F16:
        return np.asarray(data).view(np.float16).astype(np.float32)
    return quants.dequantize(data, qt).astype(np.float32)


def main():
    if len(sys.argv) != 2:
        print("usage: dequant_ref.py OUTDIR", file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    tensors = build(rng)

    path = os.path.join(outdir, "quant.gguf")
    w = gguf.GGUFWriter(path, "test")
    manifest = {"file": "quant.gguf", "gguf_package_version": metadata.version("gguf"),
                "seed": SEED, "tensors": []}
    expected = {}
    for name in TYPES:
        qt, data = tensors[name]
        tname = "t_" + name
        if qt in (T.F32, T.F16):
            w.add_tensor(tname, data)
        else:
            w.add_tensor(tname, data, raw_dtype=qt)
        e = dequant(data, qt).reshape(ROWS, COLS)
        if not np.all(np.isfinite(e)):
            raise SystemExit("non-finite expected values for " + name)
        expected[name] = e
        e.astype("<f4").tofile(os.path.join(outdir, "expected_%s.f32" % name))
        manifest["tensors"].append({
            "name": tname, "type": name, "type_id": int(qt),
            "gguf_dims": [COLS, ROWS], "shape": [ROWS, COLS],
            "n_bytes": int(data.nbytes), "expected": "expected_%s.f32" % name,
        })
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)

    # ---- verify by reading back ------------------------------------------
    r = gguf.GGUFReader(path)
    assert int(r.fields["GGUF.version"].parts[-1][0]) == 3
    by_name = {t.name: t for t in r.tensors}
    for name in TYPES:
        t = by_name["t_" + name]
        assert t.tensor_type == T[name], (name, t.tensor_type)
        assert [int(d) for d in t.shape] == [COLS, ROWS], (name, t.shape)
        got = dequant(np.asarray(t.data), t.tensor_type).reshape(ROWS, COLS)
        ref = np.fromfile(os.path.join(outdir, "expected_%s.f32" % name), dtype="<f4").reshape(ROWS, COLS)
        if not np.array_equal(got, ref):
            raise SystemExit("read-back mismatch for " + name)
        print("%-5s ok  bytes=%5d  mean=% .5f  std=%.5f" % (name, t.n_bytes, ref.mean(), ref.std()))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
