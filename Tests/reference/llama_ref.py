#!/usr/bin/env python3
"""Independent numpy reference forward pass for GGUF "llama" and "qwen2" architecture models.

Used by Radial's tests to check the Swift engine's logits. Deliberately
self-contained: it has its own tiny GGUF parser and dequantisers and does NOT
import the `gguf` package (so it is independent of llama.cpp's Python code).
Only numpy is required.

Usage:
    python3 llama_ref.py MODEL.gguf --ids 1,2,3 [--skip P:L,P:L,...]
                         [--kv-policy fill|mask] [--no-hidden] [--out FILE]
    python3 llama_ref.py MODEL.gguf --info
    python3 llama_ref.py MODEL.gguf --dump-tensor NAME --out FILE.f32

Output JSON (to --out or stdout):
    {"logits": [[vocab floats] per position],
     "hidden_final": [[dim floats] per position]}   # unless --no-hidden
  hidden_final is the final hidden state AFTER output_norm (the vector that is
  multiplied by output.weight), per position.

Semantics (llama.cpp `llama` arch; `qwen2` adds biases to q, k, v and rotates
the halves (x[i], x[i + rope_dim/2]) of each head instead of adjacent pairs):
  x = token_embd[id]
  per layer l:
    h = rmsnorm(x) * attn_norm
    q, k, v = Wq h, Wk h, Wv h
    RoPE on q and k per head, ADJACENT pairs (x[2i], x[2i+1]) rotated by
      pos * base^(-2i/rope_dim) (divided by rope_freqs[i] if a
      `rope_freqs.weight` tensor exists); dims >= rope_dim are not rotated.
    causal GQA attention, scale 1/sqrt(head_dim), query head h -> kv head
      h // (n_head / n_head_kv)
    x += Wo attn
    h2 = rmsnorm(x) * ffn_norm
    x += Wdown(silu(Wgate h2) * Wup h2)
  logits = Wout (rmsnorm(x) * output_norm); Wout = token_embd if output.weight absent.

Forced layer skipping (--skip P:L): the token at position index P (0-based
index into --ids) skips layer L: x passes through unchanged.
  --kv-policy fill (default): the skipped layer still produces K/V for P from
      the hidden state entering the layer (attn_norm -> Wk/Wv -> RoPE on K);
      later positions attend to it normally.
  --kv-policy mask: at layer L no later position attends to P (excluded from
      the softmax).
The forward pass is computed literally token by token with an explicit
per-layer list of K/V entries (no cache tricks). Compute is float64.
"""

import argparse
import json
import math
import struct
import sys

import numpy as np

# --------------------------------------------------------------------------
# GGUF parsing
# --------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"

# metadata value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, \
    T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR_FMT = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h",
    T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?",
    T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}

# tensor types: name, block size (elements), bytes per block
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 3, 8, 30
GGML_Q5_0, GGML_Q5_1, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K = 6, 7, 12, 13, 14
TENSOR_TYPES = {
    GGML_Q5_0: ("Q5_0", 32, 22),
    GGML_Q5_1: ("Q5_1", 32, 24),
    GGML_Q4_K: ("Q4_K", 256, 144),
    GGML_Q5_K: ("Q5_K", 256, 176),
    GGML_Q6_K: ("Q6_K", 256, 210),
    GGML_F32: ("F32", 1, 4),
    GGML_F16: ("F16", 1, 2),
    GGML_Q4_0: ("Q4_0", 32, 18),
    GGML_Q4_1: ("Q4_1", 32, 20),
    GGML_Q8_0: ("Q8_0", 32, 34),
    GGML_BF16: ("BF16", 1, 2),
}


class GGUFError(Exception):
    pass


class Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise GGUFError("unexpected end of file at offset %d" % self.pos)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def u32(self):
        return self.scalar("<I")

    def u64(self):
        return self.scalar("<Q")

    def string(self):
        n = self.u64()
        return bytes(self.take(n)).decode("utf-8", errors="replace")

    def value(self, vtype):
        if vtype in _SCALAR_FMT:
            return self.scalar(_SCALAR_FMT[vtype])
        if vtype == T_STRING:
            return self.string()
        if vtype == T_ARRAY:
            etype = self.u32()
            count = self.u64()
            if etype in _SCALAR_FMT and etype != T_BOOL:
                fmt = _SCALAR_FMT[etype]
                size = struct.calcsize(fmt)
                arr = np.frombuffer(self.take(size * count), dtype=np.dtype(fmt))
                return arr.tolist()
            return [self.value(etype) for _ in range(count)]
        raise GGUFError("unknown metadata value type %d" % vtype)


class GGUFFile:
    """Minimal GGUF v2/v3 reader."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        r = Reader(memoryview(self.data))
        if bytes(r.take(4)) != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (bad magic)")
        self.version = r.u32()
        if self.version not in (2, 3):
            raise GGUFError("unsupported GGUF version %d" % self.version)
        n_tensors = r.u64()
        n_kv = r.u64()
        self.metadata = {}
        for _ in range(n_kv):
            key = r.string()
            vtype = r.u32()
            self.metadata[key] = r.value(vtype)
        self.tensors = {}
        order = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.u32()
            dims = [r.u64() for _ in range(n_dims)]
            ttype = r.u32()
            offset = r.u64()
            self.tensors[name] = {"dims": dims, "type": ttype, "offset": offset}
            order.append(name)
        self.tensor_order = order
        self.alignment = int(self.metadata.get("general.alignment", 32))
        if self.alignment <= 0:
            raise GGUFError("bad alignment")
        a = self.alignment
        self.data_offset = (r.pos + a - 1) // a * a

    def tensor_nbytes(self, name):
        info = self.tensors[name]
        if info["type"] not in TENSOR_TYPES:
            raise GGUFError("tensor %s: unsupported type %d" % (name, info["type"]))
        _, bs, bb = TENSOR_TYPES[info["type"]]
        n = int(np.prod(info["dims"], dtype=np.int64)) if info["dims"] else 1
        if info["dims"] and info["dims"][0] % bs != 0:
            raise GGUFError("tensor %s: ne0 %d not a multiple of block size %d"
                            % (name, info["dims"][0], bs))
        return n // bs * bb

    def raw(self, name):
        info = self.tensors[name]
        start = self.data_offset + info["offset"]
        nb = self.tensor_nbytes(name)
        if start + nb > len(self.data):
            raise GGUFError("tensor %s extends past end of file" % name)
        return np.frombuffer(self.data, dtype=np.uint8, count=nb, offset=start)

    def tensor(self, name):
        """Dequantised float32 array with numpy shape = reversed(dims)."""
        info = self.tensors[name]
        flat = dequantize(self.raw(name), info["type"])
        shape = tuple(reversed(info["dims"])) if info["dims"] else ()
        return flat.reshape(shape)

    def has(self, name):
        return name in self.tensors


def dequantize(raw, ttype):
    """raw: uint8 array of exactly the tensor's bytes. Returns flat float32."""
    if ttype == GGML_F32:
        return raw.view("<f4").astype(np.float32)
    if ttype == GGML_F16:
        return raw.view("<f2").astype(np.float32)
    if ttype == GGML_BF16:
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    if ttype == GGML_Q8_0:
        blk = raw.reshape(-1, 34)
        d = blk[:, 0:2].copy().view("<f2").astype(np.float32)        # (nb,1)
        q = blk[:, 2:34].view(np.int8).astype(np.float32)            # (nb,32)
        return (q * d).reshape(-1)
    if ttype == GGML_Q4_0:
        blk = raw.reshape(-1, 18)
        d = blk[:, 0:2].copy().view("<f2").astype(np.float32)
        qs = blk[:, 2:18]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        return ((q - 8.0) * d).reshape(-1)
    if ttype == GGML_Q4_1:
        blk = raw.reshape(-1, 20)
        d = blk[:, 0:2].copy().view("<f2").astype(np.float32)
        m = blk[:, 2:4].copy().view("<f2").astype(np.float32)
        qs = blk[:, 4:20]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        return (q * d + m).reshape(-1)
    if ttype in (GGML_Q5_0, GGML_Q5_1):
        # {f16 d, [f16 m,] u32 qh, u8 qs[16]}: q = nibble | (bit j of qh) << 4
        bb = 22 if ttype == GGML_Q5_0 else 24
        blk = raw.reshape(-1, bb)
        d = blk[:, 0:2].copy().view("<f2").astype(np.float32)
        o = 2 if ttype == GGML_Q5_0 else 4
        qh = blk[:, o:o + 4].copy().view("<u4").astype(np.uint32)            # (nb,1)
        qs = blk[:, o + 4:o + 20]
        bits = (qh >> np.arange(32, dtype=np.uint32)) & 1                      # (nb,32)
        q = (np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.uint32) | (bits << 4)).astype(np.float32)
        if ttype == GGML_Q5_0:
            return ((q - 16.0) * d).reshape(-1)
        m = blk[:, 2:4].copy().view("<f2").astype(np.float32)
        return (q * d + m).reshape(-1)
    if ttype in (GGML_Q4_K, GGML_Q5_K):
        # {f16 d, f16 dmin, u8 scales[12], [u8 qh[32],] u8 qs[128]}: 8 sub-blocks of 32 with 6-bit scale/min
        bb = 144 if ttype == GGML_Q4_K else 176
        blk = raw.reshape(-1, bb)
        d = blk[:, 0:2].copy().view("<f2").astype(np.float32)
        dmin = blk[:, 2:4].copy().view("<f2").astype(np.float32)
        sc = blk[:, 4:16].astype(np.uint32)
        scale = np.empty((blk.shape[0], 8), np.uint32)
        mins = np.empty((blk.shape[0], 8), np.uint32)
        scale[:, 0:4] = sc[:, 0:4] & 63
        mins[:, 0:4] = sc[:, 4:8] & 63
        scale[:, 4:8] = (sc[:, 8:12] & 0x0F) | ((sc[:, 0:4] >> 6) << 4)
        mins[:, 4:8] = (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)
        qs = blk[:, bb - 128:bb].reshape(-1, 4, 32)                             # 4 groups of 64 elements
        q = np.stack([qs & 0x0F, qs >> 4], axis=2).astype(np.uint32)          # (nb, 4, 2, 32)
        if ttype == GGML_Q5_K:
            qh = blk[:, 16:48].astype(np.uint32)                               # (nb, 32)
            for g in range(4):
                q[:, g, 0, :] |= ((qh >> (2 * g)) & 1) << 4
                q[:, g, 1, :] |= ((qh >> (2 * g + 1)) & 1) << 4
        q = q.reshape(-1, 8, 32).astype(np.float32)
        ds = (d * scale.astype(np.float32))[:, :, None]
        ms = (dmin * mins.astype(np.float32))[:, :, None]
        return (ds * q - ms).reshape(-1)
    if ttype == GGML_Q6_K:
        # {u8 ql[128], u8 qh[64], i8 scales[16], f16 d}: two halves of 128; element l + 32k of a half
        blk = raw.reshape(-1, 210)
        d = blk[:, 208:210].copy().view("<f2").astype(np.float32)              # (nb,1)
        out = np.empty((blk.shape[0], 256), np.float32)
        for half in range(2):
            ql = blk[:, 64 * half:64 * half + 64].astype(np.int32)
            qh = blk[:, 128 + 32 * half:128 + 32 * half + 32].astype(np.int32)
            scs = blk[:, 192 + 8 * half:192 + 8 * half + 8].view(np.int8).astype(np.float32)
            l = np.arange(32)
            qv = [(ql[:, 0:32] & 0x0F) | (((qh >> 0) & 3) << 4),
                  (ql[:, 32:64] & 0x0F) | (((qh >> 2) & 3) << 4),
                  (ql[:, 0:32] >> 4) | (((qh >> 4) & 3) << 4),
                  (ql[:, 32:64] >> 4) | (((qh >> 6) & 3) << 4)]
            for k in range(4):
                s = scs[:, (l // 16) + 2 * k]                                   # (nb, 32)
                out[:, 128 * half + 32 * k:128 * half + 32 * k + 32] = d * s * (qv[k] - 32).astype(np.float32)
        return out.reshape(-1)
    raise GGUFError("unsupported tensor type %d" % ttype)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

class Config:
    def __init__(self, g):
        md = g.metadata
        arch = md.get("general.architecture", "llama")
        if arch not in ("llama", "qwen2"):
            print("warning: general.architecture is %r, treating as llama" % arch,
                  file=sys.stderr)
            arch = "llama"
        self.arch = arch
        # qwen2: Q/K/V biases and NEOX RoPE (the two halves of each head rotate together)
        self.qkv_bias = arch == "qwen2"
        self.neox = arch == "qwen2"
        p = arch + "."

        def req(k):
            if p + k not in md:
                raise GGUFError("missing metadata key " + p + k)
            return md[p + k]

        self.dim = int(req("embedding_length"))
        self.n_layers = int(req("block_count"))
        self.ffn_dim = int(req("feed_forward_length"))
        self.n_head = int(req("attention.head_count"))
        self.n_head_kv = int(md.get(p + "attention.head_count_kv", self.n_head))
        self.eps = float(req("attention.layer_norm_rms_epsilon"))
        self.rope_base = float(md.get(p + "rope.freq_base", 10000.0))
        self.head_dim = int(md.get(p + "attention.key_length", self.dim // self.n_head))
        vlen = int(md.get(p + "attention.value_length", self.head_dim))
        if vlen != self.head_dim:
            raise GGUFError("key_length != value_length not supported")
        self.rope_dim = int(md.get(p + "rope.dimension_count", self.head_dim))
        emb = g.tensors["token_embd.weight"]["dims"]
        self.vocab = int(emb[1])
        self.tied = not g.has("output.weight")
        self.has_rope_freqs = g.has("rope_freqs.weight")
        if self.n_head % self.n_head_kv != 0:
            raise GGUFError("head_count not a multiple of head_count_kv")
        if self.rope_dim % 2 != 0 or self.rope_dim > self.head_dim:
            raise GGUFError("bad rope dimension_count")
        for k in ("rope.scaling.type", "rope.scale_linear", "rope.scaling.factor"):
            if p + k in md:
                print("warning: %s%s present but rope scaling is NOT implemented"
                      % (p, k), file=sys.stderr)

    def as_dict(self):
        return {
            "dim": self.dim, "n_layers": self.n_layers, "ffn_dim": self.ffn_dim,
            "n_head": self.n_head, "n_head_kv": self.n_head_kv,
            "head_dim": self.head_dim, "rope_dim": self.rope_dim,
            "rope_base": self.rope_base, "eps": self.eps, "vocab": self.vocab,
            "tied_output": self.tied, "rope_freqs": self.has_rope_freqs,
        }


class Model:
    def __init__(self, path):
        self.g = GGUFFile(path)
        self.cfg = Config(self.g)
        c = self.cfg

        def W(name, shape):
            t = self.g.tensor(name).astype(np.float64)
            if t.shape != shape:
                raise GGUFError("tensor %s: shape %s, expected %s" % (name, t.shape, shape))
            return t

        self.tok_embd = W("token_embd.weight", (c.vocab, c.dim))
        self.output_norm = W("output_norm.weight", (c.dim,))
        self.output = self.tok_embd if c.tied else W("output.weight", (c.vocab, c.dim))
        qd, kvd = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
        self.layers = []
        for i in range(c.n_layers):
            b = "blk.%d." % i
            self.layers.append({
                "attn_norm": W(b + "attn_norm.weight", (c.dim,)),
                "wq": W(b + "attn_q.weight", (qd, c.dim)),
                "wk": W(b + "attn_k.weight", (kvd, c.dim)),
                "wv": W(b + "attn_v.weight", (kvd, c.dim)),
                "wo": W(b + "attn_output.weight", (c.dim, qd)),
                "bq": W(b + "attn_q.bias", (qd,)) if c.qkv_bias else np.zeros(qd),
                "bk": W(b + "attn_k.bias", (kvd,)) if c.qkv_bias else np.zeros(kvd),
                "bv": W(b + "attn_v.bias", (kvd,)) if c.qkv_bias else np.zeros(kvd),
                "ffn_norm": W(b + "ffn_norm.weight", (c.dim,)),
                "w_gate": W(b + "ffn_gate.weight", (c.ffn_dim, c.dim)),
                "w_up": W(b + "ffn_up.weight", (c.ffn_dim, c.dim)),
                "w_down": W(b + "ffn_down.weight", (c.dim, c.ffn_dim)),
            })
        # inverse frequencies for adjacent-pair RoPE
        i = np.arange(c.rope_dim // 2, dtype=np.float64)
        self.inv_freq = c.rope_base ** (-2.0 * i / c.rope_dim)
        if c.has_rope_freqs:
            ff = self.g.tensor("rope_freqs.weight").astype(np.float64).reshape(-1)
            self.inv_freq = self.inv_freq / ff[: c.rope_dim // 2]

    # ---- building blocks -------------------------------------------------
    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x) + self.cfg.eps) * w

    def rope(self, v, pos, n_heads):
        """v: flat (n_heads*head_dim,). Rotate adjacent pairs in each head (llama),
        or element i with element i + rope_dim/2 (NEOX, qwen2)."""
        c = self.cfg
        v = v.reshape(n_heads, c.head_dim).copy()
        ang = pos * self.inv_freq
        cos, sin = np.cos(ang), np.sin(ang)
        if c.neox:
            h = c.rope_dim // 2
            x0 = v[:, 0:h].copy()
            x1 = v[:, h:c.rope_dim].copy()
            v[:, 0:h] = x0 * cos - x1 * sin
            v[:, h:c.rope_dim] = x0 * sin + x1 * cos
            return v.reshape(-1)
        x0 = v[:, 0:c.rope_dim:2].copy()
        x1 = v[:, 1:c.rope_dim:2].copy()
        v[:, 0:c.rope_dim:2] = x0 * cos - x1 * sin
        v[:, 1:c.rope_dim:2] = x0 * sin + x1 * cos
        return v.reshape(-1)

    def kv_entry(self, L, h_in, pos):
        lw = self.layers[L]
        h = self.rmsnorm(h_in, lw["attn_norm"])
        k = self.rope(lw["wk"] @ h + lw["bk"], pos, self.cfg.n_head_kv)
        v = lw["wv"] @ h + lw["bv"]
        return h, k, v

    # ---- forward ---------------------------------------------------------
    def forward(self, ids, skip=(), kv_policy="fill"):
        """Token-by-token forward. skip: set of (pos, layer). Returns
        (logits [T, vocab], hidden_final [T, dim]) as float64 arrays."""
        c = self.cfg
        skip = set(skip)
        if kv_policy not in ("fill", "mask"):
            raise ValueError("kv_policy must be fill or mask")
        for (p, l) in skip:
            if not (0 <= p < len(ids)) or not (0 <= l < c.n_layers):
                raise ValueError("skip (%d,%d) out of range" % (p, l))
        # per layer: list of (pos, k [n_head_kv*head_dim], v [...]) entries
        kv = [[] for _ in range(c.n_layers)]
        group = c.n_head // c.n_head_kv
        scale = 1.0 / math.sqrt(c.head_dim)
        logits_all, hidden_all = [], []
        for t, tok in enumerate(ids):
            if not (0 <= tok < c.vocab):
                raise ValueError("token id %d out of range" % tok)
            x = self.tok_embd[tok].copy()
            for L, lw in enumerate(self.layers):
                if (t, L) in skip:
                    if kv_policy == "fill":
                        _, k, v = self.kv_entry(L, x, t)
                        kv[L].append((t, k, v))
                    # mask: nothing recorded -> invisible to later tokens
                    continue  # x passes through unchanged
                h, k, v = self.kv_entry(L, x, t)
                kv[L].append((t, k, v))
                q = self.rope(lw["wq"] @ h + lw["bq"], t, c.n_head).reshape(c.n_head, c.head_dim)
                K = np.stack([e[1] for e in kv[L]]).reshape(-1, c.n_head_kv, c.head_dim)
                V = np.stack([e[2] for e in kv[L]]).reshape(-1, c.n_head_kv, c.head_dim)
                out = np.empty((c.n_head, c.head_dim))
                for hd in range(c.n_head):
                    g = hd // group
                    s = (K[:, g, :] @ q[hd]) * scale          # (n_keys,)
                    s = s - s.max()
                    p = np.exp(s)
                    p /= p.sum()
                    out[hd] = p @ V[:, g, :]
                x = x + lw["wo"] @ out.reshape(-1)
                h2 = self.rmsnorm(x, lw["ffn_norm"])
                gate = lw["w_gate"] @ h2
                up = lw["w_up"] @ h2
                act = gate / (1.0 + np.exp(-gate)) * up
                x = x + lw["w_down"] @ act
            hf = self.rmsnorm(x, self.output_norm)
            hidden_all.append(hf)
            logits_all.append(self.output @ hf)
        return np.array(logits_all), np.array(hidden_all)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def parse_ids(s):
    return [int(v) for v in s.replace(" ", "").split(",") if v != ""]


def parse_skip(s):
    out = []
    if not s:
        return out
    for item in s.replace(" ", "").split(","):
        if not item:
            continue
        p, l = item.split(":")
        out.append((int(p), int(l)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="numpy reference llama forward pass")
    ap.add_argument("model")
    ap.add_argument("--ids", help="comma separated token ids")
    ap.add_argument("--skip", default="", help="P:L,P:L,... position P skips layer L")
    ap.add_argument("--kv-policy", default="fill", choices=["fill", "mask"])
    ap.add_argument("--out", help="output file (default stdout)")
    ap.add_argument("--no-hidden", action="store_true", help="omit hidden_final")
    ap.add_argument("--info", action="store_true", help="print config JSON and exit")
    ap.add_argument("--dump-tensor", metavar="NAME",
                    help="write dequantised tensor NAME as raw little-endian f32 "
                         "(row-major, numpy shape = reversed GGUF dims) to --out")
    a = ap.parse_args(argv)

    if a.dump_tensor:
        g = GGUFFile(a.model)
        t = g.tensor(a.dump_tensor).astype("<f4")
        if not a.out:
            ap.error("--dump-tensor needs --out")
        t.tofile(a.out)
        return 0

    if a.info:
        g = GGUFFile(a.model)
        cfg = Config(g).as_dict()
        cfg["gguf_version"] = g.version
        cfg["alignment"] = g.alignment
        cfg["tensors"] = {n: {"dims": g.tensors[n]["dims"],
                              "type": TENSOR_TYPES.get(g.tensors[n]["type"],
                                                       (str(g.tensors[n]["type"]),))[0]}
                          for n in g.tensor_order}
        s = json.dumps(cfg, indent=1)
        if a.out:
            with open(a.out, "w") as f:
                f.write(s)
        else:
            print(s)
        return 0

    if not a.ids:
        ap.error("--ids is required")
    m = Model(a.model)
    logits, hidden = m.forward(parse_ids(a.ids), parse_skip(a.skip), a.kv_policy)
    res = {"logits": logits.astype(np.float32).tolist()}
    if not a.no_hidden:
        res["hidden_final"] = hidden.astype(np.float32).tolist()
    s = json.dumps(res)
    if a.out:
        with open(a.out, "w") as f:
            f.write(s)
    else:
        sys.stdout.write(s + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
