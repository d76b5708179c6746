import RadialModel
import RadialRPC

/// A generation inside the scheduler. Only the batching loop touches it after admission.
final class LiveSession: @unchecked Sendable {
    let id: UInt64
    var state: GenerationState
    /// Tokens not yet fed to the model (the prompt, then each sampled token).
    var pending: [Int]
    /// A resumed generation's earlier tokens: after the prompt they are fed instead of sampling, in steps of at
    /// most the decode kernels' row limit, so each row is computed exactly as when it was first generated.
    var replay: [Int] = []
    /// The pending tokens are a resumed generation's earlier tokens (see `replay`).
    var replaying = false
    var nextPosition = 0
    /// A prompt that did not fit beside the decode rows: it gets the next step to itself.
    var deferred = false
    var startedAt: ContinuousClock.Instant?
    var firstTokenAt: ContinuousClock.Instant?
    private let continuation: AsyncStream<SessionEvent>.Continuation
    private(set) var isFinished = false

    /// `adoptedPositions`: the stages already hold this many positions of the context (an adopted session), so
    /// only the context's last token is fed.
    init(id: UInt64, state: GenerationState, continuation: AsyncStream<SessionEvent>.Continuation, adoptedPositions: Int = 0) {
        self.id = id
        self.state = state
        self.continuation = continuation
        if adoptedPositions > 0 {
            pending = [state.contextIDs[adoptedPositions]]
            nextPosition = adoptedPositions
        } else {
            pending = state.promptIDs
            replay = Array(state.contextIDs.dropFirst(state.promptIDs.count))
        }
    }

    func consume(_ k: Int) {
        pending.removeFirst(k)
        nextPosition += k
    }

    func emit(_ event: SessionEvent) { continuation.yield(event) }

    func finish(_ reason: FinishReason, at now: ContinuousClock.Instant = .now) {
        guard !isFinished else { return }
        isFinished = true
        let rest = state.isFinished ? "" : state.finish(reason)
        if !rest.isEmpty { continuation.yield(.text(rest)) }
        var prefill = 0.0, decode = 0.0
        if let start = startedAt, let first = firstTokenAt {
            let p = (first - start).seconds
            prefill = p > 0 ? Double(state.promptIDs.count) / p : 0
            let d = (now - first).seconds
            decode = d > 0 ? Double(max(state.generated.count - 1, 0)) / d : 0
        }
        continuation.yield(.finished(reason, prefillTokensPerSecond: prefill, decodeTokensPerSecond: decode))
        continuation.finish()
    }

    func fail(_ error: RPCError) {
        guard !isFinished else { return }
        isFinished = true
        continuation.yield(.failed(error))
        continuation.finish()
    }
}
