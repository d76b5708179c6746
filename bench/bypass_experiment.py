#!/usr/bin/env python3
"""An experiment, not a feature: what if a skipped run of layers were replaced by an affine map of the hidden state,
fitted by ridge regression (state entering the run -> state leaving it) on training text, instead of being
removed? Prints held-out perplexity for the dense model, the run removed, and the run replaced by the map (on the
raw state or the RMS-normalised one, three ridge strengths). An independent fp32 numpy forward (weights
dequantised by Tests/reference/llama_ref.py; the tokenizer from llama-cpp-python), causal windows of 512 tokens.

  LLAMA_CPP_LIB_PATH=~/.cache/radial/llama.cpp/build/bin python3 bench/bypass_experiment.py
  env: RUNS=14-16,13-16  TRAIN=data/fortunes-train.txt  NTRAIN=4096  HELD=data/fortunes-heldout.txt
Needs ~9 GB of memory for Qwen2.5-Coder-1.5B; ~5 minutes per run here.
"""
import sys, os, time, math, json
import numpy as np
sys.path.insert(0, "Tests/reference")
import llama_ref

M = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
WIN = 512
g = llama_ref.GGUFFile(M)
c = llama_ref.Config(g)
t0 = time.time()
def W(n): return np.ascontiguousarray(g.tensor(n).astype(np.float32))
emb = W("token_embd.weight")
onorm = W("output_norm.weight")
out_w = emb if c.tied else W("output.weight")
L = []
for i in range(c.n_layers):
    b = "blk.%d." % i
    wqkv = np.concatenate([W(b + "attn_q.weight"), W(b + "attn_k.weight"), W(b + "attn_v.weight")]).T.copy()
    bqkv = np.concatenate([W(b + "attn_q.bias"), W(b + "attn_k.bias"), W(b + "attn_v.bias")])
    L.append(dict(an=W(b + "attn_norm.weight"), wqkv=wqkv, bqkv=bqkv, wo=W(b + "attn_output.weight").T.copy(),
                  fn=W(b + "ffn_norm.weight"), wgu=np.concatenate([W(b + "ffn_gate.weight"), W(b + "ffn_up.weight")]).T.copy(),
                  wd=W(b + "ffn_down.weight").T.copy()))
print("loaded in %.0f s" % (time.time() - t0), file=sys.stderr)
hd, nh, nkv, dim, f = c.head_dim, c.n_head, c.n_head_kv, c.dim, c.ffn_dim
inv = (c.rope_base ** (-2.0 * np.arange(c.rope_dim // 2) / c.rope_dim)).astype(np.float64)

def rms(x, w): return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + c.eps)) * w

def rope(v, n):  # v (T, n*hd), neox
    T = v.shape[0]
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]
    v = v.reshape(T, n, hd)
    h = c.rope_dim // 2
    x0, x1 = v[:, :, :h].copy(), v[:, :, h:2 * h].copy()
    v[:, :, :h] = x0 * cos - x1 * sin
    v[:, :, h:2 * h] = x0 * sin + x1 * cos
    return v

mask = np.triu(np.full((WIN, WIN), -np.inf, dtype=np.float32), 1)

def layer(i, x):
    w = L[i]; T = x.shape[0]
    qkv = rms(x, w["an"]) @ w["wqkv"] + w["bqkv"]
    q = rope(qkv[:, :nh * hd].copy(), nh); k = rope(qkv[:, nh * hd:(nh + nkv) * hd].copy(), nkv)
    v = qkv[:, (nh + nkv) * hd:].reshape(T, nkv, hd)
    grp = nh // nkv
    o = np.empty((T, nh, hd), dtype=np.float32)
    for h in range(nh):
        s = (q[:, h, :] @ k[:, h // grp, :].T) / math.sqrt(hd) + mask[:T, :T]
        s = np.exp(s - s.max(axis=1, keepdims=True)); s /= s.sum(axis=1, keepdims=True)
        o[:, h, :] = s @ v[:, h // grp, :]
    x = x + o.reshape(T, -1) @ w["wo"]
    gu = rms(x, w["fn"]) @ w["wgu"]
    gt, up = gu[:, :f], gu[:, f:]
    return x + (gt / (1 + np.exp(-gt)) * up) @ w["wd"]

def run(ids, plan, stop=None, grab=()):
    """plan: dict first_layer -> (last_layer, map or None). Returns logits or grabbed states."""
    x = emb[ids].copy(); got = {}
    i = 0
    while i < (stop if stop is not None else c.n_layers):
        if i in grab: got[i] = x.copy()
        if i in plan:
            last, mp = plan[i]
            if mp is not None: x = x + feats(x, mp["norm"]) @ mp["B"]
            i = last + 1; continue
        x = layer(i, x); i += 1
    if i in grab: got[i] = x.copy()
    if stop is not None: return got
    return rms(x, onorm) @ out_w.T

def feats(x, norm):
    z = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + c.eps) if norm else x
    return np.concatenate([z, np.ones((x.shape[0], 1), np.float32)], axis=1)

def nll(logits, ids):
    lg = logits[:-1].astype(np.float64); m = lg.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
    return float((lse - lg[np.arange(len(ids) - 1), ids[1:]]).sum()), len(ids) - 1

import llama_cpp
tok = llama_cpp.Llama(model_path=M, vocab_only=True, verbose=False)
def toks(path, skip, n):
    ids = tok.tokenize(open(path, encoding="utf-8").read().encode(), add_bos=False, special=False)
    return ids[skip:skip + n]

train = toks(os.environ.get("TRAIN", "data/fortunes-train.txt"), 0, int(os.environ.get("NTRAIN", 4096)))
held = toks(os.environ.get("HELD", "data/fortunes-heldout.txt"), 512, 1024)
runs = [tuple(map(int, r.split("-"))) for r in os.environ.get("RUNS", "14-16,13-16,12-16").split(",")]
results = {}
def ppl(plan):
    tot, n = 0.0, 0
    for s in range(0, len(held), WIN):
        a, b = nll(run(np.array(held[s:s + WIN]), plan), held[s:s + WIN]); tot += a; n += b
    return math.exp(tot / n)
d = ppl({}); print("dense %.3f" % d, flush=True)
for a, b in runs:
    X, Y = [], []
    for s in range(0, len(train), WIN):
        got = run(np.array(train[s:s + WIN]), {}, stop=b + 1, grab=(a, b + 1))
        X.append(got[a]); Y.append(got[b + 1])
    X, Y = np.concatenate(X), np.concatenate(Y)
    rm = ppl({a: (b, None)})
    line = "run %d-%d: removed %.3f (%+.1f%%)" % (a, b, rm, 100 * (rm / d - 1))
    for norm in (False, True):
        F = feats(X, norm).astype(np.float64); D = (Y - X).astype(np.float64)
        G = F.T @ F; R = F.T @ D
        for lam in (1e-2, 1e-1, 1.0):
            reg = lam * np.trace(G) / G.shape[0]
            B = np.linalg.solve(G + reg * np.eye(G.shape[0]), R).astype(np.float32)
            p = ppl({a: (b, dict(B=B, norm=norm))})
            line += "; map%s lam %g %.3f (%+.1f%%)" % ("-norm" if norm else "", lam, p, 100 * (p / d - 1))
            print(line, flush=True)
print("done", file=sys.stderr)
