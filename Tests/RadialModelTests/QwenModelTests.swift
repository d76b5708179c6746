import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// Qwen2.5-Coder-0.5B-Instruct (qwen2: biases, RoPE over halves; Q5_0, Q8_0, Q4_K and Q6_K tensors) against
/// Resources/qwen05_reference.json, recorded from the independent numpy forward pass by
/// `scripts/record_reference.py`.
@Suite(.serialized) struct QwenModelTests {
    struct Fixture: Decodable {
        struct Case: Decodable { let ids: [Int]; let ref_greedy: [Int]; let ref_last_top5: [[Double]] }
        let model_sha256: String
        let cases: [Case]
    }

    static let model: Result<(LlamaModel, Tokenizer), Error> = Result {
        let file = try GGUFFile(path: try TestSupport.requireQwenModel())
        return (try LlamaModel(file: file), try Tokenizer(gguf: file))
    }

    func fixture() throws -> Fixture {
        guard let url = Bundle.module.url(forResource: "Resources/qwen05_reference", withExtension: "json") else {
            throw TestFailure("Resources/qwen05_reference.json is missing from the test bundle")
        }
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    @Test func configAndTokenizerAreQwen2() throws {
        let (model, tok) = try Self.model.get()
        #expect(model.config.architecture == "qwen2")
        #expect(model.config.ropeStyle == .halves && model.config.qkvBias)
        #expect(model.config.layerCount == 24 && model.config.dim == 896)
        #expect(tok.preTokenizer == .qwen2)
        #expect(!tok.addBOS)
        #expect(tok.isEndOfGeneration(151645))  // <|im_end|>
        // Digits one by one; ChatML's markers are single tokens.
        #expect(tok.encode("2024") == [17, 15, 17, 19])
        #expect(tok.encode("<|im_start|>user\n").first == 151644)
        #expect(ChatTemplate(tokenizer: tok) != nil)
    }

    @Test func top5LogitsAndGreedyTokensMatchReference() async throws {
        try await blocking {
            let (model, tok) = try Self.model.get()
            for c in try fixture().cases {
                let logits = try model.prefill(cache: model.makeCache(), tokens: c.ids)[0]
                for pair in c.ref_last_top5 {
                    let id = Int(pair[0]), want = Float(pair[1])
                    #expect(abs(logits[id] - want) <= 2e-2, "logit of \(id) is \(logits[id]), reference \(want)")
                }
                #expect(Sampler.topIndices(logits, 5) == c.ref_last_top5.map { Int($0[0]) })
                let gen = LocalGenerator(model: model, tokenizer: tok)
                var stop = StopConditions(maxTokens: c.ref_greedy.count)
                stop.stopAtEndOfGeneration = false
                let out = try gen.generate(promptIDs: c.ids, sampling: .greedy, stop: stop)
                #expect(out.generatedIDs == c.ref_greedy, "greedy \(out.generatedIDs) vs reference \(c.ref_greedy)")
            }
        }
    }

    /// Token ids equal llama.cpp's (llama-cpp-python 0.3.36) on 42 texts: code, whitespace runs, digits, non-Latin
    /// scripts, special tokens (recorded by `scripts/record_tokenizer_ids.py --model <qwen> --out ...`).
    @Test func tokenIDsEqualLlamaCpp() throws {
        struct Case: Decodable { let text: String; let ids_special: [Int]; let ids_plain: [Int] }
        struct Cases: Decodable { let cases: [Case] }
        guard let url = Bundle.module.url(forResource: "Resources/tokenizer_cases_qwen", withExtension: "json") else {
            throw TestFailure("Resources/tokenizer_cases_qwen.json is missing from the test bundle")
        }
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: url)).cases
        #expect(cases.count >= 40)
        let (_, tok) = try Self.model.get()
        for c in cases {
            #expect(tok.encode(c.text, parseSpecial: true) == c.ids_special, "special: \(c.text.debugDescription)")
            #expect(tok.encode(c.text, parseSpecial: false) == c.ids_plain, "plain: \(c.text.debugDescription)")
            #expect(tok.decode(c.ids_plain) == c.text, "round trip: \(c.text.debugDescription)")
        }
    }
}
