import ArgumentParser
import RadialCommandLine
import Foundation
import RadialCoordinator
import RadialModel
import RadialProtocol
import RadialRouter

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Generate text with a model in this process, streaming it to stdout.",
        discussion: """
            The generation takes the coordinator's path (scheduler, pipeline, LM head, sampling) with every layer \
            in this process: the text equals what a cluster serving the same file returns.

            The prompt is tokenized as-is (special tokens such as <|im_start|> written in it are recognised), or \
            wrapped in the model's chat format with --chat.

            With --json, the last line of output is one JSON object: prompt_ids, generated_ids, text, finish_reason, \
            prefill/decode timings.

            Example:
              radial run --model models/SmolLM2-135M-Instruct.Q4_1.gguf --greedy \\
                --max-tokens 16 --chat "Name three colours."
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var prompt: PromptOptions
    @OptionGroup(title: "Per-token depth") var routing: RoutingOptions

    @Flag(help: "Print memory (weights, K/V cache, scratch bound, peak RSS) and speed to stderr at the end.")
    var verbose = false

    func run() async throws {
        let (llama, tokenizer) = try model.load()
        let ids: [Int]
        switch try prompt.input() {
        case .ids(let given):
            if let bad = given.first(where: { $0 < 0 || $0 >= llama.config.vocabSize }) {
                throw CLIError("token id \(bad) is outside the vocabulary (0..<\(llama.config.vocabSize))")
            }
            ids = given
        case .chat(let messages):
            guard let template = ChatTemplate(tokenizer: tokenizer) else {
                throw CLIError("this model has no ChatML tokens (<|im_start|>, <|im_end|>); --chat is not available")
            }
            ids = template.encode(messages, tokenizer: tokenizer)
        case .text(let text):
            ids = tokenizer.encode(text)
        }
        let routed = try routing.load(modelFingerprint: try model.openFile().fingerprint, config: llama.config)
        let setup = routed.map { RoutingSetup(router: $0.0, policy: $0.1) }
        let scheduler = Scheduler(model: llama, tokenizer: tokenizer, maxPromptRows: ids.count, routing: setup, kvPolicy: routing.kvPolicy)
        let loop = Task { await scheduler.run() }
        defer { scheduler.stopAccepting(); loop.cancel() }
        let state = try GenerationState(promptIDs: ids, sampling: sampling.parameters, stop: sampling.stopConditions,
                                        contextLength: llama.config.contextLength)
        let out = FileHandle.standardOutput
        let stage = scheduler.pipeline.stages[0] as! LocalStage
        let result = try await Self.collect(scheduler.submit(state).events, promptIDs: ids, kvBytes: { stage.host.snapshot.kvUsedBytes }) { text in
            if !prompt.quiet { out.write(text.data(using: .utf8)!) }
        }
        if !prompt.quiet { print("") }
        let scratchBound = Linear.tileBytes
        let peak = ProcessMemory.peakResidentBytes
        if verbose {
            let mib = { (b: Int) in String(format: "%.1f MiB", Double(b) / 1_048_576) }
            FileHandle.standardError.write(Data("""
                weights \(mib(llama.weightBytes)) (in the file's quantised form), K/V cache \(mib(result.kvBytes)), \
                matmul scratch ≤ \(mib(scratchBound)) per call, peak RSS \(mib(Int(peak)))
                prefill \(result.promptIDs.count) tokens \(String(format: "%.1f", result.prefillTokensPerSecond)) tok/s, \
                decode \(result.generatedIDs.count) tokens \(String(format: "%.1f", result.decodeTokensPerSecond)) tok/s

                """.utf8))
        }
        if prompt.json {
            try printJSON([
                "prompt_ids": result.promptIDs,
                "generated_ids": result.generatedIDs,
                "text": result.text,
                "finish_reason": result.finishReason.rawValue,
                "prefill_tokens": result.promptIDs.count,
                "prefill_seconds": result.prefillSeconds,
                "prefill_tokens_per_s": result.prefillTokensPerSecond,
                "decode_seconds": result.decodeSeconds,
                "decode_tokens_per_s": result.decodeTokensPerSecond,
                "threads": BLAS.threads,
                "weight_bytes": llama.weightBytes,
                "kv_bytes": result.kvBytes,
                "scratch_bound_bytes": scratchBound,
                "peak_rss_bytes": peak,
                "tokens": result.layersRun.map { ["layers_run": $0] },
                "layers_per_token": result.layersRun.isEmpty ? 0 : Double(result.layersRun.reduce(0) { $0 + $1.count }) / Double(result.layersRun.count),
            ])
        }
    }

    /// Streams a generation's text to `onText` and gathers what `--json` and `--verbose` report.
    /// `kvBytes` reads the K/V the session holds (its largest value is reported).
    static func collect(_ events: AsyncStream<SessionEvent>, promptIDs: [Int], kvBytes: () -> Int,
                        onText: (String) -> Void) async throws -> GenerationResult {
        var result = GenerationResult(promptIDs: promptIDs, generatedIDs: [], text: "", finishReason: .maxTokens,
                                      prefillSeconds: 0, decodeSeconds: 0)
        for await event in events {
            switch event {
            case .token(let trace, let text):
                result.generatedIDs.append(trace.tokenID)
                result.layersRun.append(trace.layersRun)
                result.text += text
                result.kvBytes = max(result.kvBytes, kvBytes())
                if !text.isEmpty { onText(text) }
            case .text(let text):
                result.text += text
                onText(text)
            case .finished(let reason, let prefill, let decode):
                result.finishReason = reason
                result.prefillSeconds = prefill > 0 ? Double(promptIDs.count) / prefill : 0
                result.decodeSeconds = decode > 0 ? Double(max(result.generatedIDs.count - 1, 0)) / decode : 0
            case .failed(let error):
                throw CLIError(error.message)
            }
        }
        return result
    }
}
