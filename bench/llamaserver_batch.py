#!/usr/bin/env python3
"""Aggregate decode of N sequences in llama-server (-np N), measured as `radial engine-bench` measures its batched
decode: each sequence's prompt is a different 180-token window of bench/prompt_180.txt (the same windows:
start = 5 i), all N sent at once, greedy, 128 tokens each; the rate counts decode tokens only, from the moment
the last stream's first token (the prompt's own) arrived to the end of the last stream.

  llamaserver_batch.py --url http://127.0.0.1:8091 --sequences 8
Prints one JSON object on the last line.
"""
import argparse
import json
import os
import threading
import urllib.request

from llamaserver_load import token_times

PROMPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompt_180.txt")


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=900)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8091")
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--prefill-tokens", type=int, default=180)
    p.add_argument("--decode-tokens", type=int, default=128)
    a = p.parse_args()

    with post(a.url + "/tokenize", {"content": open(PROMPT, encoding="utf-8").read(), "add_special": False}) as r:
        ids = json.load(r)["tokens"]
    slack = len(ids) - a.prefill_tokens
    if slack < 0:
        raise SystemExit(f"prompt file has only {len(ids)} tokens")
    prompts = [ids[s:s + a.prefill_tokens] for s in ((i * 5) % (slack + 1) for i in range(a.sequences))]

    streams = [None] * a.sequences

    def one(i):
        body = {"prompt": prompts[i], "n_predict": a.decode_tokens + 1, "ignore_eos": True, "temperature": 0,
                "top_k": 1, "cache_prompt": False, "stream": True}
        streams[i] = token_times(a.url, json.dumps(body).encode())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.sequences)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start = max(s[0] for s in streams)
    end = max(s[-1] for s in streams)
    decoded = sum(sum(1 for t in s[1:] if t > start) for s in streams)
    print(json.dumps({"engine": "llama-server", "sequences": a.sequences, "decode_tokens": decoded,
                      "seconds": end - start, "batch_aggregate_tokens_per_s": decoded / (end - start)}))


if __name__ == "__main__":
    main()
