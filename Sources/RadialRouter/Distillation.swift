import RadialModel

/// The whole recipe behind `radial train-router`: trace the dense model, fit, then (for each later round) trace
/// again with the router skipping at `onPolicySkipRate` and refit on everything. The later rounds matter: a
/// router fitted only to dense states meets states its own skipping produced and, measured on held-out text,
/// loses to static pruning; with them it wins (see docs/ROUTING.md).
public struct RouterDistiller {
    public var trainer = RouterTrainer()
    public var rounds = 3
    public var onPolicySkipRate = 0.1
    /// Layers always run while tracing on-policy (the serving default: first and last).
    public var alwaysRun: LayerSet?
    /// Positions at the start of each window that run every layer while tracing on-policy and measuring the curve.
    public var densePositions = 0
    /// The fewest layers a token runs while tracing on-policy and measuring the curve (at most L − this skips).
    public var minLayers = 0
    /// Layers decided together: 1 decides each layer; a worker's range size lets a token skip whole workers.
    public var blockSize = 1
    /// Contiguous runs decided as one unit each, every other layer alone (instead of `blockSize`).
    public var runs: [LayerRange] = []
    /// Fit a map for each multi-layer unit (run or block) free of always-run layers, which a token skipping the unit
    /// leaves through (`RunMap`); the skip costs and on-policy traces are then measured with the maps in place.
    public var bypass = false
    public var bypassRidge = RunMapFit.defaultRidge
    /// What the router learns: the residual ratio, or the measured skip cost (probed; per layer only).
    public var labels: RouterLabels = .ratio
    /// Candidate tokens the skip-cost divergence is taken over.
    public var costCandidates = 64
    /// Skip rates at which the quality curve is measured on the held-out windows after training; empty: none.
    public var curveSkipRates: [Double] = [0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3]
    /// Text for the quality curve instead of the held-out windows of the training text.
    public var curveWindows: (windows: TokenWindows, name: String)?

    public init() {}

    public enum Event {
        case tracing(round: Int, done: Int, total: Int)
        case epoch(round: Int, RouterTrainer.Progress)
        case fitted(round: Int, TrainingSummary)
        case mapFitted(LayerRange, seconds: Double)
        case curve(done: Int, total: Int)
    }

    public func distil(model: LlamaModel, modelFingerprint: String, windows: TokenWindows, windowLength: Int,
                       events: @escaping (Event) -> Void = { _ in }) throws -> Router {
        let L = model.config.layerCount
        let profiler = ResidualProfiler(model: model)
        let keep = alwaysRun ?? LayerSet([0, L - 1])
        let layout = runs.isEmpty ? UnitLayout.blocks(blockSize, layers: L) : try UnitLayout.runs(runs, layers: L)
        let U = layout.count
        let free = (0..<U).filter { !layout.layers(of: $0).contains(where: keep.contains) }
        var probe = labels == .cost ? SkipCostProbe(candidates: costCandidates, layout: layout, units: LayerSet(free)) : nil
        let maps = bypass ? try fitMaps(model: model, layout: layout, units: free, windows: windows, events: events) : []
        probe?.maps = maps.map(\.map)
        let dense = try profiler.run(windows, keepInputs: true, costs: probe) { events(.tracing(round: 1, done: $0, total: $1)) }
        let medians = dense.profile.summaries.map(\.median)
        // Cost labels: the scale is the median measured cost, so half the dense skips label below 0.63.
        var costMeans: [Float]?, scale: Float = 1
        if labels == .cost {
            let finite = dense.costs.filter(\.isFinite).sorted()
            scale = max(quantile(finite, 0.5), 1e-6)
            // Per layer; a block's mean cost is shared among its layers, so summing over a block gives it back.
            costMeans = (0..<L).map { l in
                let u = layout.unit(of: l), size = Float(layout.layers(of: u).count)
                let v = stride(from: u, to: dense.costs.count, by: U).map { dense.costs[$0] }.filter(\.isFinite)
                return v.isEmpty ? Router.Header.unmeasuredCost : v.reduce(0, +) / Float(v.count) / size
            }
        }
        var set = RouterTrainer.TrainingSet(dim: model.config.dim, layers: L, layout: layout, labels: labels, costScale: scale)
        set.append(dense, windowLength: windowLength, heldOutFraction: trainer.heldOutFraction)
        func fit(_ round: Int) throws -> Router {
            let (network, summary, calibration) = trainer.train(set) { events(.epoch(round: round, $0)) }
            events(.fitted(round: round, summary))
            var header = Router.Header(
                modelFingerprint: modelFingerprint, modelLayers: L, hiddenSize: model.config.dim, width: trainer.width,
                calibration: calibration, profileMedians: medians, training: summary, blockSize: runs.isEmpty ? blockSize : 1)
            if !runs.isEmpty { header.unitStarts = layout.starts }
            header.labels = labels
            if labels == .cost { (header.costScale, header.skipCostMeans) = (scale, costMeans) }
            var router = Router(network: network, header: header)
            for m in maps { try router.addMap(layers: m.map.layers, eps: m.map.eps, coefficients: m.coefficients) }
            return router
        }
        var router = try fit(1)
        for round in stride(from: 2, through: rounds, by: 1) {
            let policy = RoutingPolicy(threshold: try router.threshold(forSkipRate: onPolicySkipRate, alwaysRun: keep),
                                       alwaysRun: keep, minLayers: minLayers, densePositions: densePositions, modelLayers: L)
            let routed = try profiler.run(windows, keepInputs: true, chooser: RouterChooser(router: router, policy: policy), costs: probe) {
                events(.tracing(round: round, done: $0, total: $1))
            }
            set.append(routed, windowLength: windowLength, heldOutFraction: trainer.heldOutFraction)
            router = try fit(round)
        }
        if !curveSkipRates.isEmpty {
            let (curveText, name) = curveWindows ?? (TokenWindows(windows: heldOutWindows(windows)), "held-out windows of the training text")
            router.header.qualityCurve = try QualityCurve.measure(
                router: router, model: model, windows: curveText, text: name, alwaysRun: keep, densePositions: densePositions,
                minLayers: minLayers, skipRates: curveSkipRates) {
                events(.curve(done: $0, total: $1))
            }
        }
        return router
    }

    /// Fits the maps from a dense pass over the training windows (not the held-out ones).
    func fitMaps(model: LlamaModel, layout: UnitLayout, units: [Int], windows: TokenWindows,
                 events: @escaping (Event) -> Void) throws -> [(map: RunMap, coefficients: [Float])] {
        let runs = units.map(layout.layers(of:)).filter { $0.count > 1 }
        guard !runs.isEmpty else {
            throw RouterError.badPolicy("bypass maps stand in for runs or blocks of layers: name some with --runs or --block")
        }
        let L = model.config.layerCount, dim = model.config.dim
        let trace = try ResidualProfiler(model: model).run(windows, keepInputs: true) { events(.tracing(round: 0, done: $0, total: $1)) }
        let trainTokens = windows.tokenCount - heldOutWindows(windows).reduce(0) { $0 + $1.count }
        return try runs.map { run in
            let clock = ContinuousClock(), start = clock.now
            var entering = [Float](), leaving = [Float]()
            entering.reserveCapacity(trainTokens * dim); leaving.reserveCapacity(trainTokens * dim)
            for t in 0..<trainTokens {
                entering += trace.state(token: t, layer: run.lowerBound, layers: L, dim: dim)
                leaving += trace.state(token: t, layer: run.upperBound, layers: L, dim: dim)
            }
            let coefficients = try RunMapFit.fit(entering: entering, leaving: leaving, tokens: trainTokens, dim: dim,
                                                 eps: model.config.rmsEps, ridge: bypassRidge)
            let map = try RunMap(layers: LayerRange(run.lowerBound, run.upperBound), dim: dim, eps: model.config.rmsEps, coefficients: coefficients)
            events(.mapFitted(map.layers, seconds: (clock.now - start).seconds))
            return (map, coefficients)
        }
    }

    /// The windows `RouterTrainer` holds out (the last `heldOutFraction` of them).
    func heldOutWindows(_ windows: TokenWindows) -> [[Int]] {
        let n = windows.windows.count
        let held = n > 1 ? max(1, Int((Double(n) * trainer.heldOutFraction).rounded())) : 1
        return Array(windows.windows.suffix(held))
    }
}
