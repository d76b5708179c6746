#!/usr/bin/env python3
"""Concurrent streamed completions against llama-server: aggregate generated tokens/s and per-token latency
(quantiles of the gaps between a stream's tokens, measured from the streamed events as `radial bench` does).

  llamaserver_load.py --url http://127.0.0.1:8090 --streams 16 --max-tokens 64
Prints one JSON object (same keys as `radial bench --json`).
"""
import argparse
import json
import statistics
import threading
import time
import urllib.request


def token_times(url, body):
    """Streams one /completion (body: JSON bytes, with "stream": true) and returns each token's arrival time:
    server-sent events, one per token, whose gaps are the per-token gaps Radial's bench measures."""
    req = urllib.request.Request(url + "/completion", data=body, headers={"Content-Type": "application/json"})
    times = []
    with urllib.request.urlopen(req, timeout=900) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event.get("content") or event.get("tokens"):
                times.append(time.monotonic())
            if event.get("stop"):
                break
    return times


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
            "n_predict": a.max_tokens, "ignore_eos": True, "temperature": 0, "cache_prompt": False, "stream": True,
        }).encode()
        sent = time.monotonic()
        times = token_times(a.url, body)
        results.append({"tokens": len(times), "gaps_ms": [(b - a_) * 1000 for a_, b in zip(times, times[1:])],
                        "first_ms": (times[0] - sent) * 1000 if times else None})

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    tokens = sum(r["tokens"] for r in results)
    gaps = sorted(g for r in results for g in r["gaps_ms"])
    quantile = lambda q: gaps[min(len(gaps) - 1, int(q * len(gaps)))] if gaps else None
    firsts = [r["first_ms"] for r in results if r["first_ms"] is not None]
    print(json.dumps({
        "target": a.label, "streams": a.streams, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
        # Quantiles of the gaps between consecutive tokens of a stream, over all streams (as `radial bench`).
        "token_latency_p50_ms": quantile(0.5), "token_latency_p99_ms": quantile(0.99),
        "first_token_p50_ms": statistics.median(firsts) if firsts else None,
        # Not measurable from outside llama-server.
        "hops_per_token": None, "wire_bytes_per_token": None,
    }))


if __name__ == "__main__":
    main()
