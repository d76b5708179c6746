import Foundation
import Testing
@testable import RadialModel

@Suite struct SamplerTests {
    let logits: [Float] = [0.1, 2.0, -1.0, 1.9, 0.5, 3.0, 2.9, -3.0]

    @Test func greedyIsArgmax() {
        var s = Sampler(.greedy)
        #expect(s.sample(logits, history: []) == 5)
    }

    @Test func sameSeedSameTokens() {
        var p = SamplingParameters()
        p.temperature = 1.0; p.topK = 0; p.topP = 1; p.seed = 1234
        var a = Sampler(p), b = Sampler(p)
        let ra = (0..<200).map { _ in a.sample(logits, history: []) }
        let rb = (0..<200).map { _ in b.sample(logits, history: []) }
        #expect(ra == rb)
        #expect(Set(ra).count > 3, "temperature 1 should visit several tokens")
        p.seed = 99
        var c = Sampler(p)
        #expect((0..<200).map { _ in c.sample(logits, history: []) } != ra)
    }

    @Test func topKAndTopPRestrictCandidates() {
        var p = SamplingParameters()
        p.temperature = 5; p.topK = 2; p.topP = 1
        var s = Sampler(p)
        #expect(Set((0..<300).map { _ in s.sample(logits, history: []) }) == [5, 6])
        p.topK = 0; p.topP = 0.01
        var t = Sampler(p)
        #expect(Set((0..<100).map { _ in t.sample(logits, history: []) }) == [5])
    }

    /// Over many seeded draws each token's frequency matches softmax(logits / T), renormalised over the top-p
    /// nucleus: a sampler that ignored the temperature, or drew uniformly inside the nucleus, fails.
    @Test func drawsFollowTheTemperedDistributionInsideTopP() {
        let l: [Float] = [2.0, 1.0, 0.5, 0.0, -1.0, -3.0]
        let n = 20_000
        for (t, topP) in [(Float(0.5), Float(1)), (1, 1), (2, 1), (1, 0.8)] {
            var p = SamplingParameters()
            p.temperature = t; p.topK = 0; p.topP = topP; p.seed = 4242
            var s = Sampler(p)
            var counts = [Int](repeating: 0, count: l.count)
            for _ in 0..<n { counts[s.sample(l, history: [])] += 1 }
            // The expected distribution, computed here in Double.
            var probs = l.map { exp(Double($0 / t)) }
            let total = probs.reduce(0, +)
            probs = probs.map { $0 / total }
            if topP < 1 {  // logits are sorted: the nucleus is the shortest prefix reaching topP
                var acc = 0.0, cut = probs.count
                for (i, q) in probs.enumerated() { acc += q; if acc >= Double(topP) { cut = i + 1; break } }
                let kept = probs[..<cut].reduce(0, +)
                probs = probs.enumerated().map { $0.offset < cut ? $0.element / kept : 0 }
            }
            for (i, q) in probs.enumerated() {
                let f = Double(counts[i]) / Double(n)
                let tolerance = 4 * (q * (1 - q) / Double(n)).squareRoot() + 0.002
                #expect(abs(f - q) <= tolerance, "T=\(t) top-p=\(topP): token \(i) drawn \(f), expected \(q)")
            }
        }
    }

    @Test func repetitionPenaltyDemotesRecentTokens() {
        var p = SamplingParameters.greedy
        p.repetitionPenalty = 2
        var s = Sampler(p)
        #expect(s.sample(logits, history: [5]) == 6)
    }

    @Test func invalidParametersAreRejected() {
        var p = SamplingParameters(); p.topP = 0
        #expect(throws: SamplingError.self) { try p.validate() }
        p = SamplingParameters(); p.temperature = -1
        #expect(throws: SamplingError.self) { try p.validate() }
    }

    @Test func stopStringsHoldBackAndCut() {
        var m = StopStringMatcher(["STOP", "\n\n"])
        var shown = ""
        for piece in ["Hel", "lo S", "T", "OR", "Y S", "TO", "P more"] {
            let (r, stopped) = m.push(piece)
            shown += r
            if stopped { break }
        }
        #expect(shown == "Hello STORY ")
        #expect(m.fullText == "Hello STORY ")
        var n = StopStringMatcher([])
        #expect(n.push("abc").release == "abc")
    }
}
