#!/usr/bin/env python3
"""Record a real model's reference outputs from the independent numpy forward pass (Tests/reference/llama_ref.py).

Usage:
    python3 scripts/record_reference.py MODEL.gguf OUT.json --ids 1,2,3 [--ids ...] [--greedy N]

For each --ids list: the top-5 (id, logit) of the last position and N greedy continuation tokens, each chosen by
running the reference over the sequence so far (teacher forcing its own choice). The prompt ids come from the
caller (Radial's tokenizer is checked against llama.cpp's separately).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "reference"))
import llama_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--ids", action="append", required=True)
    ap.add_argument("--greedy", type=int, default=8)
    a = ap.parse_args()
    m = llama_ref.Model(a.model)
    with open(a.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    cases = []
    for s in a.ids:
        ids = [int(v) for v in s.split(",")]
        seq, greedy, top5 = list(ids), [], None
        for step in range(a.greedy):
            logits, _ = m.forward(seq)
            last = logits[-1]
            if step == 0:
                order = np.argsort(-last)[:5]
                top5 = [[int(i), float(last[i])] for i in order]
            nxt = int(np.argmax(last))
            greedy.append(nxt)
            seq.append(nxt)
            print("case %d: %d/%d" % (len(cases), step + 1, a.greedy), file=sys.stderr)
        cases.append({"ids": ids, "ref_greedy": greedy, "ref_last_top5": top5})
    with open(a.out, "w") as f:
        json.dump({"model_sha256": sha, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
