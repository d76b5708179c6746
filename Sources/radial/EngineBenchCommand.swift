import ArgumentParser
import RadialCommandLine
import Foundation
import RadialModel
import RadialRouter

struct EngineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine-bench",
        abstract: "Measure the in-process engine: prefill, batch-1 decode, and batched decode throughput.",
        usage: "radial engine-bench --model <model> [<options>]",
        discussion: """
            Prefill: the first --prefill-tokens tokens of --prompt-file as one batch (best of 3 after a warm-up). \
            Decode: --decode-tokens greedy steps after that prompt, batch 1. Batched: --batch sessions, each with \
            its own prompt, decoded together one step at a time.

            The two decode measurements alternate in 8 slices, so the machine's slow spells hit both. \
            bench/engine_vs_llamacpp.sh runs this beside llama.cpp on the same file.

            With --router, both decode measurements also run routed (same prompts, in the same slices) and the \
            routed/dense ratios and the layers skipped are reported.
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
    @Option(name: .long, help: "Measure only this part: prefill, decode or batch, for profiling (default: all three).")
    var only: String?
    @OptionGroup(title: "Per-token depth") var routing: RoutingOptions

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

        // Batch-1 decode after the same prompt (as bench/llamacpp_bench.py does), greedy, timing only decode steps;
        // batched: each sequence its own prompt of the same length (a different window of the text, so the
        // attention work per token matches batch 1), all decoded together one step per token. The two alternate
        // in 8 slices, so a slow spell of this noisy VM hits both and their ratio holds still.
        let slack = all.count - prompt.count
        let prompts = (0..<batch).map { i in
            let start = slack > 0 ? (i * 5) % (slack + 1) : 0
            return Array(all[start..<start + prompt.count])
        }
        let chooser = try routing.load(modelFingerprint: try model.openFile().fingerprint, config: llama.config)
            .map { RouterChooser(router: $0.0, policy: $0.1) }
        let single = wants("decode") ? try Decoder(llama, prompts: [prompt], steps: decodeTokens) : nil
        let batched = wants("batch") ? try Decoder(llama, prompts: prompts, steps: decodeTokens) : nil
        let routedSingle = try chooser.flatMap { c in wants("decode") ? try Decoder(llama, prompts: [prompt], steps: decodeTokens, chooser: c) : nil }
        let routedBatched = try chooser.flatMap { c in wants("batch") ? try Decoder(llama, prompts: prompts, steps: decodeTokens, chooser: c) : nil }
        let slices = 8
        for k in 0..<slices {
            let steps = decodeTokens / slices + (k < decodeTokens % slices ? 1 : 0)
            try single?.run(steps: steps, clock: clock)
            try routedSingle?.run(steps: steps, clock: clock)
            try batched?.run(steps: steps, clock: clock)
            try routedBatched?.run(steps: steps, clock: clock)
        }
        let decodeRate = single?.rate ?? 0, batchRate = batched?.rate ?? 0

        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let rssMB = Double(usage.ru_maxrss) / 1024
        var summary: [String: Any] = [
            "engine": "radial", "threads": BLAS.threads, "activations": llama.shard.activations.rawValue,
            "prefill_tokens": prompt.count, "prefill_tokens_per_s": prefillRate,
            "decode_tokens": decodeTokens, "decode_tokens_per_s": decodeRate,
            "batch": batch, "batch_aggregate_tokens_per_s": batchRate,
            "batch_speedup": decodeRate > 0 ? batchRate / decodeRate : 0,  // 0: not measured (--only)
            "peak_rss_mb": rssMB, "weights_mb": Double(llama.weightBytes) / 1_048_576,
        ]
        var routedLines: [String] = []
        for (name, routed, dense) in [("decode", routedSingle, single), ("batch", routedBatched, batched)] {
            guard let routed, let dense, dense.rate > 0 else { continue }
            let skipped = routed.skipRate(layers: llama.config.layerCount)
            summary["routed_\(name)_tokens_per_s"] = routed.rate
            summary["routed_\(name)_ratio"] = routed.rate / dense.rate
            summary["routed_\(name)_layer_skip_rate"] = skipped
            routedLines.append("routed \(name): " + String(format: "%.1f tokens/s, %.2fx dense, %.1f%% of layers skipped",
                                                            routed.rate, routed.rate / dense.rate, skipped * 100))
        }
        if json {
            try printJSON(summary)
        } else {
            print(String(format: "prefill %d tokens: %.1f tokens/s", prompt.count, prefillRate))
            print(String(format: "decode batch 1: %.1f tokens/s", decodeRate))
            let speedup = decodeRate > 0 ? String(format: " (%.2fx batch 1)", batchRate / decodeRate) : ""
            print(String(format: "decode batch %d: %.1f tokens/s aggregate", batch, batchRate) + speedup)
            print(String(format: "peak RSS %.0f MB (weights %.0f MB)", rssMB, Double(llama.weightBytes) / 1_048_576))
            routedLines.forEach { print($0) }
        }
    }

    /// Greedy decode of a set of sessions together, one step per token, timed in slices.
    final class Decoder {
        let llama: LlamaModel
        let caches: [KVCache]
        var next: [Int]
        var positions: [Int]
        let chooser: (any LayerChooser)?
        var tokens = 0
        var seconds = 0.0
        var layersRun = 0

        /// A routed decoder prefills densely (so both start from the same state) and routes every decode step.
        init(_ llama: LlamaModel, prompts: [[Int]], steps: Int, chooser: (any LayerChooser)? = nil) throws {
            self.llama = llama
            self.chooser = chooser
            caches = prompts.map { llama.makeCache(initialCapacity: $0.count + steps + 1) }
            next = try zip(caches, prompts).map { cache, p in Sampler.argmax(try llama.prefill(cache: cache, tokens: p)[0]) }
            positions = prompts.map(\.count)
        }

        func skipRate(layers: Int) -> Double { tokens > 0 ? 1 - Double(layersRun) / Double(tokens * layers) : 0 }

        func run(steps: Int, clock: ContinuousClock) throws {
            let t = clock.now
            for _ in 0..<steps {
                let rows = caches.indices.map { (cache: caches[$0], position: positions[$0], token: next[$0], layers: LayerSet?.none) }
                let (logits, ran) = try llama.stepTracing(rows, chooser: chooser)
                next = logits.map(Sampler.argmax)
                layersRun += ran.reduce(0) { $0 + $1.count }
                for i in positions.indices { positions[i] += 1 }
            }
            seconds += (clock.now - t).seconds
            tokens += steps * caches.count
        }

        /// Aggregate generated tokens per second.
        var rate: Double { seconds > 0 ? Double(tokens) / seconds : 0 }
    }
}
