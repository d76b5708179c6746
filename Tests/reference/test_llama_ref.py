#!/usr/bin/env python3
"""Tests for llama_ref.py (needs numpy and the PyPI `gguf` package, which is
used here ONLY to write test models and as a second, independent GGUF reader;
llama_ref.py itself never imports it).

    python3 Tests/reference/test_llama_ref.py [--real-model PATH.gguf]

Checks:
  * llama_ref's dequantisers == gguf.quants.dequantize bit-for-bit
    (F32, F16, BF16, Q8_0, Q4_0, Q4_1), incl. GGUF v2 header and alignment 64.
  * token-by-token llama_ref == an independent batched HF-style forward pass
    (HF-layout Q/K weights + NeoX rotate_half RoPE; the GGUF file holds the
    llama.cpp-converter-permuted rows), with and without forced skips, for both
    KV policies, tied and untied heads, F32 and quantised weights.
  * logits finite; position 0 independent of later tokens; prefix consistency;
    skip+fill at LAST position changes only that position; mask vs fill
    identical up to P and different after; mask==fill when P is last.
  * CLI JSON round trip, --info.
  * optional: real model greedy sanity ("The capital of France is" -> Paris).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402

FAILS = []


def check(cond, msg):
    print(("PASS " if cond else "FAIL ") + msg)
    if not cond:
        FAILS.append(msg)


# ---------------------------------------------------------------------------
# model construction
# ---------------------------------------------------------------------------

def hf_to_gguf_permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_to_hf_unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def make_model(path, seed=0, dim=64, n_head=4, n_head_kv=2, n_layers=2, ffn=128,
               vocab=97, eps=1e-5, base=10000.0, tied=False, wtype=T.F32,
               alignment=None, version2=False):
    rng = np.random.default_rng(seed)
    hd = dim // n_head
    r = lambda *s, sc=0.3: (rng.standard_normal(s) * sc).astype(np.float32)
    w = gguf.GGUFWriter(path, "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_block_count(n_layers)
    w.add_context_length(256)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_freq_base(base)
    w.add_rope_dimension_count(hd)
    w.add_array("test.some_array", [1, 2, 3])
    w.add_string("test.some_string", "hello")
    w.add_bool("test.some_bool", True)
    w.add_float64("test.some_f64", 1.5)

    def add(name, arr, quant=True):
        if quant and wtype != T.F32:
            if wtype == T.F16:
                w.add_tensor(name, arr.astype(np.float16))
            else:
                w.add_tensor(name, quants.quantize(arr, wtype), raw_dtype=wtype)
        else:
            w.add_tensor(name, arr)

    add("token_embd.weight", r(vocab, dim, sc=1.0))
    add("output_norm.weight", 1.0 + r(dim, sc=0.1), quant=False)
    if not tied:
        add("output.weight", r(vocab, dim, sc=0.2))
    for i in range(n_layers):
        b = "blk.%d." % i
        add(b + "attn_norm.weight", 1.0 + r(dim, sc=0.1), quant=False)
        # HF-layout weights, permuted like the llama.cpp converter does
        add(b + "attn_q.weight", hf_to_gguf_permute(r(n_head * hd, dim, sc=0.25), n_head))
        add(b + "attn_k.weight", hf_to_gguf_permute(r(n_head_kv * hd, dim, sc=0.25), n_head_kv))
        add(b + "attn_v.weight", r(n_head_kv * hd, dim, sc=0.2))
        add(b + "attn_output.weight", r(dim, n_head * hd, sc=0.2))
        add(b + "ffn_norm.weight", 1.0 + r(dim, sc=0.1), quant=False)
        add(b + "ffn_gate.weight", r(ffn, dim, sc=0.2))
        add(b + "ffn_up.weight", r(ffn, dim, sc=0.2))
        add(b + "ffn_down.weight", r(dim, ffn, sc=0.2))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version2:
        with open(path, "r+b") as f:
            f.seek(4)
            f.write((2).to_bytes(4, "little"))


# ---------------------------------------------------------------------------
# independent batched HF-style reference (reads the file with gguf.GGUFReader)
# ---------------------------------------------------------------------------

def load_with_gguf(path):
    rd = gguf.GGUFReader(path)
    W = {}
    for t in rd.tensors:
        a = quants.dequantize(np.asarray(t.data), t.tensor_type) \
            if t.tensor_type not in (T.F32, T.F16) else np.asarray(t.data).astype(np.float64)
        W[t.name] = np.asarray(a, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
    f = lambda k: rd.fields[k].contents()
    cfg = dict(dim=f("llama.embedding_length"), n_layers=f("llama.block_count"),
               n_head=f("llama.attention.head_count"), n_head_kv=f("llama.attention.head_count_kv"),
               eps=f("llama.attention.layer_norm_rms_epsilon"), base=f("llama.rope.freq_base"))
    return W, cfg


def batched_hf_forward(W, cfg, ids, skip=(), policy="fill"):
    dim, nh, nkv = cfg["dim"], cfg["n_head"], cfg["n_head_kv"]
    hd = dim // nh
    Tn = len(ids)
    skip = set(skip)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg["eps"]) * w

    inv = cfg["base"] ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(Tn)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]

    def rot_half(v):
        return np.concatenate([-v[..., hd // 2:], v[..., :hd // 2]], -1)

    x = W["token_embd.weight"][ids]
    for L in range(cfg["n_layers"]):
        b = "blk.%d." % L
        h = rms(x, W[b + "attn_norm.weight"])
        q = (h @ gguf_to_hf_unpermute(W[b + "attn_q.weight"], nh).T).reshape(Tn, nh, hd)
        k = (h @ gguf_to_hf_unpermute(W[b + "attn_k.weight"], nkv).T).reshape(Tn, nkv, hd)
        v = (h @ W[b + "attn_v.weight"].T).reshape(Tn, nkv, hd)
        q = q * cos + rot_half(q) * sin
        k = k * cos + rot_half(k) * sin
        k = np.repeat(k, nh // nkv, axis=1)
        v = np.repeat(v, nh // nkv, axis=1)
        allowed = np.tril(np.ones((Tn, Tn), bool))
        if policy == "mask":
            for (p, l) in skip:
                if l == L:
                    allowed[:, p] = False
        s = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(hd)
        s = np.where(allowed[None], s, -np.inf)
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr = pr / pr.sum(-1, keepdims=True)
        att = np.einsum("hij,jhd->ihd", np.nan_to_num(pr), v).reshape(Tn, nh * hd)
        keep = np.array([0.0 if (i, L) in skip else 1.0 for i in range(Tn)])[:, None]
        x = x + keep * (att @ W[b + "attn_output.weight"].T)
        h2 = rms(x, W[b + "ffn_norm.weight"])
        g = h2 @ W[b + "ffn_gate.weight"].T
        u = h2 @ W[b + "ffn_up.weight"].T
        x = x + keep * ((g / (1 + np.exp(-g)) * u) @ W[b + "ffn_down.weight"].T)
    hf = rms(x, W["output_norm.weight"])
    out = W.get("output.weight", W["token_embd.weight"])
    return hf @ out.T


# ---------------------------------------------------------------------------

def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_dequant_vs_gguf(tmp):
    path = os.path.join(tmp, "deq.gguf")
    rng = np.random.default_rng(5)
    w = gguf.GGUFWriter(path, "test")
    w.add_custom_alignment(64)
    data = {}
    for t in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1):
        x = rng.standard_normal((3, 128)).astype(np.float32)
        q = quants.quantize(x, t)
        data[t] = q
        if t in (T.F32, T.F16):
            w.add_tensor("x_" + t.name, q)
        else:
            w.add_tensor("x_" + t.name, q, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for v2 in (False, True):
        if v2:
            with open(path, "r+b") as f:
                f.seek(4)
                f.write((2).to_bytes(4, "little"))
        g = llama_ref.GGUFFile(path)
        check(g.version == (2 if v2 else 3) and g.alignment == 64 and g.data_offset % 64 == 0,
              "header v%d alignment 64 parsed" % g.version)
        for t, q in data.items():
            exp = q.astype(np.float32) if t in (T.F32, T.F16) else quants.dequantize(q, t)
            got = g.tensor("x_" + t.name)
            check(got.shape == (3, 128) and np.array_equal(got, exp.reshape(3, 128)),
                  "v%d dequant %s bit-exact vs gguf-py" % (g.version, t.name))


def test_model(tmp, label, **kw):
    path = os.path.join(tmp, label + ".gguf")
    make_model(path, **kw)
    m = llama_ref.Model(path)
    W, cfg = load_with_gguf(path)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, m.cfg.vocab, 12).tolist()
    tol = 1e-9
    lg, hid = m.forward(ids)
    check(np.all(np.isfinite(lg)) and lg.shape == (12, m.cfg.vocab) and hid.shape == (12, m.cfg.dim),
          "[%s] logits finite, shapes ok" % label)
    ref = batched_hf_forward(W, cfg, ids)
    check(maxdiff(lg, ref) < tol, "[%s] token-by-token == batched HF/NeoX ref (maxdiff %.2e)"
          % (label, maxdiff(lg, ref)))
    # position 0 independent of later tokens; prefix consistency
    ids2 = [ids[0]] + rng.integers(0, m.cfg.vocab, 11).tolist()
    lg2, _ = m.forward(ids2)
    check(np.array_equal(lg[0], lg2[0]) and maxdiff(lg[1], lg2[1]) > 1e-3,
          "[%s] pos 0 independent of later tokens" % label)
    lg5, _ = m.forward(ids[:5])
    check(maxdiff(lg5, lg[:5]) < 1e-12, "[%s] prefix consistency" % label)
    # skip fill at LAST position
    last = len(ids) - 1
    lgs, _ = m.forward(ids, skip=[(last, 1)], kv_policy="fill")
    check(np.array_equal(lgs[:last], lg[:last]) and maxdiff(lgs[last], lg[last]) > 1e-3,
          "[%s] fill-skip at last position changes only last" % label)
    lgm, _ = m.forward(ids, skip=[(last, 1)], kv_policy="mask")
    check(np.array_equal(lgm, lgs), "[%s] mask == fill when skipped position is last" % label)
    # mid-sequence skip, fill vs mask
    sk = [(4, 0), (4, 1), (7, 1), (9, 0)]
    lf, _ = m.forward(ids, skip=sk, kv_policy="fill")
    lm, _ = m.forward(ids, skip=sk, kv_policy="mask")
    check(np.array_equal(lf[:5], lm[:5]) and np.array_equal(lf[:4], lg[:4]),
          "[%s] fill/mask identical up to skipped pos, earlier untouched" % label)
    check(all(maxdiff(lf[i], lm[i]) > 1e-4 for i in range(5, 12)),
          "[%s] mask vs fill differ at every later position" % label)
    for pol, got in (("fill", lf), ("mask", lm)):
        r2 = batched_hf_forward(W, cfg, ids, skip=sk, policy=pol)
        check(maxdiff(got, r2) < tol, "[%s] skip %s == batched ref (maxdiff %.2e)"
              % (label, pol, maxdiff(got, r2)))
    # skipping every layer at a position: hidden = rmsnorm(embedding)*output_norm
    allsk = [(3, l) for l in range(m.cfg.n_layers)]
    _, h_all = m.forward(ids, skip=allsk)
    e = m.tok_embd[ids[3]]
    exp = e / np.sqrt(np.mean(e * e) + m.cfg.eps) * m.output_norm
    check(maxdiff(h_all[3], exp) < 1e-12, "[%s] skipping all layers == embedding path" % label)
    return path, ids


def test_cli(path, ids, tmp):
    out = os.path.join(tmp, "o.json")
    script = os.path.join(HERE, "llama_ref.py")
    subprocess.check_call([sys.executable, script, path, "--ids", ",".join(map(str, ids)),
                           "--skip", "4:0,7:1", "--kv-policy", "mask", "--out", out])
    res = json.load(open(out))
    m = llama_ref.Model(path)
    lg, hid = m.forward(ids, [(4, 0), (7, 1)], "mask")
    check(maxdiff(res["logits"], lg) < 1e-5 and maxdiff(res["hidden_final"], hid) < 1e-5,
          "CLI JSON matches API")
    info = json.loads(subprocess.check_output([sys.executable, script, path, "--info"]))
    check(info["dim"] == 64 and info["n_head"] == 4 and info["n_head_kv"] == 2
          and info["vocab"] == 97 and info["n_layers"] == 2, "--info config")


def test_real_model(path):
    m = llama_ref.Model(path)
    toks = m.g.metadata["tokenizer.ggml.tokens"]
    idx = {t: i for i, t in enumerate(toks)}
    words = ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    ids = [idx[w] for w in words]
    lg, _ = m.forward(ids)
    top = toks[int(np.argmax(lg[-1]))]
    print("real model top next token:", repr(top), "ids", ids)
    check(top == "ĠParis", "real model: 'The capital of France is' -> 'ĠParis'")


def main():
    real = None
    if "--real-model" in sys.argv:
        real = sys.argv[sys.argv.index("--real-model") + 1]
    with tempfile.TemporaryDirectory() as tmp:
        test_dequant_vs_gguf(tmp)
        path, ids = test_model(tmp, "f32")
        test_model(tmp, "f32_tied_mha_v2_align64", seed=1, n_head_kv=4, tied=True,
                   alignment=64, version2=True, base=500000.0)
        test_model(tmp, "f32_mqa_3layer", seed=2, n_head_kv=1, n_layers=3)
        for wt in (T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1):
            test_model(tmp, wt.name, seed=3, wtype=wt)
        test_cli(path, ids, tmp)
    if real:
        test_real_model(real)
    print("\n%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
