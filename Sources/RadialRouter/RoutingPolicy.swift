import Foundation
import RadialModel

/// How a router's scores become decisions: skip a layer whose predicted contribution is under `threshold`,
/// except the layers that always run, and never let a token fall below `minLayers` layers in all.
public struct RoutingPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Skip when the predicted contribution is below this; 0 or less never skips (exactly the dense model).
    public var threshold: Float
    public var alwaysRun: LayerSet
    public var minLayers: Int
    /// The first positions of every sequence run every layer. Later tokens attend to them most (Qwen2.5 parks
    /// much of its attention on the first token), so a skip there costs every later token, far more than the
    /// skip-cost probe (which measures the token's own prediction) sees.
    public var densePositions: Int
    public let modelLayers: Int

    public init(threshold: Float, alwaysRun: LayerSet, minLayers: Int = 0, densePositions: Int = 0, modelLayers: Int) {
        self.threshold = threshold
        self.alwaysRun = alwaysRun
        self.minLayers = minLayers
        self.densePositions = densePositions
        self.modelLayers = modelLayers
    }

    /// The default: the first and the last layer always run.
    public static func firstAndLast(threshold: Float, minLayers: Int = 0, modelLayers: Int) -> RoutingPolicy {
        RoutingPolicy(threshold: threshold, alwaysRun: LayerSet([0, modelLayers - 1]), minLayers: minLayers, modelLayers: modelLayers)
    }

    public func validate() throws {
        guard threshold.isFinite else { throw RouterError.badPolicy("the threshold must be a number") }
        guard (0...modelLayers).contains(minLayers) else {
            throw RouterError.badPolicy("minimum layers \(minLayers) is outside 0-\(modelLayers)")
        }
        if let l = (0..<(modelLayers + 64)).first(where: { alwaysRun.contains($0) && $0 >= modelLayers }) {
            throw RouterError.badPolicy("always-run layer \(l) is not in the model (0-\(modelLayers - 1))")
        }
    }

    /// Whether the token must run `layer` whatever the router says.
    @inline(__always)
    public func forced(layer: Int, runSoFar: Int) -> Bool {
        threshold <= 0 || alwaysRun.contains(layer) || runSoFar + (modelLayers - layer) <= minLayers
    }

    public var description: String {
        "threshold \(threshold), always run \(alwaysRun), at least \(minLayers) layers" + (densePositions > 0 ? ", first \(densePositions) positions dense" : "")
    }
}

/// A router under a policy: what a shard asks, layer by layer, and what the coordinator asks to decide whether a
/// token needs a worker at all. Both ask with the same hidden state and the same arithmetic, so they agree.
///
/// A router decides per unit (`UnitLayout`): one layer, a block of consecutive layers (a worker's range, say), or a
/// hand-named run, which runs or skips as a whole, decided from the state entering its first layer.
public struct RouterChooser: LayerChooser {
    public let network: RouterNetwork
    public let policy: RoutingPolicy
    public let layout: UnitLayout
    /// Runs a skipping token leaves through a fitted map (the router's).
    public let maps: [RunMap]

    public init(network: RouterNetwork, policy: RoutingPolicy, layout: UnitLayout? = nil, maps: [RunMap] = []) {
        self.network = network
        self.policy = policy
        self.layout = layout ?? .blocks(1, layers: policy.modelLayers)
        self.maps = maps
    }

    public init(router: Router, policy: RoutingPolicy) {
        self.init(network: router.network, policy: policy, layout: router.header.layout, maps: router.maps)
    }

    /// The unit holding `layer`, and its layers.
    @inline(__always) func unit(of layer: Int) -> (index: Int, layers: Range<Int>) {
        let u = layout.unit(of: layer)
        return (u, layout.layers(of: u))
    }

    /// Whether a unit must run whatever the router says: it holds an always-run layer, or skipping it could leave
    /// the token under the minimum depth.
    @inline(__always) func forced(_ layers: Range<Int>, runSoFar: Int) -> Bool {
        layers.contains { policy.alwaysRun.contains($0) } || policy.forced(layer: layers.lowerBound, runSoFar: runSoFar)
    }

    public func routes(position: Int) -> Bool { policy.threshold > 0 && position >= policy.densePositions }

    public func runs(layer: Int, hidden: UnsafePointer<Float>, runSoFar: Int, ran: LayerSet) -> Bool {
        let (u, layers) = unit(of: layer)
        // Inside a unit the first layer's decision holds (units never straddle workers: the coordinator checks).
        if layer != layers.lowerBound { return ran.contains(layers.lowerBound) }
        if forced(layers, runSoFar: runSoFar) { return true }
        return network.score(hidden, layer: u) >= policy.threshold
    }

    /// Whether a token entering `range` with state `hidden` runs any of its layers. While a token skips, its state
    /// does not change (but through a run's map), so scoring every unit of the range from the entering state (or,
    /// after a mapped run, from the mapped state) is exactly what the worker would decide unit by unit: if this
    /// says no, the worker would have run nothing.
    public func visits(_ range: LayerRange, hidden: UnsafePointer<Float>, runSoFar: Int,
                       activations: QuantizedMatrix.Activations = .f32) -> Bool {
        let units = (range.lowerBound..<range.upperBound).filter { layout.layers(of: layout.unit(of: $0)).lowerBound == $0 }
            .map(layout.unit(of:))
        if units.contains(where: { forced(layout.layers(of: $0), runSoFar: runSoFar) }) { return true }
        let mapped = maps.filter { range.contains($0.layers.lowerBound) && $0.layers.upperBound < range.upperBound }
        if mapped.isEmpty { return network.scores(hidden, layers: units).contains { $0 >= policy.threshold } }
        // A map before the range's end changes what later units are scored from: walk the units in order.
        let dim = network.dim
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: dim) { state in
            state.baseAddress!.update(from: hidden, count: dim)
            for u in units {
                if network.score(state.baseAddress!, layer: u) >= policy.threshold { return true }
                RunMap.ending(at: layout.layers(of: u).upperBound - 1, in: mapped)?.apply(state.baseAddress!, rows: 1, activations: activations)
            }
            return false
        }
    }

    /// Advances a token that skips all of `range` past it: through the map of each run there, in order.
    public func skip(_ range: LayerRange, hidden: UnsafeMutablePointer<Float>, activations: QuantizedMatrix.Activations) {
        for map in maps.sorted(by: { $0.layers.lowerBound < $1.layers.lowerBound }) where range.contains(map.layers.lowerBound) {
            map.apply(hidden, rows: 1, activations: activations)
        }
    }

    /// Whether every worker boundary is a unit boundary (required for blocks and runs).
    public func aligned(with ranges: [LayerRange]) -> Bool {
        ranges.allSatisfy { layout.starts.contains($0.lowerBound) }
    }
}

extension Router {
    /// The threshold at which the router, on its training tokens, would skip `rate` of all layer visits (counting
    /// always-run layers as never skipped), found by bisection over the per-layer quantile tables.
    public func threshold(forSkipRate rate: Double, alwaysRun: LayerSet) throws -> Float {
        let L = header.modelLayers, layout = header.layout
        // Units (layers, blocks or runs) with no always-run layer, and how many layers each holds.
        let free = (0..<layout.count).compactMap { u -> (unit: Int, size: Int)? in
            let layers = layout.layers(of: u)
            return layers.contains(where: alwaysRun.contains) ? nil : (u, layers.count)
        }
        let reachable = Double(free.reduce(0) { $0 + $1.size }) / Double(L)
        guard rate >= 0, rate <= reachable else {
            throw RouterError.badPolicy("a skip rate of \(rate) is not reachable with layers \(alwaysRun) always run (at most \(reachable))")
        }
        if rate == 0 { return 0 }
        func skipped(_ t: Float) -> Double {
            free.reduce(0) { $0 + Self.fractionBelow(t, header.calibration[$1.unit]) * Double($1.size) } / Double(L)
        }
        var lo: Float = 0, hi: Float = 1
        for _ in 0..<50 {
            let mid = (lo + hi) / 2
            if skipped(mid) < rate { lo = mid } else { hi = mid }
        }
        return hi
    }

    /// The fraction of values below `t`, from 101 quantiles (linear between them).
    static func fractionBelow(_ t: Float, _ q: [Float]) -> Double {
        if t <= q[0] { return 0 }
        if t > q[100] { return 1 }
        var i = 0
        while i < 99 && q[i + 1] < t { i += 1 }
        let span = q[i + 1] - q[i]
        let within = span > 0 ? Double((t - q[i]) / span) : 1
        return (Double(i) + min(max(within, 0), 1)) / 100
    }
}
