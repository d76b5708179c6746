import Foundation
import RadialRouter
import RadialTestSupport
import Testing
@testable import RadialModel

/// The evaluator behind every "router against static pruning" figure, against the independent numpy reference
/// and hand-checked cases.
@Suite struct EvaluatorTests {
    let window = [3, 70, 104, 101, 260, 32, 119, 111, 114, 108, 100, 45, 200, 17, 99, 7]

    /// exp(mean negative log-likelihood of each next token) from the reference's logits.
    func referencePerplexity(_ path: String, skip: [(pos: Int, layer: Int)] = []) throws -> Double {
        let logits = try TestSupport.referenceLogits(model: path, ids: window, skip: skip)
        var nll = 0.0
        for i in 0..<(window.count - 1) {
            let row = logits[i].map(Double.init)
            let mx = row.max()!
            let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
            nll += lse - row[window[i + 1]]
        }
        return exp(nll / Double(window.count - 1))
    }

    @Test func perplexityDenseAndStaticPruningEqualTheReference() throws {
        let path = try TestSupport.writeTinyModel()
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let eval = Evaluator(model: model, workers: 3)
        let windows = TokenWindows(windows: [window])
        let dense = try eval.perplexity(windows, mode: .dense)
        let want = try referencePerplexity(path)
        #expect(abs(dense.perplexity - want) / want < 1e-4, "dense \(dense.perplexity) vs reference \(want)")
        #expect(dense.runs.allSatisfy { $0.count == 3 })
        // Static pruning of layer 1: every position skips it (K/V filled), as the reference does.
        let pruned = try eval.perplexity(windows, mode: .staticPruning(skip: [1]))
        let wantPruned = try referencePerplexity(path, skip: window.indices.map { (pos: $0, layer: 1) })
        #expect(abs(pruned.perplexity - wantPruned) / wantPruned < 1e-4, "pruned \(pruned.perplexity) vs reference \(wantPruned)")
        #expect(abs(pruned.perplexity - dense.perplexity) > 1e-3, "removing a layer changes perplexity")
    }

    @Test func oracleAtThresholdZeroIsDense() throws {
        let path = try TestSupport.writeTinyModel()
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let eval = Evaluator(model: model, workers: 3)
        let windows = TokenWindows(windows: [window])
        let dense = try eval.perplexity(windows, mode: .dense)
        let oracle = try eval.perplexity(windows, mode: .oracle(threshold: 0, alwaysRun: LayerSet()))
        #expect(abs(oracle.perplexity - dense.perplexity) / dense.perplexity < 1e-5)
        #expect(eval.point(name: "o", perplexity: oracle.perplexity, runs: oracle.runs).skipRate == 0)
        // A threshold above every ratio skips everything not kept.
        let all = try eval.perplexity(windows, mode: .oracle(threshold: 1e9, alwaysRun: LayerSet([0])))
        #expect(eval.point(name: "o", perplexity: all.perplexity, runs: all.runs).layersPerToken == 1)
    }

    /// Depth bookkeeping, checked by hand: 3 layers over 3 workers (one each).
    @Test func skipRateLayersAndVisitsPerToken() throws {
        let path = try TestSupport.writeTinyModel()
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let eval = Evaluator(model: model, workers: 3)
        let runs = [LayerSet([0, 1, 2]), LayerSet([0, 2]), LayerSet([2]), LayerSet()]
        let p = eval.point(name: "hand", perplexity: 1, runs: runs)
        #expect(p.layersPerToken == 6.0 / 4)
        #expect(abs(p.skipRate - (1 - 6.0 / 12)) < 1e-12)
        #expect(p.visitsPerToken == 6.0 / 4)  // a worker per layer run
        let two = Evaluator(model: model, workers: 1).point(name: "hand", perplexity: 1, runs: runs)
        #expect(two.visitsPerToken == 3.0 / 4)  // one worker holds all: visited unless nothing ran
        #expect(Evaluator.agreement([[1, 2, 3], [4, 5]], [[1, 9, 3], [4, 5]]) == 4.0 / 5)
        // Static pruning at 2.25 removed layers: a quarter of the way from 2 to 3.
        let ppl = [0: 10.0, 1: 12.0, 2: 20.0, 3: 40.0]
        #expect(Evaluator.staticPerplexity(at: 2.25) { ppl[$0]! } == 25.0)
        #expect(Evaluator.staticPerplexity(at: 1) { ppl[$0]! } == 12.0)
    }
}
