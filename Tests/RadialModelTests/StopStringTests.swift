import Foundation
import Testing
@testable import RadialModel

/// Stop strings: the matcher against a plain search, and a generation with a stop string ending every other way.
@Suite struct StopStringTests {
    /// What the matcher must produce: after each piece, search the text so far for every stop string; at the first
    /// piece where one occurs, the shown text is everything before the earliest occurrence.
    static func reference(_ pieces: [String], _ stops: [String]) -> (shown: String, stopped: Bool) {
        var text: [Unicode.Scalar] = []
        let patterns = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
        for piece in pieces {
            text += piece.unicodeScalars
            var cut: Int?
            for p in patterns where p.count <= text.count {
                for start in 0...(text.count - p.count) where text[start..<start + p.count].elementsEqual(p) {
                    cut = min(cut ?? start, start)
                    break
                }
            }
            if let cut { return (String(String.UnicodeScalarView(text[..<cut])), true) }
        }
        return (String(String.UnicodeScalarView(text)), false)
    }

    @Test func randomTextsStopsAndChunkingsMatchAPlainSearch() {
        var rng = SplitMix64(seed: 7)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        // A small alphabet makes overlaps, repeats and partial matches common; "é" and "🙂" are multi-byte.
        let alphabet: [String] = ["a", "b", "c", "ab", " ", "\n", "é", "🙂"]
        for round in 0..<3000 {
            let text = (0..<pick(40)).map { _ in alphabet[pick(alphabet.count)] }.joined()
            let stops = (0..<pick(4)).map { _ in (0..<pick(4)).map { _ in alphabet[pick(alphabet.count)] }.joined() }
            // Cut the text into random pieces, empty ones included (a token can decode to nothing yet).
            let scalars = Array(text.unicodeScalars)
            var pieces: [String] = [], i = 0
            while i < scalars.count {
                let n = pick(5)
                let j = min(scalars.count, i + n)
                pieces.append(String(String.UnicodeScalarView(scalars[i..<j])))
                i = j
            }
            var m = StopStringMatcher(stops)
            var shown = "", stopped = false
            for piece in pieces {
                let r = m.push(piece)
                shown += r.release
                if r.stopped { stopped = true; break }
                // What is shown can never be taken back: it is a prefix of the final text.
                #expect(Self.reference(pieces, stops).shown.hasPrefix(shown), "round \(round)")
            }
            if !stopped { shown += m.push("").release + m.flush() }
            let want = Self.reference(pieces, stops)
            #expect(shown == want.shown && stopped == want.stopped,
                    "round \(round): text \(text.debugDescription) pieces \(pieces) stops \(stops)")
            #expect(m.fullText == want.shown)
        }
    }

    @Test func emptyPushesAfterEverythingWasReleased() {
        var m = StopStringMatcher(["zzq"])
        #expect(m.push("hello").release == "hello")
        #expect(m.push("").release == "")
        #expect(m.push("").stopped == false)
        #expect(m.flush() == "")
    }

    // One tiny tokenizer: ids 0-2 are specials (2 = end of generation), byte b is id 3 + b.
    static let tokenizer: Tokenizer = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("radial-stop-\(UUID().uuidString).gguf").path
        try! TinyModelSpec().write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try! Tokenizer(gguf: try! GGUFFile(path: path))
    }()

    static func logits(for id: Int) -> [Float] {
        var l = [Float](repeating: 0, count: tokenizer.vocabSize)
        l[id] = 10
        return l
    }

    /// Feeds the tokens of `text` (one byte each), then `end` if given; returns the shown text and the reason.
    static func generate(_ text: String, then end: Int? = nil, maxTokens: Int = 100, stops: [String],
                         cancelAfter: Int? = nil) throws -> (String, FinishReason?) {
        var state = try GenerationState(promptIDs: [3], sampling: .greedy,
                                        stop: StopConditions(maxTokens: maxTokens, stopStrings: stops), contextLength: 256)
        var shown = ""
        let ids = Array(text.utf8).map { 3 + Int($0) } + (end.map { [$0] } ?? [])
        for (n, id) in ids.enumerated() {
            if let c = cancelAfter, n == c { shown += state.finish(.cancelled); break }
            let step = state.accept(logits: logits(for: id), tokenizer: tokenizer)
            shown += step.text
            if step.feed == nil { break }
        }
        return (shown, state.finishReason)
    }

    @Test func generationEndingByLengthWithAStopString() throws {
        let (text, reason) = try Self.generate("hello world", maxTokens: 5, stops: ["zzq"])
        #expect(text == "hello")
        #expect(reason == .maxTokens)
        // Held-back text is released at the end: "zz" could have begun "zzq".
        let (held, r2) = try Self.generate("abzz", maxTokens: 4, stops: ["zzq"])
        #expect(held == "abzz")
        #expect(r2 == .maxTokens)
    }

    @Test func generationEndingAtEndOfGenerationWithAStopString() throws {
        let (text, reason) = try Self.generate("hi z", then: 2, stops: ["zzq"])
        #expect(text == "hi z")
        #expect(reason == .endOfGeneration)
    }

    @Test func generationCancelledWithAStopString() throws {
        let (text, reason) = try Self.generate("hello zz", stops: ["zzq"], cancelAfter: 7)
        #expect(text == "hello z")
        #expect(reason == .cancelled)
        let (all, r2) = try Self.generate("hello there", stops: ["zzq"], cancelAfter: 5)
        #expect(all == "hello")
        #expect(r2 == .cancelled)
    }

    @Test func generationStoppedByTheStopString() throws {
        let (text, reason) = try Self.generate("one, two. three", stops: ["two", "."])
        #expect(text == "one, ")
        #expect(reason == .stopString)
    }

    /// A generation resumed after its first tokens (a client reconnecting) goes on exactly as the unbroken one:
    /// seeded sampling draws the same numbers, and the text is the same.
    @Test func aResumedGenerationContinuesLikeAnUnbrokenOne() throws {
        var sampling = SamplingParameters()
        sampling.temperature = 1.2
        sampling.seed = 99
        // Logits that favour a few printable bytes, so the draws matter.
        var logits = [Float](repeating: -5, count: Self.tokenizer.vocabSize)
        for b in [97, 98, 99, 32, 100] { logits[3 + b] = Float(b % 7) / 3 }
        let stop = StopConditions(maxTokens: 40, stopStrings: ["zzz"])
        var whole = try GenerationState(promptIDs: [3], sampling: sampling, stop: stop, contextLength: 256)
        var text = ""
        while !whole.isFinished { text += whole.accept(logits: logits, tokenizer: Self.tokenizer).text }
        for cut in [1, 7, 20] {
            var resumed = try GenerationState(promptIDs: [3], sampling: sampling, stop: stop, contextLength: 256)
            try resumed.resume(after: Array(whole.generated.prefix(cut)), tokenizer: Self.tokenizer)
            var rest = ""
            while !resumed.isFinished { rest += resumed.accept(logits: logits, tokenizer: Self.tokenizer).text }
            #expect(resumed.generated == whole.generated, "cut at \(cut)")
            #expect(resumed.text == whole.text)
        }
        var ended = try GenerationState(promptIDs: [3], sampling: sampling, stop: stop, contextLength: 256)
        #expect(throws: ModelError.self) { try ended.resume(after: [100, 2], tokenizer: Self.tokenizer) }
    }
}
