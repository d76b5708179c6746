import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel
@testable import RadialRouter

/// Run maps (`train-router --bypass`): the ridge fit, the Q8_0 map it becomes, and its place in the router file.
@Suite struct RunMapTests {
    /// Pseudo-random states and a known affine change: the fit finds the change's coefficients, and the quantised
    /// map applies them to within Q8_0's error.
    @Test func fitRecoversAKnownMapAndTheMapAppliesIt() throws {
        let dim = 32, n = 600, f = dim + 1
        var rng = RadialModel.SplitMix64(seed: 5)
        func uniform() -> Float { Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }
        let truth = (0..<(f * dim)).map { _ in uniform() * 0.3 }
        let entering = (0..<(n * dim)).map { _ in uniform() * 3 }
        var leaving = entering
        for t in 0..<n {
            let x = Array(entering[(t * dim)..<((t + 1) * dim)])
            let scale = 1 / (x.reduce(0) { $0 + $1 * $1 } / Float(dim) + 1e-6).squareRoot()
            for o in 0..<dim {
                var y = truth[dim * dim + o]
                for i in 0..<dim { y += x[i] * scale * truth[i * dim + o] }
                leaving[t * dim + o] += y
            }
        }
        let fitted = try RunMapFit.fit(entering: entering, leaving: leaving, tokens: n, dim: dim, eps: 1e-6, ridge: 1e-7)
        let worst = zip(fitted, truth).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-3, "coefficients recovered to \(worst)")

        let map = try RunMap(layers: LayerRange(1, 3), dim: dim, eps: 1e-6, coefficients: fitted)
        var rows = Array(entering.prefix(4 * dim))
        rows.withUnsafeMutableBufferPointer { map.apply($0.baseAddress!, rows: 4, activations: .f32) }
        let error = zip(rows, leaving.prefix(4 * dim)).map { abs($0 - $1) }.max()!
        let change = zip(entering.prefix(4 * dim), leaving.prefix(4 * dim)).map { abs($0 - $1) }.max()!
        #expect(error < 0.02 * change, "the Q8_0 map's error \(error) against a change of up to \(change)")
        // One row alone gives the bits it gets in a batch (the coordinator applies maps row by row).
        var one = Array(entering.prefix(dim))
        one.withUnsafeMutableBufferPointer { map.apply($0.baseAddress!, rows: 1, activations: .q8) }
        var four = Array(entering.prefix(4 * dim))
        four.withUnsafeMutableBufferPointer { map.apply($0.baseAddress!, rows: 4, activations: .q8) }
        #expect(one == Array(four.prefix(dim)))
    }

    @Test func badInputsAreErrors() throws {
        #expect(throws: (any Error).self) { try RunMap(layers: LayerRange(1, 3), dim: 32, eps: 1e-6, coefficients: [1, 2]) }
        #expect(throws: (any Error).self) { try RunMap(layers: LayerRange(1, 3), dim: 20, eps: 1e-6, coefficients: Array(repeating: 0, count: 21 * 20)) }
        // Every state the same: the normal equations are singular only without the ridge term, which keeps them solvable.
        let same = Array(repeating: Float(1), count: 10 * 32)
        let fitted = try RunMapFit.fit(entering: same, leaving: same, tokens: 10, dim: 32, eps: 1e-6)
        #expect(fitted.allSatisfy { $0.isFinite && abs($0) < 1e-4 }, "no change to learn: a zero map")
    }

    /// Distilled with `bypass`: the map is fitted on the dense states, kept in the file (and in the fingerprint), and
    /// a token skipping the run leaves it closer to where the run would have taken it than one that keeps its state.
    @Test func distilledMapsRoundTripAndStandInForTheRun() async throws {
        let path = try TestSupport.writeTinyModel { $0.layers = 6 }
        let (model, router) = try await blocking {
            try TinyRouter.distil(modelPath: path) { $0.runs = [LayerRange(2, 4)]; $0.labels = .cost; $0.bypass = true }
        }
        #expect(router.maps.map(\.layers) == [LayerRange(2, 4)])
        let file = try TestPaths.tempDir() + "/mapped.rdrt"
        try router.write(to: file)
        let copy = try Router(path: file)
        #expect(copy.fingerprint == router.fingerprint && copy.mapCoefficients == router.mapCoefficients && copy.header.runMaps == router.header.runMaps)
        var header = router.header
        header.runMaps = nil
        #expect(Router(network: router.network, header: header).fingerprint != router.fingerprint, "the map is part of the router's identity")
        // A truncated map is refused.
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(throws: RouterError.self) { try Router(data: data.dropLast(8)) }
        var wrong = router
        #expect(throws: RouterError.self) { try wrong.addMap(layers: LayerRange(1, 3), eps: 1e-6, coefficients: router.mapCoefficients[0]) }

        // Skip the run for every token of the training windows (TinyRouter's; the first 7 are fitted on): through the
        // map, against keeping the state, against running it. Layers 4-5 are left out everywhere, so the states
        // leaving the run (or its stand-in) are compared directly; in-sample, a ridge fit beats the zero map.
        let dim = model.config.dim
        func states(_ ids: [Int], _ plan: LayerSet, maps: [RunMap]) throws -> [Float] {
            var h = try model.head.embed(ids)
            let cache = model.makeCache()
            try h.withUnsafeMutableBufferPointer {
                _ = try model.shard.forward($0.baseAddress!, tokens: ids.indices.map { ShardToken(cache: cache, position: $0, layers: plan) }, maps: maps)
            }
            return h
        }
        var kept: Float = 0, bridged: Float = 0
        for w in 0..<7 {
            let ids = (0..<32).map { 3 + ($0 * 31 + w * 17 + $0 * $0) % 250 }
            let dense = try states(ids, LayerSet([0, 1, 2, 3]), maps: [])
            func distance(_ a: [Float]) -> Float { zip(a, dense).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Float(ids.count * dim) }
            kept += distance(try states(ids, LayerSet([0, 1]), maps: []))
            bridged += distance(try states(ids, LayerSet([0, 1]), maps: router.maps))
        }
        #expect(bridged < 0.8 * kept, "the map stands in for the run: \(bridged) vs \(kept)")

        // `radial eval --static 2,3` with a mapped router also measures the removal through the map.
        let eval = Evaluator(model: model, workers: 3)
        let windows = TokenWindows(windows: [(0..<32).map { 3 + ($0 * 13) % 250 }])
        let removed = try eval.perplexity(windows, mode: .staticPruning(skip: [2, 3]))
        let mapped = try eval.perplexity(windows, mode: .staticPruning(skip: [2, 3], maps: router.maps))
        #expect(mapped.runs == removed.runs && mapped.runs.allSatisfy { !$0.contains(2) && !$0.contains(3) && $0.contains(4) })
        #expect(mapped.perplexity != removed.perplexity)
    }
}
