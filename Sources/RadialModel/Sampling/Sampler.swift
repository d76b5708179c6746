#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the next token is chosen. `temperature == 0` is greedy.
public struct SamplingParameters: Sendable, Equatable, Codable {
    public var temperature: Float = 0.8
    public var topK: Int = 40            // 0: off
    public var topP: Float = 0.95        // 1: off
    public var repetitionPenalty: Float = 1.0
    public var repetitionWindow: Int = 64
    public var seed: UInt64 = 0

    public init() {}
    public static let greedy: SamplingParameters = { var p = SamplingParameters(); p.temperature = 0; return p }()

    public var isGreedy: Bool { temperature <= 0 }

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw SamplingError.invalid("temperature must be >= 0") }
        guard topK >= 0 else { throw SamplingError.invalid("top-k must be >= 0") }
        guard topP > 0 && topP <= 1 else { throw SamplingError.invalid("top-p must be in (0, 1]") }
        guard repetitionPenalty > 0, repetitionPenalty.isFinite else { throw SamplingError.invalid("repetition penalty must be > 0") }
        guard repetitionWindow >= 0 else { throw SamplingError.invalid("repetition window must be >= 0") }
    }
}

public enum SamplingError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String { switch self { case .invalid(let w): "invalid sampling parameters: \(w)" } }
}

/// A deterministic sampler: the same seed, parameters and logits give the same tokens on every run and machine.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    /// Moves the random stream past one token chosen elsewhere (a resumed generation's earlier tokens): every
    /// non-greedy `sample` draws exactly one number, so what follows is what an unbroken run would draw.
    public mutating func skipOne() { if !parameters.isGreedy { _ = rng.nextDouble() } }

    /// Picks the next token from `logits` given the tokens so far (for the repetition penalty).
    public mutating func sample(_ logits: [Float], history: [Int]) -> Int {
        var l = logits
        let p = parameters
        if p.repetitionPenalty != 1 {
            // llama.cpp's rule: shrink positive logits, grow negative ones, once per distinct recent token.
            for t in Set(history.suffix(p.repetitionWindow)) where t >= 0 && t < l.count {
                l[t] = l[t] > 0 ? l[t] / p.repetitionPenalty : l[t] * p.repetitionPenalty
            }
        }
        if p.isGreedy { return Self.argmax(l) }

        // Candidates sorted by logit (descending, ties by id for determinism), cut by top-k.
        var cand = Array(l.indices)
        let k = p.topK > 0 ? min(p.topK, cand.count) : cand.count
        if k < cand.count {
            cand = Self.topIndices(l, k)
        } else {
            cand.sort { l[$0] != l[$1] ? l[$0] > l[$1] : $0 < $1 }
        }
        // Softmax with temperature.
        let mx = l[cand[0]]
        var probs = cand.map { expf((l[$0] - mx) / p.temperature) }
        var sum = probs.reduce(0, +)
        // Top-p: the smallest prefix whose mass reaches p.
        if p.topP < 1 {
            var acc: Float = 0, cut = probs.count
            for (i, pr) in probs.enumerated() {
                acc += pr / sum
                if acc >= p.topP { cut = i + 1; break }
            }
            probs.removeSubrange(cut...)
            cand.removeSubrange(cut...)
            sum = probs.reduce(0, +)
        }
        let r = Float(rng.nextDouble()) * sum
        var acc: Float = 0
        for (i, pr) in probs.enumerated() {
            acc += pr
            if r < acc { return cand[i] }
        }
        return cand[cand.count - 1]
    }

    public static func argmax(_ l: [Float]) -> Int {
        var best = 0
        for i in l.indices where l[i] > l[best] { best = i }
        return best
    }

    /// Indices of the k largest values, descending (ties by index).
    public static func topIndices(_ l: [Float], _ k: Int) -> [Int] {
        var heap: [Int] = []  // kept sorted descending; k is small
        heap.reserveCapacity(k + 1)
        for i in l.indices {
            if heap.count == k, let last = heap.last, !(l[i] > l[last]) { continue }
            var pos = heap.count
            while pos > 0 && l[heap[pos - 1]] < l[i] { pos -= 1 }
            heap.insert(i, at: pos)
            if heap.count > k { heap.removeLast() }
        }
        return heap
    }
}

/// SplitMix64: tiny, fast, and identical everywhere (Swift's system RNG cannot be seeded).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// When generation ends.
public struct StopConditions: Sendable, Equatable, Codable {
    public var maxTokens: Int = 128
    public var stopStrings: [String] = []
    public var stopAtEndOfGeneration = true
    public init(maxTokens: Int = 128, stopStrings: [String] = []) {
        self.maxTokens = maxTokens
        self.stopStrings = stopStrings
    }
}

public enum FinishReason: String, Sendable, Codable {
    case endOfGeneration = "eos", maxTokens = "length", stopString = "stop", cancelled, contextFull = "context"
}
