/// What one generation produced, with its timings.
public struct GenerationResult: Sendable, Codable {
    public var promptIDs: [Int]
    public var generatedIDs: [Int]
    public var text: String
    public var finishReason: FinishReason
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Per generated token, the layers that ran for the row that produced it.
    public var layersRun: [[Int]] = []
    /// Bytes of the K/V cache the generation allocated.
    public var kvBytes = 0

    public init(promptIDs: [Int], generatedIDs: [Int], text: String, finishReason: FinishReason, prefillSeconds: Double,
                decodeSeconds: Double, layersRun: [[Int]] = [], kvBytes: Int = 0) {
        self.promptIDs = promptIDs
        self.generatedIDs = generatedIDs
        self.text = text
        self.finishReason = finishReason
        self.prefillSeconds = prefillSeconds
        self.decodeSeconds = decodeSeconds
        self.layersRun = layersRun
        self.kvBytes = kvBytes
    }

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptIDs.count) / prefillSeconds : 0 }
    /// Tokens after the first (the first comes from the prefill's logits) over the decode time.
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(generatedIDs.count - 1, 0)) / decodeSeconds : 0
    }
}

/// Generates text in-process: prefill the prompt as one batch, then decode token by token.
public struct LocalGenerator: Sendable {
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    /// Per-token depth: a router under its policy (nil: every layer), and the K/V of skipped layers.
    public var chooser: (any LayerChooser)?
    public var kvPolicy: SkippedLayerKV = .fill

    public init(model: LlamaModel, tokenizer: Tokenizer, chooser: (any LayerChooser)? = nil, kvPolicy: SkippedLayerKV = .fill) {
        self.model = model
        self.tokenizer = tokenizer
        self.chooser = chooser
        self.kvPolicy = kvPolicy
    }

    /// Runs one generation; `onText` receives text as soon as it is complete (UTF-8 and stop-string safe).
    public func generate(promptIDs: [Int], sampling: SamplingParameters, stop: StopConditions,
                         onText: (String) -> Void = { _ in }) throws -> GenerationResult {
        var state = try GenerationState(promptIDs: promptIDs, sampling: sampling, stop: stop,
                                        contextLength: model.config.contextLength)
        let clock = ContinuousClock()
        let cache = model.makeCache(initialCapacity: promptIDs.count + stop.maxTokens)
        let t0 = clock.now
        let rows = promptIDs.enumerated().map { (cache: cache, position: $0.offset, token: $0.element, layers: LayerSet?.none) }
        var (out, ran) = try model.stepTracing(rows, wantLogits: promptIDs.indices.map { $0 == promptIDs.count - 1 },
                                               kvPolicy: kvPolicy, chooser: chooser)
        var logits = out[0], lastRan = ran[ran.count - 1]
        var layersRun: [[Int]] = []
        let prefill = clock.now - t0
        let t1 = clock.now
        while true {
            let step = state.accept(logits: logits, tokenizer: tokenizer)
            if step.emitted != nil { layersRun.append((0..<model.config.layerCount).filter(lastRan.contains)) }
            if !step.text.isEmpty { onText(step.text) }
            guard let next = step.feed else { break }
            (out, ran) = try model.stepTracing([(cache: cache, position: step.position, token: next, layers: nil)],
                                               kvPolicy: kvPolicy, chooser: chooser)
            logits = out[0]
            lastRan = ran[0]
        }
        let decode = clock.now - t1
        return GenerationResult(promptIDs: promptIDs, generatedIDs: state.generated, text: state.text,
                                finishReason: state.finishReason ?? .maxTokens,
                                prefillSeconds: prefill.seconds, decodeSeconds: decode.seconds, layersRun: layersRun,
                                kvBytes: cache.bytes)
    }
}

extension Duration {
    public var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) * 1e-18
    }
}
