import Foundation
import RadialModel

/// How perplexity rises as the router's threshold rises, measured on held-out text with the layers that always
/// run when serving (by default the first and last). An operator states the quality they will pay
/// (`--max-quality-loss 5`: at most 5% higher perplexity) and gets the threshold that skips the most within it.
public struct QualityCurve: Codable, Sendable, Equatable {
    public struct Point: Codable, Sendable, Equatable {
        public var threshold: Float
        /// Fraction of (token, layer) pairs skipped on the held-out text at this threshold.
        public var skipRate: Double
        public var perplexity: Double
        /// Percent above the dense model's perplexity on the same text.
        public var risePercent: Double

        public init(threshold: Float, skipRate: Double, perplexity: Double, risePercent: Double) {
            (self.threshold, self.skipRate, self.perplexity, self.risePercent) = (threshold, skipRate, perplexity, risePercent)
        }
    }

    public var densePerplexity: Double
    /// Tokens the perplexities were measured on, and where they came from.
    public var tokens: Int
    public var text: String
    public var alwaysRun: [Int]
    /// Positions at the start of each sequence that ran every layer (absent in older files: none).
    public var densePositions: Int?
    /// The fewest layers a token ran (`--min-layers`: at most L − this skips per token; absent: no minimum).
    public var minLayers: Int?
    /// In increasing threshold order.
    public var points: [Point]

    public init(densePerplexity: Double, tokens: Int, text: String, alwaysRun: [Int], points: [Point]) {
        (self.densePerplexity, self.tokens, self.text, self.alwaysRun) = (densePerplexity, tokens, text, alwaysRun)
        self.points = points.sorted { $0.threshold < $1.threshold }
    }

    /// The highest measured threshold whose rise, and that of every lower threshold, stays within `percent`
    /// (0 when none does: the dense model). Only measured points are chosen; nothing is extrapolated.
    public func operatingPoint(maxRisePercent percent: Double) -> Point {
        var best = Point(threshold: 0, skipRate: 0, perplexity: densePerplexity, risePercent: 0)
        for p in points.sorted(by: { $0.threshold < $1.threshold }) {
            guard p.risePercent <= percent else { break }
            best = p
        }
        return best
    }

    /// Measures the curve: held-out perplexity at the thresholds that skip each of `skipRates` of the layers on the
    /// router's training tokens.
    public static func measure(router: Router, model: LlamaModel, windows: TokenWindows, text: String, alwaysRun: LayerSet,
                               densePositions: Int = 0, minLayers: Int = 0, skipRates: [Double], kvPolicy: SkippedLayerKV = .fill,
                               progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> QualityCurve {
        let eval = Evaluator(model: model, kvPolicy: kvPolicy, workers: 1)
        let L = model.config.layerCount
        let dense = try eval.perplexity(windows, mode: .dense).perplexity
        var points: [Point] = []
        for (i, rate) in skipRates.enumerated() {
            progress?(i, skipRates.count)
            let t = try router.threshold(forSkipRate: rate, alwaysRun: alwaysRun)
            let policy = RoutingPolicy(threshold: t, alwaysRun: alwaysRun, minLayers: minLayers, densePositions: densePositions, modelLayers: L)
            let r = try eval.perplexity(windows, mode: .router(RouterChooser(router: router, policy: policy)))
            let skipped = eval.point(name: "", perplexity: r.perplexity, runs: r.runs).skipRate
            points.append(Point(threshold: t, skipRate: skipped, perplexity: r.perplexity, risePercent: (r.perplexity / dense - 1) * 100))
        }
        progress?(skipRates.count, skipRates.count)
        var curve = QualityCurve(densePerplexity: dense, tokens: windows.tokenCount, text: text, alwaysRun: alwaysRun.sorted, points: points)
        curve.densePositions = densePositions
        curve.minLayers = minLayers
        return curve
    }
}
