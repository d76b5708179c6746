#!/usr/bin/env python3
"""Record reference tokenizer ids from llama.cpp (via llama-cpp-python).

Usage:
    python3 scripts/record_tokenizer_ids.py [--model PATH] [--out PATH]

Writes a JSON file of {"model_sha256", "llama_cpp_python_version", "cases": [...]},
each case being {"text", "ids_special", "ids_plain"} where
  ids_special = llm.tokenize(text, add_bos=False, special=True)
  ids_plain   = llm.tokenize(text, add_bos=False, special=False)
The file is written with ensure_ascii=True so it is plain ASCII.
"""
import argparse
import hashlib
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(REPO, "Tests", "RadialModelTests", "Resources", "tokenizer_cases.json")

LONG_PARAGRAPH = (
    "The history of computing is a story of abstraction layered upon abstraction. "
    "Early machines were programmed by physically rewiring circuits; later, engineers "
    "fed instructions on punched cards, and eventually assemblers, compilers and "
    "interpreters let people describe intent rather than mechanism. Each step traded "
    "a little raw efficiency for a great deal of human productivity. Today, a single "
    "developer can ship software to millions of users in an afternoon, relying on "
    "operating systems, networks, databases and libraries written by thousands of "
    "strangers over five decades. It's remarkable that any of it works at all!"
)

TEXTS = [
    # ASCII prose
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    # contractions
    "It's a dog. Don't worry, they're fine; we've seen it. I'm sure you'll agree, I'd say.",
    "I'M SURE YOU DON'T KNOW. SHE'S HERE, THEY'RE GONE, WE'VE WON, HE'LL COME, YOU'D SEE.",
    # accents
    "café naïve Ångström Zürich façade résumé coöperate",
    # European languages
    "Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München!",
    "Le cœur a ses raisons que la raison ne connaît point. Où est l'hôtel ?",
    "¿Dónde está la biblioteca? ¡Mañana vamos a la playa, señor!",
    # CJK
    "我爱自然语言处理。今天天气很好！",
    "こんにちは、世界。東京は日本の首都です。カタカナもあります。",
    "안녕하세요, 세계! 한국어 토큰화 테스트입니다.",
    # emoji
    "I love pizza 🍕😀🎉! Family: 👨\u200d👩\u200d👧 Flags: 🇫🇷🇯🇵 Skin: 👋🏽👍🏿",
    # whitespace
    "a  b   c       d",
    "tab\there\t\tdouble\ttabs",
    "mixed\t \n whitespace \t\n\t end",
    "trailing spaces   ",
    "   leading spaces",
    "line one\n\n\nline four",
    "windows\r\nline\r\nendings\r\n",
    # numbers
    "12345 3.14159 1,000,000 and 007 and 2024-06-01",
    "Call +1 (555) 123-4567 or 555.987.6543 now.",
    # code
    "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    result = a + b\n    return result\n",
    "int main(void) {\n\tint x = 42;\n\tif (x > 0) { printf(\"%d\\n\", x); }\n\treturn 0;\n}\n",
    '{"name": "Radial", "version": 1, "tags": ["llm", "swift"], "nested": {"ok": true, "n": null}}',
    # punctuation runs
    "Wait!!!??? ... --- ... *** ### ==> <== ((()))",
    # URLs / emails
    "Visit https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#top or email john.doe@example.com",
    # special tokens embedded
    "<|im_start|>user\nHello<|im_end|>\n",
    "<|endoftext|>",
    "foo<|im_start|>bar and pre<|endoftext|>post",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    # trivial
    "",
    " ",
    "\n",
    # other scripts
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם, מה שלומך?",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก คุณสบายดีไหม",
    "Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.",
    # math
    "∑ᵢ xᵢ² ≤ ∫₀¹ f(x) dx and √2 ≈ 1.414, ∀ε>0 ∃δ: |x−y|<δ ⇒ ∞",
    # combining characters / NBSP
    "cafe\u0301 vs caf\u00e9, n\u0303 and a\u030a",
    "non\u00a0breaking\u00a0space and\u2009thin\u200bzero-width",
    # long paragraph
    LONG_PARAGRAPH,
]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)

    cases = []
    n_diff = 0
    for text in TEXTS:
        b = text.encode("utf-8")
        ids_special = llm.tokenize(b, add_bos=False, special=True)
        ids_plain = llm.tokenize(b, add_bos=False, special=False)
        # sanity: detokenizing should round-trip the bytes
        if llm.detokenize(ids_plain) != b:
            print(f"warning: plain ids do not round-trip for {text!r}", file=sys.stderr)
        if ids_special != ids_plain:
            n_diff += 1
        cases.append({"text": text, "ids_special": list(ids_special), "ids_plain": list(ids_plain)})

    if len(LONG_PARAGRAPH) < 450:
        print(f"warning: long paragraph is only {len(LONG_PARAGRAPH)} chars", file=sys.stderr)

    out = {
        "model_sha256": sha256_file(args.model),
        "llama_cpp_python_version": llama_cpp.__version__,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="ascii") as f:
        # One case per line: still valid JSON, but easy to read and diff.
        f.write("{\n")
        f.write(f' "model_sha256": {json.dumps(out["model_sha256"])},\n')
        f.write(f' "llama_cpp_python_version": {json.dumps(out["llama_cpp_python_version"])},\n')
        f.write(' "cases": [\n')
        lines = [" " + json.dumps(c, ensure_ascii=True) for c in cases]
        f.write(",\n".join(lines))
        f.write("\n ]\n}\n")
    print(f"wrote {len(cases)} cases to {args.out} ({n_diff} differ between special=True/False)")


if __name__ == "__main__":
    main()
