import ArgumentParser
import RadialCommandLine
import Foundation
import RadialModel

struct EngineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine-bench",
        abstract: "Measure the in-process engine: prefill, batch-1 decode, and batched decode throughput.",
        discussion: """
            Prefill: the first --prefill-tokens tokens of --prompt-file as one batch (best of 3 after a warm-up).
            Decode: --decode-tokens greedy steps after that prompt, batch 1. Batched: --batch sessions, each with
            its own prompt, decoded together one step at a time. bench/engine_vs_llamacpp.sh runs this beside
            llama.cpp on the same file.
            """)

    @OptionGroup var model: ModelOptions
    @Option(name: .customLong("prompt-file"), help: "English text the prompts are cut from.")
    var promptFile = "bench/prompt_180.txt"
    @Option(name: .customLong("prefill-tokens"), help: "Prompt length for the prefill measurement.")
    var prefillTokens = 180
    @Option(name: .customLong("decode-tokens"), help: "Tokens generated in each decode measurement.")
    var decodeTokens = 128
    @Option(name: .long, help: "Concurrent sequences in the batched measurement.")
    var batch = 8
    @Flag(name: .long, help: "Print one JSON object as the last line.")
    var json = false
    @Option(name: .long, help: "Measure only this part: prefill, decode or batch (for profiling).")
    var only: String?

    func validate() throws {
        if let o = only, !["prefill", "decode", "batch"].contains(o) { throw ValidationError("--only takes prefill, decode or batch") }
        if batch < 1 || decodeTokens < 1 || prefillTokens < 1 { throw ValidationError("counts must be at least 1") }
    }

    func wants(_ part: String) -> Bool { only == nil || only == part }

    func run() throws {
        let (llama, tokenizer) = try model.load(progress: !json)
        let text = try String(contentsOfFile: promptFile, encoding: .utf8)
        let all = tokenizer.encode(text)
        guard all.count >= prefillTokens else { throw CLIError("\(promptFile) has only \(all.count) tokens; need \(prefillTokens)") }
        let prompt = Array(all.prefix(prefillTokens))
        let clock = ContinuousClock()

        // Prefill: warm-up, then best of 3.
        var best = Double.infinity
        if wants("prefill") {
        _ = try llama.prefill(cache: llama.makeCache(initialCapacity: prompt.count), tokens: prompt)
        for _ in 0..<3 {
            let cache = llama.makeCache(initialCapacity: prompt.count)
            let t = clock.now
            _ = try llama.prefill(cache: cache, tokens: prompt)
            best = min(best, (clock.now - t).seconds)
        }
        }
        let prefillRate = Double(prompt.count) / best

        // Batch-1 decode after the same prompt (as bench/llamacpp_bench.py does), greedy, timing only decode steps.
        let decodeRate = wants("decode") ? try decode(llama, prompts: [prompt], clock: clock) : 0

        // Batched decode: each sequence its own prompt of the same length (a different window of the text, so the
        // attention work per token matches batch 1), all decoded together one step per token.
        let slack = all.count - prompt.count
        let prompts = (0..<batch).map { i in
            let start = slack > 0 ? (i * 5) % (slack + 1) : 0
            return Array(all[start..<start + prompt.count])
        }
        let batchRate = wants("batch") ? try decode(llama, prompts: prompts, clock: clock) : 0

        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let rssMB = Double(usage.ru_maxrss) / 1024
        let summary: [String: Any] = [
            "engine": "radial", "threads": BLAS.threads, "activations": QuantizedMatrix.activations.rawValue,
            "prefill_tokens": prompt.count, "prefill_tokens_per_s": prefillRate,
            "decode_tokens": decodeTokens, "decode_tokens_per_s": decodeRate,
            "batch": batch, "batch_aggregate_tokens_per_s": batchRate,
            "batch_speedup": decodeRate > 0 ? batchRate / decodeRate : 0,  // 0: not measured (--only)
            "peak_rss_mb": rssMB, "weights_mb": Double(llama.weightBytes) / 1_048_576,
        ]
        if json {
            try printJSON(summary)
        } else {
            print(String(format: "prefill %d tokens: %.1f tokens/s", prompt.count, prefillRate))
            print(String(format: "decode batch 1: %.1f tokens/s", decodeRate))
            let speedup = decodeRate > 0 ? String(format: " (%.2fx batch 1)", batchRate / decodeRate) : ""
            print(String(format: "decode batch %d: %.1f tokens/s aggregate", batch, batchRate) + speedup)
            print(String(format: "peak RSS %.0f MB (fp32 weights %.0f MB)", rssMB, Double(llama.weightBytes) / 1_048_576))
        }
    }

    /// Aggregate generated tokens per second over `decodeTokens` greedy steps for all prompts together.
    func decode(_ llama: LlamaModel, prompts: [[Int]], clock: ContinuousClock) throws -> Double {
        let caches = prompts.map { llama.makeCache(initialCapacity: $0.count + decodeTokens + 1) }
        var next = try zip(caches, prompts).map { cache, p in Sampler.argmax(try llama.prefill(cache: cache, tokens: p)[0]) }
        var positions = prompts.map(\.count)
        let t = clock.now
        for _ in 0..<decodeTokens {
            let rows = (0..<prompts.count).map { (cache: caches[$0], position: positions[$0], token: next[$0], layers: LayerSet?.none) }
            let logits = try llama.step(rows)
            next = logits.map(Sampler.argmax)
            for i in positions.indices { positions[i] += 1 }
        }
        return Double(decodeTokens * prompts.count) / (clock.now - t).seconds
    }
}
