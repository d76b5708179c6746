/// One generation's progress past the model: sampling, stop conditions and the streamed text. The in-process
/// generator and the coordinator's scheduler both drive it, so a generation ends the same way wherever it runs.
public struct GenerationState: Sendable {
    public let promptIDs: [Int]
    public let stop: StopConditions
    public private(set) var generated: [Int] = []
    public private(set) var finishReason: FinishReason?
    private let contextLength: Int
    private var sampler: Sampler
    private var history: [Int]
    private var decoder = StreamingDecoder()
    private var matcher: StopStringMatcher

    /// What one set of logits produced.
    public struct Step: Sendable {
        /// The token sampled and kept (nil when it was the end-of-generation token, which is never shown).
        public var emitted: Int?
        /// Text now complete (UTF-8 and stop-string safe); on the last step, everything left.
        public var text: String
        /// The token to feed at `position` next; nil once the generation has finished.
        public var feed: Int?
        public var position: Int
    }

    /// Validates the request against the model: sampling parameters, an empty or over-long prompt.
    public init(promptIDs: [Int], sampling: SamplingParameters, stop: StopConditions, contextLength: Int) throws {
        try sampling.validate()
        guard !promptIDs.isEmpty else { throw ModelError.invalidRequest("the prompt is empty") }
        guard stop.maxTokens >= 1 else { throw ModelError.invalidRequest("max tokens must be at least 1, got \(stop.maxTokens)") }
        guard promptIDs.count < contextLength else {
            throw ModelError.contextOverflow(position: promptIDs.count, limit: contextLength)
        }
        self.promptIDs = promptIDs
        self.stop = stop
        self.contextLength = contextLength
        sampler = Sampler(sampling)
        history = promptIDs
        matcher = StopStringMatcher(stop.stopStrings)
    }

    public var isFinished: Bool { finishReason != nil }
    /// The tokens of the context so far: the prompt, then those generated.
    public var contextIDs: [Int] { history }

    /// Takes `ids` as this generation's first tokens, already sampled and shown (a client resuming a broken
    /// stream): sampler, text and stop conditions advance exactly as if they had been generated here, and nothing
    /// of them is released again. INVALID_ARGUMENT-worthy when they could not have been generated (an
    /// end-of-generation token, a stop string, more than the limits allow).
    public mutating func resume(after ids: [Int], tokenizer: Tokenizer) throws {
        precondition(generated.isEmpty, "resume before the first token")
        guard ids.count < stop.maxTokens else {
            throw ModelError.invalidRequest("continue_after holds \(ids.count) tokens; max_tokens is \(stop.maxTokens), so nothing would be left")
        }
        guard history.count + ids.count < contextLength else {
            throw ModelError.contextOverflow(position: history.count + ids.count, limit: contextLength)
        }
        for id in ids {
            guard id >= 0 && id < tokenizer.vocabSize else { throw ModelError.tokenOutOfVocabulary(id, vocab: tokenizer.vocabSize) }
            if stop.stopAtEndOfGeneration && tokenizer.isEndOfGeneration(id) {
                throw ModelError.invalidRequest("continue_after holds the end-of-generation token \(id): the generation had ended")
            }
            sampler.skipOne()
            generated.append(id)
            history.append(id)
            if matcher.push(decoder.push(tokenizer.bytes(of: id))).stopped {
                throw ModelError.invalidRequest("continue_after reaches a stop string: the generation had ended")
            }
        }
    }
    /// The text generated so far (cut before a stop string).
    public var text: String { matcher.fullText }

    /// Consumes the logits that followed the last fed token.
    public mutating func accept(logits: [Float], tokenizer: Tokenizer) -> Step {
        precondition(finishReason == nil, "accept after the generation finished")
        let next = sampler.sample(logits, history: history)
        if stop.stopAtEndOfGeneration && tokenizer.isEndOfGeneration(next) {
            return Step(emitted: nil, text: finish(.endOfGeneration), feed: nil, position: history.count)
        }
        generated.append(next)
        history.append(next)
        let (release, stopped) = matcher.push(decoder.push(tokenizer.bytes(of: next)))
        if stopped {
            finishReason = .stopString
            return Step(emitted: next, text: release, feed: nil, position: history.count - 1)
        }
        if generated.count >= stop.maxTokens {
            return Step(emitted: next, text: release + finish(.maxTokens), feed: nil, position: history.count - 1)
        }
        if history.count - 1 >= contextLength {
            return Step(emitted: next, text: release + finish(.contextFull), feed: nil, position: history.count - 1)
        }
        return Step(emitted: next, text: release, feed: next, position: history.count - 1)
    }

    /// Ends the generation (cancelled, or another reason decided outside); returns the text still held back.
    public mutating func finish(_ reason: FinishReason) -> String {
        guard finishReason == nil else { return "" }
        finishReason = reason
        if reason == .stopString { return "" }
        // The decoder's last bytes can still complete a stop string.
        let (release, stopped) = matcher.push(decoder.flush())
        if stopped { finishReason = .stopString; return release }
        return release + matcher.flush()
    }
}
