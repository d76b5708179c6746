import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// SmolLM2-135M against ../shared/fixtures/smollm2_reference.json (an independent fp32 numpy forward pass),
/// copied into Resources.
@Suite(.serialized) struct RealModelTests {
    struct Fixture: Decodable {
        struct Case: Decodable { let prompt: String; let ids: [Int]; let ref_greedy16: [Int]; let ref_last_top5: [[Double]] }
        let cases: [Case]
    }

    static let model: Result<(LlamaModel, Tokenizer), Error> = Result {
        let file = try GGUFFile(path: try TestSupport.requireRealModel())
        return (try LlamaModel(file: file), try Tokenizer(gguf: file))
    }

    func fixture() throws -> Fixture {
        let url = Bundle.module.url(forResource: "Resources/smollm2_reference", withExtension: "json")!
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    @Test func top5LogitsAndGreedyTokensMatchReference() async throws {
        try await blocking {
            let (model, tok) = try Self.model.get()
            for c in try fixture().cases {
                #expect(tok.encode(c.prompt) == c.ids)
                let logits = try model.prefill(cache: model.makeCache(), tokens: c.ids)[0]
                for pair in c.ref_last_top5 {
                    let id = Int(pair[0]), want = Float(pair[1])
                    #expect(abs(logits[id] - want) <= 1e-2, "\(c.prompt.debugDescription): logit of \(id) is \(logits[id]), reference \(want)")
                }
                #expect(Sampler.topIndices(logits, 5) == c.ref_last_top5.map { Int($0[0]) })
                let gen = LocalGenerator(model: model, tokenizer: tok)
                var stop = StopConditions(maxTokens: 16)
                stop.stopAtEndOfGeneration = false
                let out = try gen.generate(promptIDs: c.ids, sampling: .greedy, stop: stop)
                #expect(Array(out.generatedIDs.prefix(8)) == Array(c.ref_greedy16.prefix(8)))
                #expect(out.generatedIDs == c.ref_greedy16, "all 16 (a late near-tie may flip)")
            }
        }
    }

    @Test func prefillEqualsTokenByToken() async throws {
        try await blocking {
            let (model, tok) = try Self.model.get()
            let ids = tok.encode("The quick brown fox jumps over the lazy dog, and then")
            let batched = try model.prefill(cache: model.makeCache(), tokens: ids, allLogits: true)
            let cache = model.makeCache()
            var worst: Float = 0
            for p in ids.indices {
                let one = try model.step([(cache: cache, position: p, token: ids[p], layers: nil)])[0]
                worst = max(worst, TestSupport.maxAbsDiff(one, batched[p]))
            }
            // Quantised kernels up to Linear.quantizedMaxRows rows sum every row in the same order: bit for bit.
            #expect(worst == 0, "largest logit difference \(worst)")
        }
    }

    @Test func batchOfSessionsEqualsEachAlone() async throws {
        try await blocking {
            let (model, tok) = try Self.model.get()
            let prompts = ["Hello", "The capital of France is", "def f(x):", "Once upon a time"].map { tok.encode($0) }
            var alone: [[Float]] = []
            for p in prompts {
                let c = model.makeCache()
                let first = Sampler.argmax(try model.prefill(cache: c, tokens: p)[0])
                alone.append(try model.step([(cache: c, position: p.count, token: first, layers: nil)])[0])
            }
            let caches = prompts.map { _ in model.makeCache() }
            var firsts: [Int] = []
            for (c, p) in zip(caches, prompts) { firsts.append(Sampler.argmax(try model.prefill(cache: c, tokens: p)[0])) }
            let together = try model.step(prompts.indices.map { (cache: caches[$0], position: prompts[$0].count, token: firsts[$0], layers: nil) })
            for i in prompts.indices {
                let d = TestSupport.maxAbsDiff(alone[i], together[i])
                #expect(d == 0, "session \(i) differs by \(d) (batched rows must not change a row's arithmetic)")
            }
        }
    }
}
