#!/usr/bin/env python3
"""llama.cpp speed baseline (via llama-cpp-python) for comparison with Radial.

Usage:
    python3 bench/llamacpp_bench.py --model PATH --threads 2 [--json]

Measures, on a single GGUF model:
  * prefill tokens/s: the first 180 tokens of bench/prompt_180.txt (tokenized with
    add_bos=False) evaluated in one batch (n_batch=512) on an empty context;
    one warm-up run, then best of --runs runs, resetting the KV cache each time.
  * decode tokens/s: batch-1 greedy decoding of 128 tokens following the same
    180-token prompt (context positions 180..307). Only the 128 single-token
    decode calls (plus argmax over the logits) are timed; the prompt prefill is
    not. One warm-up run, then --runs runs; reported as their mean (all tokens
    over all their time), as Radial's engine-bench reports its decode, and
    the best run beside it (decode_best_tokens_per_s).
  * peak RSS of the process (resource.getrusage ru_maxrss).

With --json the last line of stdout is a single JSON object.
"""
import argparse
import ctypes
import json
import os
import platform
import resource
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_PROMPT = os.path.join(REPO, "bench", "prompt_180.txt")


def peak_rss_mb():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS reports bytes.
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--prompt-file", default=DEFAULT_PROMPT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill-tokens", type=int, default=180)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (prefill: best; decode: mean and best)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = ap.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=2048,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=0,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    ctx = llm.ctx

    with open(args.prompt_file, "r", encoding="utf-8") as f:
        text = f.read()
    all_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    if len(all_ids) < args.prefill_tokens:
        sys.exit(f"prompt file has only {len(all_ids)} tokens, need {args.prefill_tokens}")
    prompt = all_ids[: args.prefill_tokens]

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))

    def prefill():
        llm.reset()  # n_tokens = 0; eval() then clears the KV cache from position 0
        t0 = time.perf_counter()
        llm.eval(prompt)
        return time.perf_counter() - t0

    def decode():
        prefill()
        tok = int(np.argmax(last_logits()))
        out = []
        t0 = time.perf_counter()
        for _ in range(args.decode_tokens):
            llm.eval([tok])
            out.append(tok)
            tok = int(np.argmax(last_logits()))
        dt = time.perf_counter() - t0
        return dt, out

    # prefill: warm-up + best of N
    prefill()
    prefill_times = [prefill() for _ in range(args.runs)]
    best_prefill = min(prefill_times)

    # decode: warm-up + N runs, mean (as engine-bench) and best
    decode()
    decode_times = []
    generated = None
    for _ in range(args.runs):
        dt, generated = decode()
        decode_times.append(dt)
    best_decode = min(decode_times)

    prefill_tps = args.prefill_tokens / best_prefill
    decode_tps = args.decode_tokens * len(decode_times) / sum(decode_times)
    decode_best_tps = args.decode_tokens / best_decode
    rss = peak_rss_mb()

    print(f"llama-cpp-python {llama_cpp.__version__} on {platform.machine()} ({platform.system()}), threads={args.threads}")
    print(f"model: {args.model}")
    print(f"prompt: {len(all_ids)} tokens in file, using first {args.prefill_tokens}")
    print(f"prefill: {args.prefill_tokens} tokens, runs (s) = {', '.join(f'{t:.4f}' for t in prefill_times)}")
    print(f"         best {best_prefill * 1000:.1f} ms -> {prefill_tps:.1f} tokens/s")
    print(f"decode : {args.decode_tokens} tokens, runs (s) = {', '.join(f'{t:.4f}' for t in decode_times)}")
    print(f"         mean {decode_tps:.1f} tokens/s, best {best_decode * 1000:.1f} ms -> {decode_best_tps:.1f} tokens/s")
    print(f"peak RSS: {rss:.1f} MB")
    sample = llm.detokenize(generated[:32]).decode("utf-8", errors="replace")
    print(f"greedy continuation (first 32 tokens): {sample!r}")

    if args.json:
        print(json.dumps({
            "decode_tokens_per_s": round(decode_tps, 2),
            "decode_best_tokens_per_s": round(decode_best_tps, 2),
            "prefill_tokens_per_s": round(prefill_tps, 2),
            "prefill_tokens": args.prefill_tokens,
            "decode_tokens": args.decode_tokens,
            "threads": args.threads,
            "peak_rss_mb": round(rss, 1),
            "llama_cpp_python_version": llama_cpp.__version__,
            "greedy_ids": [int(t) for t in generated],
        }))


if __name__ == "__main__":
    main()
