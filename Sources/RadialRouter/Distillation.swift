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
    /// Layers decided together: 1 decides each layer; a worker's range size lets a token skip whole workers.
    public var blockSize = 1

    public init() {}

    public enum Event {
        case tracing(round: Int, done: Int, total: Int)
        case epoch(round: Int, RouterTrainer.Progress)
        case fitted(round: Int, TrainingSummary)
    }

    public func distil(model: LlamaModel, modelFingerprint: String, windows: TokenWindows, windowLength: Int,
                       events: @escaping (Event) -> Void = { _ in }) throws -> Router {
        let L = model.config.layerCount
        let profiler = ResidualProfiler(model: model)
        var set = RouterTrainer.TrainingSet(dim: model.config.dim, layers: L, block: blockSize)
        let dense = try profiler.run(windows, keepInputs: true) { events(.tracing(round: 1, done: $0, total: $1)) }
        let medians = dense.profile.summaries.map(\.median)
        set.append(dense, windowLength: windowLength, heldOutFraction: trainer.heldOutFraction)
        func fit(_ round: Int) -> Router {
            let (network, summary, calibration) = trainer.train(set) { events(.epoch(round: round, $0)) }
            events(.fitted(round: round, summary))
            return Router(network: network, header: Router.Header(
                modelFingerprint: modelFingerprint, modelLayers: L, hiddenSize: model.config.dim, width: trainer.width,
                calibration: calibration, profileMedians: medians, training: summary, blockSize: blockSize))
        }
        var router = fit(1)
        let keep = alwaysRun ?? LayerSet([0, L - 1])
        for round in stride(from: 2, through: rounds, by: 1) {
            let policy = RoutingPolicy(threshold: try router.threshold(forSkipRate: onPolicySkipRate, alwaysRun: keep),
                                       alwaysRun: keep, modelLayers: L)
            let routed = try profiler.run(windows, keepInputs: true, chooser: RouterChooser(router: router, policy: policy)) {
                events(.tracing(round: round, done: $0, total: $1))
            }
            set.append(routed, windowLength: windowLength, heldOutFraction: trainer.heldOutFraction)
            router = fit(round)
        }
        return router
    }
}
