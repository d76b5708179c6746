import ArgumentParser
import Foundation
import RadialModel
import RadialRouter

/// Per-token depth flags, shared by the coordinator and the in-process tools.
public struct RoutingOptions: ParsableArguments {
    public init() {}

    @Option(name: .long, help: "A router from `radial train-router`; without one every token runs every layer.")
    public var router: String?
    @Option(name: .long, help: "Skip a layer whose predicted contribution is below this; 0 never skips: exactly the dense model (default: calibrated from --skip-rate).")
    public var threshold: Float?
    @Option(name: .customLong("skip-rate"), help: "Target fraction of layers skipped, turned into a threshold with the router's calibration, instead of --threshold (default: 0.1).")
    public var skipRate: Double?
    @Option(name: .customLong("max-quality-loss"), help: "The perplexity rise you accept, in percent (5: at most 5% above the dense model), instead of --threshold or --skip-rate: picks the highest threshold within it from the quality curve `radial train-router` measured on held-out text.")
    public var maxQualityLoss: Double?
    @Option(name: .customLong("always-run"), help: "Layers every token runs, comma-separated, or none (default: what the router's quality curve was measured with, else the first and the last).")
    public var alwaysRun: String?
    @Option(name: .customLong("min-layers"), help: "No token runs fewer layers than this: at most (layers − this) skips per token (default: what the router's quality curve was measured with, else 0).")
    public var minLayers: Int?
    @Option(name: .customLong("dense-positions"), help: "The first N positions of every sequence run every layer: later tokens attend to them most (default: what the router's quality curve was measured with, else 0).")
    public var densePositions: Int?
    @Option(name: .customLong("kv-policy"), help: "K/V of a skipped layer: fill (projected from the state entering it) or mask (none).")
    public var kvPolicy: SkippedLayerKV = .fill

    public func validate() throws {
        if [threshold != nil, skipRate != nil, maxQualityLoss != nil].filter({ $0 }).count > 1 {
            throw ValidationError("give one of --threshold, --skip-rate and --max-quality-loss")
        }
        if let q = maxQualityLoss, !(q.isFinite && q >= 0) { throw ValidationError("--max-quality-loss must be a percentage, 0 or more") }
        if let t = threshold, !(t.isFinite && t >= 0 && t <= 1) { throw ValidationError("--threshold must be between 0 and 1") }
        if let r = skipRate, !(r >= 0 && r < 1) { throw ValidationError("--skip-rate must be in [0, 1)") }
        if router == nil && (threshold != nil || skipRate != nil || maxQualityLoss != nil || alwaysRun != nil || minLayers != nil) {
            throw ValidationError("--threshold, --skip-rate, --max-quality-loss, --always-run and --min-layers need --router")
        }
        if let a = alwaysRun, Self.parseLayers(a) == nil { throw ValidationError("--always-run must be layers like 0,29 or 0-13,17-29, or none") }
        if let m = minLayers, m < 0 { throw ValidationError("--min-layers must be at least 0") }
        if let d = densePositions, d < 0 { throw ValidationError("--dense-positions must be at least 0") }
        if router == nil && densePositions != nil { throw ValidationError("--dense-positions needs --router") }
    }

    /// Layers as numbers and ranges ("0,27", "0-13,17-27"), sorted, or none for no layer; nil when malformed.
    public static func parseLayers(_ s: String) -> [Int]? {
        if s == "none" { return [] }
        var layers: [Int] = []
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(ends.count), let a = ends.first!, let b = ends.last!, a >= 0, a <= b else { return nil }
            layers += Array(a...b)
        }
        return Array(Set(layers)).sorted()
    }

    /// Loads the router (checked against the model) and turns the flags into a policy; nil without --router.
    public func load(modelFingerprint: String, config: LlamaConfig) throws -> (Router, RoutingPolicy)? {
        guard let path = router else { return nil }
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError("router file not found: \(path)") }
        let r = try Router(path: path)
        try r.check(modelFingerprint: modelFingerprint, layers: config.layerCount, hiddenSize: config.dim)
        let L = config.layerCount
        let keepList = alwaysRun.flatMap(Self.parseLayers) ?? r.header.qualityCurve?.alwaysRun ?? [0, L - 1]
        if let bad = keepList.first(where: { $0 >= L }) { throw CLIError("--always-run: layer \(bad) is not in the model (0-\(L - 1))") }
        let keep = LayerSet(keepList)
        let dense = densePositions ?? r.header.qualityCurve?.densePositions ?? 0
        let least = minLayers ?? r.header.qualityCurve?.minLayers ?? 0
        let t: Float
        if let budget = maxQualityLoss {
            guard let curve = r.header.qualityCurve else {
                throw CLIError("--max-quality-loss needs a router with a quality curve (train it again with this version of `radial train-router`), or give --skip-rate")
            }
            guard Set(curve.alwaysRun) == Set(keep.sorted) else {
                throw CLIError("the router's quality curve was measured with layers \(curve.alwaysRun) always run, not \(keep.sorted): drop --always-run or give --skip-rate")
            }
            guard least == curve.minLayers ?? 0 else {
                throw CLIError("the router's quality curve was measured with at least \(curve.minLayers ?? 0) layers per token, not \(least): drop --min-layers or give --skip-rate")
            }
            guard dense == curve.densePositions ?? 0 else {
                throw CLIError("the router's quality curve was measured with the first \(curve.densePositions ?? 0) positions dense, not \(dense): drop --dense-positions or give --skip-rate")
            }
            t = curve.operatingPoint(maxRisePercent: budget).threshold
        } else {
            t = try threshold ?? r.threshold(forSkipRate: skipRate ?? 0.1, alwaysRun: keep)
        }
        let policy = RoutingPolicy(threshold: t, alwaysRun: keep, minLayers: least, densePositions: dense, modelLayers: L)
        try policy.validate()
        return (r, policy)
    }

    /// What the chosen threshold was measured to cost and skip, for the log; nil without a curve point for it.
    public func operatingPointNote(_ router: Router, policy: RoutingPolicy) -> String? {
        guard let curve = router.header.qualityCurve else { return nil }
        if policy.threshold <= 0 { return "dense: every layer runs" }
        guard let p = curve.points.first(where: { $0.threshold == policy.threshold }) else { return nil }
        return String(format: "measured on %d held-out tokens: %.1f%% of layers skipped, perplexity %+.1f%%", curve.tokens, p.skipRate * 100, p.risePercent)
    }
}

extension SkippedLayerKV: ExpressibleByArgument {}
extension RouterLabels: ExpressibleByArgument {}
