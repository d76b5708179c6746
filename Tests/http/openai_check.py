#!/usr/bin/env python3
"""Drives a running radial-coordinator's HTTP API with the official `openai` client and scrapes /metrics with
prometheus_client's own parser. Prints one JSON object with what it saw; exits non-zero (with the reason) when
anything an OpenAI client relies on is wrong. Run by Tests/RadialClusterTests/HTTPAPITests.swift.

    openai_check.py --base http://127.0.0.1:PORT --token TOKEN [--worker-metrics http://127.0.0.1:P ...]
"""
import argparse
import json
import sys
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

QUESTION = "What is the capital of France?"


def fail(message):
    print(f"openai_check: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def scrape(url):
    """Every sample of a /metrics page, by family, parsed by prometheus_client (which raises on bad syntax)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        check(r.status == 200, f"{url}/metrics answered {r.status}")
        text = r.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {"type": family.type, "samples": [(s.name, s.labels, s.value) for s in family.samples]}
    return families


def total(families, name, sample=None, **labels):
    family = families.get(name)
    check(family is not None, f"metric family {name} missing (have: {sorted(families)})")
    return sum(v for n, l, v in family["samples"]
               if (sample is None or n == sample) and all(l.get(k) == v2 for k, v2 in labels.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--worker-metrics", nargs="*", default=[])
    args = ap.parse_args()
    client = openai.OpenAI(base_url=args.base + "/v1", api_key=args.token, max_retries=0, timeout=120)
    out = {}

    models = client.models.list()
    check(len(models.data) == 1, f"/v1/models lists {len(models.data)} models")
    model = models.data[0].id
    out["model"] = model

    # Chat, whole reply, greedy.
    messages = [{"role": "user", "content": QUESTION}]
    chat = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40)
    choice = chat.choices[0]
    check(choice.message.role == "assistant", f"role {choice.message.role}")
    check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
    check(chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0, f"usage {chat.usage}")
    check(chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens, "usage total")
    radial = chat.model_extra.get("radial") or {}
    check(len(radial.get("tokens", [])) == chat.usage.completion_tokens, f"radial tokens {radial}")
    out["chat"] = {"text": choice.message.content, "finish": choice.finish_reason,
                   "prompt_tokens": chat.usage.prompt_tokens, "completion_tokens": chat.usage.completion_tokens,
                   "ids": [t["id"] for t in radial["tokens"]], "hops": [t["hops"] for t in radial["tokens"]]}

    # The same chat streamed: the deltas add up to the same text, usage arrives last.
    stream = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40, stream=True,
                                            stream_options={"include_usage": True})
    text, finish, usage, chunks, ids = "", None, None, 0, []
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
            ids += [t["id"] for t in (c.model_extra.get("radial") or [])]
    check(usage is not None, "no usage chunk with stream_options.include_usage")
    out["stream"] = {"text": text, "finish": finish, "chunks": chunks, "completion_tokens": usage.completion_tokens, "ids": ids}

    # Completions with a token limit, seeded sampling twice: the same seed gives the same text.
    comp = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0.8, seed=7)
    again = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0.8, seed=7)
    check(comp.choices[0].finish_reason == "length", f"completion finish_reason {comp.choices[0].finish_reason}")
    check(comp.usage.completion_tokens == 8, f"completion usage {comp.usage}")
    out["completion"] = {"text": comp.choices[0].text, "again": again.choices[0].text}

    # Errors in OpenAI's shape: a bad request, a wrong token, an unknown route.
    try:
        client.chat.completions.create(model=model, messages=[], max_tokens=4)
        fail("empty messages accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "messages" in e.message, f"bad request: {e.status_code} {e.message}")
        out["bad_request"] = e.body
    try:
        openai.OpenAI(base_url=args.base + "/v1", api_key="wrong", max_retries=0).models.list()
        fail("a wrong token was accepted")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, f"wrong token: {e.status_code}")
        out["wrong_token"] = e.body

    # Metrics, parsed by a real Prometheus parser.
    m = scrape(args.base)
    generated = total(m, "radial_generated_tokens")
    check(generated >= out["chat"]["completion_tokens"] * 2 + 16, f"radial_generated_tokens_total {generated}")
    check(total(m, "radial_requests", api="http") >= 4, "radial_requests_total{api=http}")
    check(total(m, "radial_requests", api="http", outcome="invalid_argument") >= 1, "bad request not counted")
    check(total(m, "radial_time_to_first_token_seconds", "radial_time_to_first_token_seconds_count") >= 4, "TTFT histogram")
    check(m["radial_time_to_first_token_seconds"]["type"] == "histogram", "TTFT is not a histogram")
    check(total(m, "radial_inter_token_latency_seconds", "radial_inter_token_latency_seconds_count") > 0, "per-token latency")
    check(total(m, "radial_token_hops") > 0, "hops")
    for name in ("radial_layers_skipped", "radial_queue_depth", "radial_sessions_running", "radial_rss_bytes",
                 "radial_worker_rtt_seconds", "radial_worker_compute_seconds", "radial_hops_per_token"):
        check(name in m, f"{name} missing")
    out["metrics"] = {"families": len(m), "generated": generated}
    workers = []
    for url in args.worker_metrics:
        w = scrape(url)
        check(total(w, "radial_worker_rows") > 0, f"{url}: no rows counted")
        check(total(w, "radial_worker_forward_calls", outcome="ok") > 0, f"{url}: no Forward counted")
        check(total(w, "radial_worker_kv_budget_bytes") > 0, f"{url}: no KV budget")
        workers.append({"families": len(w), "rows": total(w, "radial_worker_rows")})
    out["workers"] = workers
    print(json.dumps(out))


if __name__ == "__main__":
    main()
