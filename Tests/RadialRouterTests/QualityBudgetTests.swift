import Foundation
import RadialCommandLine
import RadialRouter
import RadialTestSupport
import Testing
@testable import RadialModel

/// Cost labels, the quality curve a router carries, and `--max-quality-loss` turning a budget into a threshold.
@Suite struct QualityBudgetTests {
    @Test func operatingPointStopsAtTheFirstMeasuredPointOverBudget() {
        func point(_ t: Float, _ rise: Double) -> QualityCurve.Point {
            QualityCurve.Point(threshold: t, skipRate: Double(t), perplexity: 10 * (1 + rise / 100), risePercent: rise)
        }
        let curve = QualityCurve(densePerplexity: 10, tokens: 100, text: "t", alwaysRun: [0],
                                 points: [point(0.1, 1), point(0.2, 3), point(0.3, 8), point(0.4, 4)])
        #expect(curve.operatingPoint(maxRisePercent: 5).threshold == 0.2)
        #expect(curve.operatingPoint(maxRisePercent: 0.5).threshold == 0)
        #expect(curve.operatingPoint(maxRisePercent: 10).threshold == 0.4)
    }

    @Test func costLabelledRouterCarriesItsCurveThroughTheFileAndTheFlags() throws {
        let path = try TestSupport.writeTinyModel()
        let file = try GGUFFile(path: path)
        let (model, router) = try TinyRouter.distil(modelPath: path) { d in
            d.alwaysRun = LayerSet([0])
            d.labels = .cost
            d.curveSkipRates = [0.1, 0.3, 0.5]
        }
        let h = router.header
        #expect(h.labels == .cost)
        #expect((h.costScale ?? 0) > 0)
        #expect(h.skipCostMeans?[0] == Router.Header.unmeasuredCost)
        #expect(h.skipCostMeans?[1...].allSatisfy { $0 > 0 && $0 < 100 } == true)
        let curve = try #require(h.qualityCurve)
        #expect(curve.points.count == 3 && curve.alwaysRun == [0])
        #expect(curve.points.map(\.threshold) == curve.points.map(\.threshold).sorted())
        #expect(curve.points.last!.skipRate > 0, "the highest threshold skips something")

        let dir = try TestSupport.tempDir()
        try router.write(to: dir + "/r.rdrt")
        let back = try Router(path: dir + "/r.rdrt")
        #expect(back.header.qualityCurve == curve)
        #expect(back.fingerprint == router.fingerprint)

        // The flag picks the curve's operating point; a budget below every point is the dense model.
        let generous = curve.points.map(\.risePercent).max()! + 1
        let options = try RoutingOptions.parse(["--router", dir + "/r.rdrt", "--max-quality-loss", String(generous), "--always-run", "0"])
        let (_, policy) = try #require(try options.load(modelFingerprint: file.fingerprint, config: model.config))
        #expect(policy.threshold == curve.operatingPoint(maxRisePercent: generous).threshold)
        #expect(policy.threshold == curve.points.last!.threshold)
        let strict = try RoutingOptions.parse(["--router", dir + "/r.rdrt", "--max-quality-loss", "0", "--always-run", "0"])
        let dense = try #require(try strict.load(modelFingerprint: file.fingerprint, config: model.config)).1
        #expect(dense.threshold == 0 || curve.points.contains { $0.threshold == dense.threshold && $0.risePercent <= 0 })
        // The curve was measured with layer 0 always run: serving defaults to that set, and refuses another by name.
        let plain = try RoutingOptions.parse(["--router", dir + "/r.rdrt", "--max-quality-loss", "5"])
        #expect(try #require(try plain.load(modelFingerprint: file.fingerprint, config: model.config)).1.alwaysRun == LayerSet([0]))
        let other = try RoutingOptions.parse(["--router", dir + "/r.rdrt", "--max-quality-loss", "5", "--always-run", "0,2"])
        #expect(throws: (any Error).self) { try other.load(modelFingerprint: file.fingerprint, config: model.config) }
        #expect(throws: (any Error).self) { try RoutingOptions.parse(["--router", "x", "--max-quality-loss", "5", "--skip-rate", "0.1"]) }
    }

    /// The policy a curve was measured with travels with it: serving defaults to its skip cap, and refuses another.
    @Test func curveCarriesItsSkipCapAndDensePositions() throws {
        let (model, router0) = try TinyRouter.distil(modelPath: try TestSupport.writeTinyModel { $0.layers = 4 })
        var router = router0
        let windows = TokenWindows(windows: [Array(3..<35)])
        router.header.qualityCurve = try QualityCurve.measure(router: router, model: model, windows: windows, text: "t",
                                                               alwaysRun: LayerSet([0, 3]), densePositions: 2, minLayers: 3, skipRates: [0.2, 0.4])
        let dir = try TestSupport.tempDir()
        try router.write(to: dir + "/r.rdrt")
        let fp = router.header.modelFingerprint
        let policy = try #require(try RoutingOptions.parse(["--router", dir + "/r.rdrt", "--max-quality-loss", "1000"])
            .load(modelFingerprint: fp, config: model.config)).1
        #expect(policy.minLayers == 3 && policy.densePositions == 2)
        #expect(throws: (any Error).self) {
            try RoutingOptions.parse(["--router", dir + "/r.rdrt", "--max-quality-loss", "5", "--min-layers", "2"]).load(modelFingerprint: fp, config: model.config)
        }
        // With a threshold that skips everything it may, the first two positions still run every layer and the
        // rest run exactly the always-run layers plus what the cap forces (at most one skip: 3 of 4 layers).
        let chooser = RouterChooser(router: router, policy: RoutingPolicy(threshold: 2, alwaysRun: LayerSet([0, 3]), minLayers: 3,
                                                                            densePositions: 2, modelLayers: 4))
        let cache = model.makeCache()
        var hidden = try model.head.embed(Array(3..<9))
        let ran = try hidden.withUnsafeMutableBufferPointer {
            try model.shard.forward($0.baseAddress!, tokens: (0..<6).map { ShardToken(cache: cache, position: $0) }, chooser: chooser)
        }
        #expect(ran[0].count == 4 && ran[1].count == 4)
        #expect(ran[2...].allSatisfy { $0.count == 3 && $0.contains(0) && $0.contains(3) })
    }

    @Test func layerListsTakeNumbersRangesAndNone() {
        #expect(RoutingOptions.parseLayers("0,27") == [0, 27])
        #expect(RoutingOptions.parseLayers("0-2,9, 14-16") == [0, 1, 2, 9, 14, 15, 16])
        #expect(RoutingOptions.parseLayers("none") == [])
        for bad in ["", "3-1", "1,,2", "a", "-1", "1-2-3"] { #expect(RoutingOptions.parseLayers(bad) == nil, "\(bad)") }
    }
}
