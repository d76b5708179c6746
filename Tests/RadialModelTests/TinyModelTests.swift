import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// The engine against the independent numpy implementation on tiny random models, and against itself across
/// batching, prefill and sharding.
@Suite struct TinyModelTests {
    let ids = [3, 70, 104, 101, 260, 32, 119, 111, 114, 108, 100, 2, 45, 200, 17, 99]

    func load(_ path: String) throws -> LlamaModel { try LlamaModel(file: try GGUFFile(path: path)) }

    func engineLogits(_ model: LlamaModel, _ ids: [Int], skip: [(pos: Int, layer: Int)] = [],
                      policy: SkippedLayerKV = .fill) throws -> [[Float]] {
        let cache = model.makeCache()
        let all = LayerSet.all(model.shard.range)
        let rows = ids.enumerated().map { i, t in
            var set = all
            for s in skip where s.pos == i { set.remove(s.layer) }
            return (cache: cache, position: i, token: t, layers: skip.isEmpty ? nil : Optional(set))
        }
        return try model.step(rows, kvPolicy: policy)
    }

    @Test(arguments: [
        ("f32 tied", GGMLType.f32, true, 2, "llama"),
        ("f32 untied, no GQA", .f32, false, 4, "llama"),
        ("f16", .f16, true, 2, "llama"),
        ("q8_0", .q8_0, true, 1, "llama"),
        ("q4_1", .q4_1, false, 2, "llama"),
        ("qwen2 f32 untied", .f32, false, 2, "qwen2"),
        ("qwen2 q8_0 tied", .q8_0, true, 1, "qwen2"),
    ])
    func matchesNumpyReference(_ name: String, _ type: GGMLType, _ tied: Bool, _ kvHeads: Int, _ arch: String) async throws {
        try await blocking {
            let path = try TestSupport.writeTinyModel {
                $0.weightType = type; $0.tiedOutput = tied; $0.kvHeads = kvHeads; $0.architecture = arch
            }
            let model = try load(path)
            let ours = try engineLogits(model, ids)
            let ref = try TestSupport.referenceLogits(model: path, ids: ids)
            #expect(ours.count == ref.count)
            for (p, (a, b)) in zip(ours, ref).enumerated() {
                let d = TestSupport.maxAbsDiff(a, b)
                #expect(d <= 1e-4, "\(name): position \(p) differs by \(d)")
            }
            // The logits must carry signal, or the comparison proves nothing.
            #expect(ours.last!.max()! - ours.last!.min()! > 1)
        }
    }

    /// `fill` and `mask` with a forced skip pattern equal the slow, obvious reference.
    @Test(arguments: [SkippedLayerKV.fill, .mask])
    func forcedSkipMatchesReference(_ policy: SkippedLayerKV) async throws {
        try await blocking {
            let path = try TestSupport.writeTinyModel()
            let model = try load(path)
            let skip = [(pos: 2, layer: 1), (pos: 5, layer: 0), (pos: 5, layer: 2), (pos: 9, layer: 1), (pos: 15, layer: 2)]
            let ours = try engineLogits(model, ids, skip: skip, policy: policy)
            let ref = try TestSupport.referenceLogits(model: path, ids: ids, skip: skip, policy: policy)
            for (p, (a, b)) in zip(ours, ref).enumerated() {
                #expect(TestSupport.maxAbsDiff(a, b) <= 1e-4, "\(policy) position \(p)")
            }
            let dense = try engineLogits(model, ids)
            #expect(TestSupport.maxAbsDiff(dense[3], ours[3]) > 1e-3, "a skip at position 2 must change position 3")
        }
    }

    /// An explicit all-layers plan is the dense model under both policies.
    @Test func fullPlanIsDense() throws {
        let model = try load(try TestSupport.writeTinyModel())
        let dense = try engineLogits(model, ids)
        for policy in SkippedLayerKV.allCases {
            let cache = model.makeCache()
            let rows = ids.enumerated().map { (cache: cache, position: $0.offset, token: $0.element, layers: Optional(LayerSet.all(model.shard.range))) }
            let planned = try model.step(rows, kvPolicy: policy)
            #expect(planned == dense)
        }
    }

    @Test func prefillThenDecodeEqualsOneAtATime() throws {
        let model = try load(try TestSupport.writeTinyModel())
        let batched = try engineLogits(model, ids)
        let cache = model.makeCache(initialCapacity: 2)  // also exercises cache growth
        // prefill the first 10 in one batch, then one token per step
        var incremental = try model.prefill(cache: cache, tokens: Array(ids.prefix(10)), allLogits: true)
        for p in 10..<ids.count {
            incremental += try model.step([(cache: cache, position: p, token: ids[p], layers: nil)])
        }
        let single = model.makeCache()
        for p in ids.indices {
            let one = try model.step([(cache: single, position: p, token: ids[p], layers: nil)])[0]
            #expect(TestSupport.maxAbsDiff(one, batched[p]) <= 1e-4, "position \(p), one at a time")
            #expect(TestSupport.maxAbsDiff(incremental[p], batched[p]) <= 1e-4, "position \(p), prefill + decode")
        }
    }

    @Test func batchOfSessionsEqualsEachAlone() throws {
        let model = try load(try TestSupport.writeTinyModel())
        let prompts = [[5, 6, 7], [100, 101, 102, 103, 104], [42], [7, 7, 7, 7]]
        // alone
        var alone: [[Float]] = []
        for p in prompts {
            let c = model.makeCache()
            _ = try model.prefill(cache: c, tokens: p)
            alone.append(try model.step([(cache: c, position: p.count, token: 9, layers: nil)])[0])
        }
        // together: prefills in one mixed batch, then one decode batch
        let caches = prompts.map { _ in model.makeCache() }
        var rows: [(cache: KVCache, position: Int, token: Int, layers: LayerSet?)] = []
        for (c, p) in zip(caches, prompts) { rows += p.enumerated().map { (cache: c, position: $0.offset, token: $0.element, layers: nil) } }
        _ = try model.step(rows)
        let together = try model.step(zip(caches, prompts).map { (cache: $0, position: $1.count, token: 9, layers: nil) })
        for i in prompts.indices {
            #expect(TestSupport.maxAbsDiff(alone[i], together[i]) <= 1e-4, "session \(i)")
        }
    }

    /// Two shards run one after the other equal the whole stack: what a pipeline of workers computes.
    @Test func shardsComposeToTheWholeModel() throws {
        let path = try TestSupport.writeTinyModel()
        let file = try GGUFFile(path: path)
        let config = try LlamaConfig(gguf: file)
        let whole = try load(path)
        let a = try LlamaShard(file: file, config: config, range: LayerRange(0, 1))
        let b = try LlamaShard(file: file, config: config, range: LayerRange(1, 3))
        #expect(b.weightBytes == 2 * a.weightBytes)
        let ca = a.makeCache(), cb = b.makeCache()
        var hidden = try whole.head.embed(ids)
        try hidden.withUnsafeMutableBufferPointer { h in
            let n = ids.count
            try a.forward(h.baseAddress!, tokens: (0..<n).map { ShardToken(cache: ca, position: $0) })
            try b.forward(h.baseAddress!, tokens: (0..<n).map { ShardToken(cache: cb, position: $0) })
        }
        let logits = hidden.withUnsafeBufferPointer { whole.head.logits($0.baseAddress!, rows: ids.count) }
        let dense = try engineLogits(whole, ids)
        let v = config.vocabSize
        for p in ids.indices {
            #expect(TestSupport.maxAbsDiff(Array(logits[p * v..<(p + 1) * v]), dense[p]) <= 1e-5)
        }
    }

    @Test func badInputsAreErrors() throws {
        let path = try TestSupport.writeTinyModel { $0.contextLength = 8 }
        let model = try load(path)
        #expect(throws: ModelError.tokenOutOfVocabulary(100_000, vocab: model.config.vocabSize)) {
            try model.prefill(cache: model.makeCache(), tokens: [1, 100_000])
        }
        #expect(throws: ModelError.contextOverflow(position: 8, limit: 8)) {
            try model.prefill(cache: model.makeCache(), tokens: Array(repeating: 5, count: 9))
        }
        let file = try GGUFFile(path: path)
        #expect(throws: ModelError.layerRangeOutOfModel(LayerRange(2, 5), layers: 3)) {
            try LlamaShard(file: file, config: model.config, range: LayerRange(2, 5))
        }
        let other = try LlamaShard(file: file, config: model.config, range: LayerRange(0, 1))
        #expect(throws: ModelError.self) {
            var h = [Float](repeating: 0, count: model.config.dim)
            try h.withUnsafeMutableBufferPointer {
                try model.shard.forward($0.baseAddress!, tokens: [ShardToken(cache: other.makeCache(), position: 0)])
            }
        }
    }

    @Test func missingTensorAndWrongShapeAreNamed() throws {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        for (k, v) in [("embedding_length", 8), ("block_count", 1), ("feed_forward_length", 16), ("attention.head_count", 2)] {
            w.set("llama." + k, .uint32(UInt32(v)))
        }
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.addTensor("token_embd.weight", dimensions: [8, 10], values: Array(repeating: 0, count: 80))
        w.addTensor("output_norm.weight", dimensions: [7], values: Array(repeating: 1, count: 7))
        let path = try TestSupport.tempDir() + "/broken.gguf"
        try w.write(to: path)
        #expect(throws: GGUFError.unexpectedShape(tensor: "output_norm.weight", expected: [8], found: [7])) {
            try LlamaModel(file: try GGUFFile(path: path))
        }
        var w2 = GGUFWriter()
        w2.set("general.architecture", .string("gpt-neox"))
        let p2 = try TestSupport.tempDir() + "/arch.gguf"
        try w2.write(to: p2)
        #expect(throws: ModelError.unsupportedArchitecture("gpt-neox")) { try LlamaConfig(gguf: try GGUFFile(path: p2)) }
    }
}
