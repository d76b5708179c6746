import Foundation
@testable import RadialRouter
import RadialTestSupport
import Testing
@testable import RadialModel

/// The skip-cost labels against the independent numpy reference: probing "token t skips layer l" must give the
/// distribution the reference computes for that one skip, and the divergence the one computed from it.
@Suite struct SkipCostTests {
    let window = [3, 70, 104, 101, 260, 32, 119, 111, 114, 108, 100, 45]

    static func klFull(_ p: [Float], _ q: [Float]) -> Double {
        func logSoftmax(_ z: [Float]) -> [Double] {
            let m = Double(z.max()!), lse = m + log(z.reduce(0.0) { $0 + exp(Double($1) - m) })
            return z.map { Double($0) - lse }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        return zip(lp, lq).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    @Test(arguments: ["llama", "qwen2"])
    func denseCostsEqualTheReferenceDivergence(architecture: String) throws {
        let path = try TestSupport.writeTinyModel { $0.architecture = architecture }
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let L = model.config.layerCount, V = model.config.vocabSize
        let probe = SkipCostProbe(candidates: V, units: LayerSet([1, 2]))
        let trace = try ResidualProfiler(model: model).run(TokenWindows(windows: [window]), keepInputs: true, costs: probe)
        #expect(trace.costs.count == window.count * L)
        let dense = try TestSupport.referenceLogits(model: path, ids: window)
        for l in [1, 2] {
            for t in [0, 5, window.count - 1] {
                let skipped = try TestSupport.referenceLogits(model: path, ids: Array(window[...t]), skip: [(pos: t, layer: l)])
                let want = Self.klFull(dense[t], skipped[t])
                #expect(want > 1e-5, "a skip changes the distribution")
                let got = Double(trace.costs[t * L + l])
                #expect(abs(got - want) <= 1e-4 + 1e-3 * want, "token \(t) layer \(l): probe \(got), reference \(want)")
            }
        }
        // Layer 0 was not asked for.
        #expect(trace.costs[0] == SkipCostProbe.unmeasured)
        #expect(trace.costs.enumerated().filter { $0.offset % L != 0 }.allSatisfy { $0.element >= 0 && $0.element.isFinite })
    }

    /// A block of layers flipped together: the probe of "token t skips layers 1-2" is the reference with both skipped.
    @Test func blockCostsEqualTheReferenceDivergence() throws {
        let path = try TestSupport.writeTinyModel { $0.layers = 4 }
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let probe = SkipCostProbe(candidates: model.config.vocabSize, block: 2, units: LayerSet([1]))
        let trace = try ResidualProfiler(model: model).run(TokenWindows(windows: [window]), keepInputs: true, costs: probe)
        #expect(trace.costs.count == window.count * 2)
        let dense = try TestSupport.referenceLogits(model: path, ids: window)
        for t in [1, window.count - 1] {
            let skipped = try TestSupport.referenceLogits(model: path, ids: Array(window[...t]), skip: [(pos: t, layer: 2), (pos: t, layer: 3)])
            let want = Self.klFull(dense[t], skipped[t]), got = Double(trace.costs[t * 2 + 1])
            #expect(want > 1e-5 && abs(got - want) <= 1e-4 + 1e-3 * want, "token \(t): probe \(got), reference \(want)")
            #expect(trace.costs[t * 2] == SkipCostProbe.unmeasured)
        }
    }

    /// A probe leaves the session's K/V untouched: the dense pass after probing gives the same logits.
    @Test func probingDoesNotDisturbTheCache() throws {
        let path = try TestSupport.writeTinyModel()
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let cache = model.makeCache(initialCapacity: window.count)
        let before = try model.prefill(cache: cache, tokens: Array(window[..<8]), allLogits: true)
        var hidden = try model.head.embed(Array(window[..<8]))
        let plan = LayerSet([0, 2])
        try hidden.withUnsafeMutableBufferPointer {
            try model.shard.probe($0.baseAddress!, tokens: (0..<8).map { ShardToken(cache: cache, position: $0, layers: plan) }, from: 0)
        }
        let rest = try model.prefill(cache: cache, tokens: Array(window[8...]), startPosition: 8, allLogits: true)
        let fresh = model.makeCache(initialCapacity: window.count)
        let all = try model.prefill(cache: fresh, tokens: window, allLogits: true)
        #expect(TestSupport.maxAbsDiff(before.flatMap { $0 }, all[..<8].flatMap { $0 }) < 1e-5)
        #expect(TestSupport.maxAbsDiff(rest.flatMap { $0 }, all[8...].flatMap { $0 }) < 1e-5)
    }

    @Test func truncatedDivergenceOverTopCandidates() {
        // Over the same tokens, the truncated divergence is the full one renormalised; identical inputs cost 0.
        let p: [Float] = [3, 1, 0.5, -2], q: [Float] = [2.5, 1.2, 0.1, -1]
        #expect(abs(Double(SkipCostProbe.divergence(p, q)) - Self.klFull(p, q)) < 1e-6)
        #expect(SkipCostProbe.divergence(p, p) == 0)
        #expect(SkipCostProbe.topK([0.1, 5, -1, 3, 7][...], 3) == [4, 1, 3])
    }
}

/// On a real model the divergence over the 64 most likely tokens stands in for the full-vocabulary one: the
/// router is fitted to its ranking, so what matters is that it ranks (token, layer) skips as the full one does.
/// RADIAL_QWEN_MODEL points this at another Qwen file (the 1.5B figure in docs/ROUTING.md comes from it).
@Suite(.serialized) struct SkipCostOnQwenTests {
    @Test func topCandidateDivergenceTracksTheFullOne() throws {
        let path = try TestSupport.requireQwenModel()
        let model = try LlamaModel(path: path)
        let L = model.config.layerCount, dim = model.config.dim, V = model.config.vocabSize
        let ids = [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13, 576, 4628, 1083, 5110, 264, 14538]
        let layers = [2, L / 3, L / 2, 2 * L / 3, L - 2]
        let probe = SkipCostProbe(candidates: 64, units: LayerSet(layers))
        let trace = try ResidualProfiler(model: model).run(TokenWindows(windows: [ids]), keepInputs: true, costs: probe)
        // The full divergence: the same probes, then the whole LM head.
        let cache = model.makeCache(initialCapacity: ids.count)
        _ = try model.prefill(cache: cache, tokens: ids)
        let dense = trace.outputs.withUnsafeBufferPointer { model.head.logits($0.baseAddress!, rows: ids.count) }
        var truncated: [Float] = [], full: [Float] = []
        for l in layers {
            var h: [Float] = []
            for t in 0..<ids.count {
                let start: Int = (t * L + l) * dim
                h += trace.inputs[start..<(start + dim)]
            }
            var plan = LayerSet.all(LayerRange(0, L)); plan.remove(l)
            try h.withUnsafeMutableBufferPointer {
                try model.shard.probe($0.baseAddress!, tokens: (0..<ids.count).map { ShardToken(cache: cache, position: $0, layers: plan) }, from: l)
            }
            let skipped = h.withUnsafeBufferPointer { model.head.logits($0.baseAddress!, rows: ids.count) }
            for t in 0..<ids.count {
                full.append(SkipCostProbe.divergence(Array(dense[(t * V)..<((t + 1) * V)]), Array(skipped[(t * V)..<((t + 1) * V)])))
                truncated.append(trace.costs[t * L + l])
            }
        }
        func ranks(_ v: [Float]) -> [Float] {
            var r = [Float](repeating: 0, count: v.count)
            for (k, i) in v.indices.sorted(by: { v[$0] < v[$1] }).enumerated() { r[i] = Float(k) }
            return r
        }
        let rho = RouterTrainer.correlation(ranks(truncated), ranks(full))
        print("skip cost over 64 candidates vs the full vocabulary: Spearman \(rho) over \(full.count) (token, layer) pairs")
        #expect(rho > 0.9, "rank correlation \(rho)")
    }
}
