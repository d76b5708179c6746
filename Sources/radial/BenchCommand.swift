import ArgumentParser
import Foundation
import RadialCommandLine
import RadialModel
import RadialProtocol
import RadialRPC

/// What one benchmark configuration measured.
struct BenchResult {
    var target: String
    var streams: Int
    var tokens = 0
    var seconds = 0.0
    var gaps: [Double] = []         // seconds between consecutive tokens of a stream
    var firstToken: [Double] = []   // seconds from request to first token
    var hopsPerToken = 0.0
    var bytesPerToken = 0.0
    /// In-process runs: the arithmetic used, and the first stream's tokens (so a run can be checked against
    /// `radial run`); nil for a cluster.
    var activations: String?
    var firstStreamIDs: [Int]?

    static func quantile(_ xs: [Double], _ q: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s[min(s.count - 1, Int((Double(s.count - 1) * q).rounded()))]
    }

    var tokensPerSecond: Double { seconds > 0 ? Double(tokens) / seconds : 0 }

    var json: [String: Any] {
        ["target": target, "streams": streams, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokensPerSecond,
         "token_latency_p50_ms": Self.quantile(gaps, 0.5) * 1000, "token_latency_p99_ms": Self.quantile(gaps, 0.99) * 1000,
         "first_token_p50_ms": Self.quantile(firstToken, 0.5) * 1000, "hops_per_token": hopsPerToken,
         "wire_bytes_per_token": bytesPerToken, "activations": activations ?? NSNull(), "first_stream_ids": firstStreamIDs ?? NSNull()]
    }

    var row: [String] {
        [target, "\(streams)", "\(tokens)", String(format: "%.1f", tokensPerSecond),
         String(format: "%.1f", Self.quantile(gaps, 0.5) * 1000), String(format: "%.1f", Self.quantile(gaps, 0.99) * 1000),
         String(format: "%.0f", Self.quantile(firstToken, 0.5) * 1000), String(format: "%.2f", hopsPerToken),
         String(format: "%.0f", bytesPerToken)]
    }
    static let header = ["target", "streams", "tokens", "tok/s", "p50 ms/tok", "p99 ms/tok", "TTFT p50 ms", "hops/tok", "wire B/tok"]
}

/// `radial bench`: tokens/s and per-token latency at several concurrency levels, against a cluster or in-process.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure tokens/s and per-token latency (p50/p99) at 1, 4 and 16 concurrent streams.",
        usage: "radial bench [<options>]",
        discussion: """
            Every stream generates --max-tokens tokens (end-of-generation ignored) after its own short prompt. \
            Against a coordinator (the default) it also reports hops and Forward bytes per generated token, from \
            Status.

            With --model it runs the same workload on the in-process engine (streams batched into one step, as the \
            coordinator does), for side-by-side ratios. bench/cluster_bench.sh runs both in one go.

            Example:
              radial bench --concurrency 1,4 --max-tokens 32
            """)

    @OptionGroup var target: CoordinatorOptions
    @Option(name: .long, help: "Run in-process on this GGUF model instead of against a coordinator.")
    var model: String?
    @Option(name: .customLong("concurrency"), parsing: .upToNextOption, help: ArgumentHelp(
        "Concurrent streams, one configuration each, comma-separated.", valueName: "n,..."))
    var concurrencyLists = [NumberList<Int>([1, 4, 16])]
    @Option(name: .customLong("max-tokens"), help: "Tokens each stream generates.")
    var maxTokens = 64
    @Option(name: .long, help: "Label for the target column (default: cluster HOST:PORT, or in-process with --model).")
    var label: String?
    @Option(name: .long, help: "BLAS threads for --model (default: 2, or RADIAL_THREADS).")
    var threads: Int?
    @Option(name: .long, help: ArgumentHelp("Decode arithmetic for --model: f32 or q8 (default: f32, or RADIAL_ACTIVATIONS).", valueName: "f32|q8"))
    var activations: String?
    @Flag(name: .long, help: "One JSON object per configuration instead of a table.")
    var json = false

    var concurrency: [Int] { concurrencyLists.joined() }

    func validate() throws {
        if let a = activations, QuantizedMatrix.Activations(rawValue: a) == nil {
            throw ValidationError("--activations must be f32 or q8 (got '\(a)')")
        }
        guard maxTokens >= 2, concurrency.allSatisfy({ $0 >= 1 && $0 <= 256 }) else {
            throw ValidationError("--max-tokens must be at least 2 and --concurrency values 1...256")
        }
    }

    static func prompt(_ i: Int) -> String { "Story number \(i + 1). Write a long story about a dragon who learns to sing." }

    func run() async throws {
        var results: [BenchResult] = []
        if let model {
            var options = ModelOptions()
            options.model = model
            options.threads = threads
            options.activations = activations  // every @Option of a hand-built ModelOptions must be assigned
            let (llama, tokenizer) = try options.load()
            for c in concurrency { results.append(try inProcess(llama, tokenizer, streams: c)) }
        } else {
            let channel = try target.channel()
            // Warm-up: connections, caches and the workers' first batches.
            _ = try? await streamGeneration(channel, GenerateRequest(input: .text("Hello"), maxTokens: 4, ignoreEOS: true), options: CallOptions()) { _ in }
            for c in concurrency {
                do { results.append(try await cluster(channel, streams: c)) } catch { exitWithRPCError(error, "bench against \(target.target)") }
            }
        }
        if json {
            for r in results { try printJSON(r.json) }
        } else {
            let rows = [BenchResult.header] + results.map(\.row)
            let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
            for r in rows { print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")) }
        }
    }

    func cluster(_ channel: RPCChannel, streams: Int) async throws -> BenchResult {
        let statusOptions = CallOptions(timeout: .seconds(10))
        let before = try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self, options: statusOptions)
        let clock = ContinuousClock(), start = clock.now
        let maxTokens = maxTokens, callOptions = target.callOptions  // --timeout bounds each stream
        let perStream = try await withThrowingTaskGroup(of: (gaps: [Double], first: Double, tokens: Int).self) { group in
            for i in 0..<streams {
                group.addTask {
                    let request = GenerateRequest(input: .chat([ChatMessage(role: "user", content: Self.prompt(i))]),
                                                  sampling: .greedy, maxTokens: maxTokens, ignoreEOS: true)
                    var times: [ContinuousClock.Instant] = []
                    let sent = clock.now
                    for try await reply in try channel.serverStreaming(Method.generate, request, response: GenerateReply.self,
                                                                       options: callOptions) {
                        for _ in reply.tokens { times.append(clock.now) }
                    }
                    let gaps = zip(times, times.dropFirst()).map { ($1 - $0).seconds }
                    return (gaps, times.first.map { ($0 - sent).seconds } ?? 0, times.count)
                }
            }
            var all: [(gaps: [Double], first: Double, tokens: Int)] = []
            for try await r in group { all.append(r) }
            return all
        }
        let seconds = (clock.now - start).seconds
        let after = try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self, options: statusOptions)
        var r = BenchResult(target: label ?? "cluster \(target.target)", streams: streams)
        r.tokens = perStream.reduce(0) { $0 + $1.tokens }
        r.seconds = seconds
        r.gaps = perStream.flatMap(\.gaps)
        r.firstToken = perStream.map(\.first)
        let generated = Double(after.tokensGenerated - before.tokensGenerated)
        if generated > 0 {
            let hops = after.hopsPerToken * Double(after.tokensGenerated) - before.hopsPerToken * Double(before.tokensGenerated)
            r.hopsPerToken = hops / generated
            r.bytesPerToken = Double(after.forwardBytes - before.forwardBytes) / generated
        }
        return r
    }

    /// The same workload on the in-process engine: prefill each stream, then decode all streams as one batch per
    /// step (what the coordinator does, without the network).
    func inProcess(_ model: LlamaModel, _ tokenizer: Tokenizer, streams: Int) throws -> BenchResult {
        guard let template = ChatTemplate(tokenizer: tokenizer) else { throw CLIError("the model has no chat template") }
        let clock = ContinuousClock(), start = clock.now
        var stop = StopConditions(maxTokens: maxTokens)
        stop.stopAtEndOfGeneration = false
        var states: [GenerationState] = [], caches: [KVCache] = [], feeds: [(token: Int, position: Int)?] = []
        var times: [[ContinuousClock.Instant]] = Array(repeating: [], count: streams)
        var firsts: [Double] = []
        for i in 0..<streams {
            let ids = template.encode([ChatMessage(role: "user", content: Self.prompt(i))], tokenizer: tokenizer)
            var state = try GenerationState(promptIDs: ids, sampling: .greedy, stop: stop, contextLength: model.config.contextLength)
            let cache = model.makeCache(initialCapacity: ids.count + maxTokens)
            let logits = try model.prefill(cache: cache, tokens: ids)[0]
            let step = state.accept(logits: logits, tokenizer: tokenizer)
            times[i].append(clock.now)
            firsts.append((clock.now - start).seconds)
            states.append(state)
            caches.append(cache)
            feeds.append(step.feed.map { ($0, step.position) })
        }
        while true {
            let live = feeds.indices.filter { feeds[$0] != nil }
            if live.isEmpty { break }
            let logits = try model.step(live.map { (cache: caches[$0], position: feeds[$0]!.position, token: feeds[$0]!.token, layers: nil) })
            let now = clock.now
            for (j, i) in live.enumerated() {
                let step = states[i].accept(logits: logits[j], tokenizer: tokenizer)
                times[i].append(now)
                feeds[i] = step.feed.map { ($0, step.position) }
            }
        }
        var r = BenchResult(target: label ?? "in-process", streams: streams)
        r.activations = model.shard.activations.rawValue
        r.firstStreamIDs = states.first?.generated
        r.seconds = (clock.now - start).seconds
        r.tokens = times.reduce(0) { $0 + $1.count }
        r.gaps = times.flatMap { t in zip(t, t.dropFirst()).map { ($1 - $0).seconds } }
        r.firstToken = firsts
        return r
    }
}
