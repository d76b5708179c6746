import Foundation
import RadialModel

/// Per token and layer, the paper's measure of how much a residual block changes the hidden state:
/// r = ||f(x)|| / ||x + f(x)||, where x enters the block and x + f(x) leaves it. Measured on the dense model.
public struct ResidualProfile: Sendable {
    public let layers: Int
    public let tokens: Int
    /// tokens × layers, row-major by token.
    public let ratios: [Float]

    public func ratio(token t: Int, layer l: Int) -> Float { ratios[t * layers + l] }

    public struct LayerSummary: Sendable, Codable {
        public var layer: Int
        public var median: Float
        public var p10: Float
        public var p90: Float
        public var mean: Float
    }

    public var summaries: [LayerSummary] {
        (0..<layers).map { l in
            let v = (0..<tokens).map { ratios[$0 * layers + l] }.sorted()
            return LayerSummary(layer: l, median: quantile(v, 0.5), p10: quantile(v, 0.1), p90: quantile(v, 0.9),
                                mean: v.reduce(0, +) / Float(max(v.count, 1)))
        }
    }

    /// The `k` units (layers, or aligned blocks of `block` layers) with the lowest median contribution (summed over
    /// a block), leaving out any holding a layer of `keep`: what static pruning removes. Returns their layers.
    public static func leastContributing(_ medians: [Float], count k: Int, keep: LayerSet, block: Int = 1) -> [Int] {
        let units = stride(from: 0, to: medians.count, by: block).map { $0..<min($0 + block, medians.count) }
            .filter { !$0.contains(where: keep.contains) }
        let cost = { (u: Range<Int>) in u.reduce(Float(0)) { $0 + medians[$1] } }
        return units.sorted { cost($0) < cost($1) }.prefix(k).flatMap { Array($0) }.sorted()
    }
}

/// Runs the dense model layer by layer over token windows, recording each layer's contribution and, for router
/// training, the hidden state that entered each layer.
public struct ResidualProfiler {
    public let model: LlamaModel

    public init(model: LlamaModel) { self.model = model }

    /// What one pass over the windows collected.
    public struct Trace {
        public var profile: ResidualProfile
        /// (tokens × layers) rows of `dim` floats: the state entering each layer; empty unless asked for.
        public var inputs: [Float]
        /// (tokens) rows of `dim` floats: the state leaving the last layer; empty unless asked for.
        public var outputs: [Float] = []
        /// tokens × decision units: what flipping each unit (layer or block) would cost each token (`SkipCostProbe`);
        /// empty unless asked for.
        public var costs: [Float] = []

        /// The state entering layer `l` of token `t` (`l == layers`: leaving the last one).
        func state(token t: Int, layer l: Int, layers L: Int, dim: Int) -> ArraySlice<Float> {
            l < L ? inputs[((t * L + l) * dim)..<((t * L + l + 1) * dim)] : outputs[(t * dim)..<((t + 1) * dim)]
        }
    }

    /// With a `chooser`, the trace follows the routed trajectory instead of the dense one: every layer is still
    /// computed (to measure its true contribution from the state the token really has), and the update is
    /// dropped for rows the chooser skips (K/V are the same either way under `fill`). Training on such traces
    /// teaches the router the states its own skipping produces.
    ///
    /// With `costs`, each window's skip costs are probed once its pass is done (needs `keepInputs`).
    public func run(_ windows: TokenWindows, keepInputs: Bool = false, chooser: (any LayerChooser)? = nil,
                    costs probe: SkipCostProbe? = nil,
                    progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> Trace {
        precondition(probe == nil || keepInputs, "skip costs are probed from the kept inputs")
        let L = model.config.layerCount, dim = model.config.dim
        let total = windows.tokenCount
        var ratios = [Float](repeating: 0, count: total * L)
        var inputs = [Float](repeating: 0, count: keepInputs ? total * L * dim : 0)
        var outputs = [Float](repeating: 0, count: keepInputs ? total * dim : 0)
        var costs = [Float]()
        var done = 0
        for window in windows.windows {
            let n = window.count
            let cache = model.shard.makeCache(initialCapacity: n)
            let tokens = (0..<n).map { ShardToken(cache: cache, position: $0) }
            var hidden = try model.head.embed(window)
            var before = hidden
            var runSoFar = Array(repeating: 0, count: n)
            var ran = Array(repeating: LayerSet(), count: n)
            for l in 0..<L {
                before.withUnsafeMutableBufferPointer { b in hidden.withUnsafeBufferPointer { b.baseAddress!.update(from: $0.baseAddress!, count: n * dim) } }
                if keepInputs {
                    for r in 0..<n {
                        let dst = ((done + r) * L + l) * dim
                        for d in 0..<dim { inputs[dst + d] = before[r * dim + d] }
                    }
                }
                try hidden.withUnsafeMutableBufferPointer { try model.shard.runLayer(l, hidden: $0.baseAddress!, tokens: tokens) }
                for r in 0..<n {
                    ratios[(done + r) * L + l] = Self.ratio(before: before, after: hidden, row: r, dim: dim)
                }
                if let chooser {
                    for r in 0..<n {
                        let runs = !chooser.routes(position: r) || before.withUnsafeBufferPointer {
                            chooser.runs(layer: l, hidden: $0.baseAddress! + r * dim, runSoFar: runSoFar[r], ran: ran[r])
                        }
                        if runs { runSoFar[r] += 1; ran[r].insert(l) } else { for d in (r * dim)..<((r + 1) * dim) { hidden[d] = before[d] } }
                    }
                    if !chooser.maps.isEmpty {
                        let skipped = (0..<n).filter { !ran[$0].contains(l) }
                        hidden.withUnsafeMutableBufferPointer {
                            RunMap.bridge(after: l, maps: chooser.maps, x: $0.baseAddress!, rows: skipped, ran: ran, dim: dim,
                                          activations: model.shard.activations)
                        }
                    }
                }
            }
            if keepInputs { for i in 0..<(n * dim) { outputs[done * dim + i] = hidden[i] } }
            if let probe {
                let taken = chooser == nil ? Array(repeating: LayerSet.all(LayerRange(0, L)), count: n) : ran
                costs += try inputs.withUnsafeBufferPointer { i in
                    try hidden.withUnsafeBufferPointer { h in
                        try probe.measure(model: model, cache: cache, inputs: i.baseAddress! + done * L * dim,
                                          outputs: h.baseAddress!, ran: taken)
                    }
                }
            }
            done += n
            progress?(done, total)
        }
        return Trace(profile: ResidualProfile(layers: L, tokens: total, ratios: ratios), inputs: inputs, outputs: outputs, costs: costs)
    }

    /// ||after − before|| / ||after|| for one row.
    static func ratio(before: [Float], after: [Float], row r: Int, dim: Int) -> Float {
        var num: Float = 0, den: Float = 0
        for d in (r * dim)..<((r + 1) * dim) {
            let delta = after[d] - before[d]
            num += delta * delta
            den += after[d] * after[d]
        }
        return den > 0 ? (num / den).squareRoot() : 0
    }
}

func quantile(_ sorted: [Float], _ q: Double) -> Float {
    guard !sorted.isEmpty else { return 0 }
    let x = q * Double(sorted.count - 1)
    let i = Int(x), f = Float(x - Double(i))
    guard i + 1 < sorted.count else { return sorted[i] }
    // Monotone in q (the threshold search relies on it): the lower value plus a non-negative step, kept in range.
    return min(sorted[i] + (sorted[i + 1] - sorted[i]) * f, sorted[i + 1])
}
