import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel
@testable import RadialRouter

/// Router training, its file, and routed execution against the dense model and the numpy reference.
@Suite struct RouterTests {
    static let ids = [3, 70, 104, 101, 260, 32, 119, 111, 114, 108, 100, 2, 45, 200, 17, 99, 5, 66, 140, 22]

    /// A tiny model and a router distilled from it on pseudo-random token windows (seconds, not minutes).
    static func tinyRouter(layers: Int = 4) throws -> (path: String, model: LlamaModel, router: Router) {
        let path = try TestSupport.writeTinyModel { $0.layers = layers }
        let (model, router) = try TinyRouter.distil(modelPath: path)
        return (path, model, router)
    }

    /// A policy that skips a fair share of layers on this model (none always run).
    static func skippingPolicy(_ router: Router, rate: Double = 0.3) throws -> RoutingPolicy {
        RoutingPolicy(threshold: try router.threshold(forSkipRate: rate, alwaysRun: LayerSet()), alwaysRun: LayerSet(),
                      modelLayers: router.header.modelLayers)
    }

    func routedStep(_ model: LlamaModel, chooser: (any LayerChooser)?, policy: SkippedLayerKV) throws -> ([[Float]], [LayerSet]) {
        let cache = model.makeCache()
        let rows = Self.ids.enumerated().map { (cache: cache, position: $0.offset, token: $0.element, layers: LayerSet?.none) }
        let (logits, ran) = try model.stepTracing(rows, kvPolicy: policy, chooser: chooser)
        return (logits, ran)
    }

    @Test func fileRoundTrip() async throws {
        try await blocking {
            let (_, model, router) = try Self.tinyRouter()
            let path = try TestSupport.tempDir() + "/r.rdrt"
            try router.write(to: path)
            let back = try Router(path: path)
            #expect(back.fingerprint == router.fingerprint)
            #expect(back.network.w1 == router.network.w1 && back.network.w1Layer == router.network.w1Layer)
            #expect(back.network.b1 == router.network.b1 && back.network.w2 == router.network.w2 && back.network.b2 == router.network.b2)
            #expect(back.header.calibration == router.header.calibration)
            #expect(back.header.modelFingerprint == router.header.modelFingerprint)
            let h = try model.head.embed([70])
            let a = h.withUnsafeBufferPointer { router.network.scores($0.baseAddress!, layers: 0..<4) }
            let b = h.withUnsafeBufferPointer { back.network.scores($0.baseAddress!, layers: 0..<4) }
            #expect(a == b)
            #expect(a.allSatisfy { $0 > 0 && $0 < 1 })
        }
    }

    @Test func wrongModelAndBrokenFilesAreErrors() async throws {
        try await blocking {
            let (_, model, router) = try Self.tinyRouter()
            let other = try GGUFFile(path: try TestSupport.writeTinyModel { $0.layers = 4; $0.seed = 7 })
            #expect(throws: RouterError.self) {
                try router.check(modelFingerprint: other.fingerprint, layers: 4, hiddenSize: model.config.dim)
            }
            do {
                try router.check(modelFingerprint: other.fingerprint, layers: 4, hiddenSize: model.config.dim)
            } catch let e as RouterError {
                #expect(e.description.contains("another model"))
            }
            try router.check(modelFingerprint: router.header.modelFingerprint, layers: 4, hiddenSize: model.config.dim)

            let dir = try TestSupport.tempDir()
            try router.write(to: dir + "/good.rdrt")
            let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/good.rdrt"))
            let broken: [(String, Data)] = [
                ("bad magic", Data("XXXX".utf8) + good.dropFirst(4)),
                ("truncated weights", good.dropLast(12)),
                ("extra bytes", good + Data([1, 2, 3, 4])),
                ("truncated header", good.prefix(40)),
                ("empty", Data()),
            ]
            for (name, data) in broken {
                do {
                    _ = try Router(data: data, path: name)
                    Issue.record("\(name) loaded")
                } catch let e as RouterError {
                    if case .malformed = e {} else { Issue.record("\(name): \(e)") }
                }
            }
        }
    }

    @Test(arguments: [SkippedLayerKV.fill, .mask])
    func thresholdZeroIsExactlyDense(_ policy: SkippedLayerKV) async throws {
        try await blocking {
            let (_, model, router) = try Self.tinyRouter()
            let off = RouterChooser(router: router, policy: RoutingPolicy(threshold: 0, alwaysRun: LayerSet(), modelLayers: 4))
            let (dense, _) = try routedStep(model, chooser: nil, policy: policy)
            let (routed, ran) = try routedStep(model, chooser: off, policy: policy)
            #expect(routed == dense, "bit for bit")
            #expect(ran.allSatisfy { $0.count == 4 })
        }
    }

    /// What the router chose, replayed as a forced skip pattern through the slow, obvious numpy reference.
    @Test(arguments: [SkippedLayerKV.fill, .mask])
    func routedRunMatchesReference(_ policy: SkippedLayerKV) async throws {
        try await blocking {
            let (path, model, router) = try Self.tinyRouter()
            let chooser = RouterChooser(router: router, policy: try Self.skippingPolicy(router))
            let (routed, ran) = try routedStep(model, chooser: chooser, policy: policy)
            let skip = ran.enumerated().flatMap { pos, set in (0..<4).filter { !set.contains($0) }.map { (pos: pos, layer: $0) } }
            #expect(skip.count >= 4 && skip.count <= Self.ids.count * 4 - 4, "the router skips some layers, not all: \(skip.count)")
            let ref = try TestSupport.referenceLogits(model: path, ids: Self.ids, skip: skip, policy: policy)
            for (p, (a, b)) in zip(routed, ref).enumerated() {
                #expect(TestSupport.maxAbsDiff(a, b) <= 1e-4, "position \(p)")
            }
            let (dense, _) = try routedStep(model, chooser: nil, policy: policy)
            #expect(TestSupport.maxAbsDiff(dense.last!, routed.last!) > 1e-3, "skipping changed the output")
        }
    }

    /// The coordinator skips a worker exactly when the worker, deciding layer by layer, would run none of its layers.
    @Test func visitDecisionAgreesWithLayerDecisions() async throws {
        try await blocking {
            let (_, model, router) = try Self.tinyRouter()
            let dim = model.config.dim
            for minLayers in [0, 3] {
                var policy = try Self.skippingPolicy(router, rate: 0.5)
                policy.minLayers = minLayers
                let chooser = RouterChooser(router: router, policy: policy)
                let hidden = try model.head.embed(Self.ids)
                var skipped = 0
                for r in 0..<Self.ids.count {
                    for range in [LayerRange(0, 2), LayerRange(2, 4), LayerRange(1, 4)] {
                        for before in [0, 1] {
                            hidden.withUnsafeBufferPointer { h in
                                let x = h.baseAddress! + r * dim
                                let visits = chooser.visits(range, hidden: x, runSoFar: before)
                                let anyLayer = range.indices.contains { chooser.runs(layer: $0, hidden: x, runSoFar: before, ran: LayerSet()) }
                                #expect(visits == anyLayer)
                                if !visits { skipped += 1 }
                            }
                        }
                    }
                }
                if minLayers == 0 { #expect(skipped > 0, "some ranges are skipped at a 50% skip rate") }
            }
        }
    }

    @Test func trainingReducesLossAndCalibrates() async throws {
        try await blocking {
            let path = try TestSupport.writeTinyModel { $0.layers = 4 }
            let model = try LlamaModel(file: try GGUFFile(path: path))
            let windows = TokenWindows(windows: (0..<6).map { w in (0..<32).map { 3 + ($0 * 29 + w * 11) % 250 } })
            let trace = try ResidualProfiler(model: model).run(windows, keepInputs: true)
            var set = RouterTrainer.TrainingSet(dim: model.config.dim, layers: 4)
            set.append(trace, windowLength: 32, heldOutFraction: 0.2)
            #expect(set.heldOut.filter { $0 }.count == 32, "one window of six held out")
            var trainer = RouterTrainer()
            trainer.width = 16
            trainer.epochs = 8
            var losses: [Float] = []
            let (_, summary, calibration) = trainer.train(set) { losses.append($0.trainLoss) }
            #expect(losses.count == 8 && losses.last! < losses.first!, "loss falls: \(losses)")
            #expect(summary.heldOutMAE.isFinite && summary.heldOutTokens == 32)
            #expect(calibration.count == 4 && calibration.allSatisfy { zip($0, $0.dropFirst()).allSatisfy { $0 <= $1 } })
        }
    }

    /// The profile's ratio is ||f(x)|| / ||x + f(x)||, checked against running the first layer alone.
    @Test func profileMeasuresTheResidualRatio() async throws {
        try await blocking {
            let path = try TestSupport.writeTinyModel { $0.layers = 2 }
            let model = try LlamaModel(file: try GGUFFile(path: path))
            let ids = Array(Self.ids.prefix(8))
            let trace = try ResidualProfiler(model: model).run(TokenWindows(windows: [ids]))
            let before = try model.head.embed(ids)
            var after = before
            let cache = model.makeCache()
            try after.withUnsafeMutableBufferPointer {
                try model.shard.forward($0.baseAddress!, tokens: ids.indices.map { ShardToken(cache: cache, position: $0, layers: LayerSet([0])) })
            }
            let dim = model.config.dim
            for t in ids.indices {
                var num: Float = 0, den: Float = 0
                for d in 0..<dim {
                    num += (after[t * dim + d] - before[t * dim + d]) * (after[t * dim + d] - before[t * dim + d])
                    den += after[t * dim + d] * after[t * dim + d]
                }
                let r = (num / den).squareRoot()
                #expect(abs(trace.profile.ratio(token: t, layer: 0) - r) <= 1e-5 * max(r, 1))
                #expect(r > 0)
            }
        }
    }

    @Test func unitLayouts() throws {
        let runs = try UnitLayout.runs([LayerRange(14, 17), LayerRange(9, 11)], layers: 28)
        #expect(runs.count == 25 && runs.layers(of: runs.unit(of: 15)) == 14..<17 && runs.layers(of: runs.unit(of: 10)) == 9..<11)
        #expect(runs.unit(of: 27) == 24 && runs.uniformBlock == nil && runs.description == "runs 9-10,14-16, other layers alone")
        #expect(UnitLayout.blocks(4, layers: 10).starts == [0, 4, 8] && UnitLayout.blocks(4, layers: 10).uniformBlock == 4)
        #expect(UnitLayout.blocks(1, layers: 3).uniformBlock == 1)
        #expect(throws: RouterError.self) { try UnitLayout.runs([LayerRange(2, 5), LayerRange(4, 6)], layers: 8) }
        #expect(throws: RouterError.self) { try UnitLayout.runs([LayerRange(6, 9)], layers: 8) }
    }
}
