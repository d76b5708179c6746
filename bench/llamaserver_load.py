#!/usr/bin/env python3
"""Concurrent completions against llama-server: aggregate generated tokens/s and per-token latency.

  llamaserver_load.py --url http://127.0.0.1:8090 --streams 16 --max-tokens 64
Prints one JSON object (same keys as `radial bench --json`).
"""
import argparse
import json
import statistics
import threading
import time
import urllib.request


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8090")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--label", default="llama-server")
    a = p.parse_args()
    results = []

    def one(i):
        body = json.dumps({
            "prompt": f"<|im_start|>user\nStory number {i + 1}. Write a long story about a dragon who learns to sing.<|im_end|>\n<|im_start|>assistant\n",
            "n_predict": a.max_tokens, "ignore_eos": True, "temperature": 0, "cache_prompt": False,
        }).encode()
        req = urllib.request.Request(a.url + "/completion", data=body, headers={"Content-Type": "application/json"})
        sent = time.monotonic()
        r = json.load(urllib.request.urlopen(req, timeout=600))
        t = r["timings"]
        results.append({"tokens": r["tokens_predicted"], "per_token_ms": t["predicted_per_token_ms"],
                        "first_ms": (time.monotonic() - sent) * 1000 - t["predicted_ms"]})

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    tokens = sum(r["tokens"] for r in results)
    print(json.dumps({
        "target": a.label, "streams": a.streams, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
        "token_latency_p50_ms": statistics.median(r["per_token_ms"] for r in results),
        "token_latency_p99_ms": max(r["per_token_ms"] for r in results),
        "first_token_p50_ms": statistics.median(r["first_ms"] for r in results),
        "hops_per_token": 0, "wire_bytes_per_token": 0,
    }))


if __name__ == "__main__":
    main()
