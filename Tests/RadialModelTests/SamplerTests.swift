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
