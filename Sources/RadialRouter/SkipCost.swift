import Foundation
import RadialModel

/// What skipping one layer costs one token, measured rather than guessed from the size of the layer's update: the
/// KL divergence between the next-token distribution with the layer run and without it, every other layer as the
/// trace ran it (`LlamaShard.probe`, so no session's K/V change). The paper's residual ratio ranks skips badly on
/// Qwen2.5 (its layers all move the state by 26-50%, and the cheap skips are not the small updates); this is the
/// quantity a quality budget is spent in.
///
/// The divergence is taken over the `candidates` most likely tokens of the trace's own output, renormalised on
/// both sides: the LM head then costs `candidates` dot products per probe instead of the whole vocabulary
/// (Qwen2.5's 151,936 rows would cost four times the layers). `SkipCostTests` checks it against the full-vocabulary
/// divergence.
public struct SkipCostProbe: Sendable {
    /// Tokens of the reference distribution the divergence is taken over.
    public var candidates: Int
    /// Layers flipped together: 1 measures each layer; a block router's block size measures skipping its blocks.
    public var block: Int
    /// The decision units flipped, when not uniform blocks of `block` (a router's hand-named runs).
    public var layout: UnitLayout?
    /// Units (layers, or blocks) measured; the others (always run when serving) get no probe and cost `unmeasured`.
    public var units: LayerSet
    /// Runs a skipping token leaves through a fitted map: a probe that skips one goes through its map, so the
    /// cost measured is the cost with the map in place.
    public var maps: [RunMap] = []
    /// The cost recorded for a unit that is not measured.
    public static let unmeasured = Float.infinity

    public init(candidates: Int = 64, block: Int = 1, layout: UnitLayout? = nil, units: LayerSet) {
        self.candidates = candidates
        self.block = max(block, 1)
        self.layout = layout
        self.units = units
    }

    /// Costs (n × units, token-major) for one window whose cache holds the trace's K/V. `inputs` are the states
    /// entering each layer (n × L × dim), `outputs` the states leaving the last (n × dim), `ran` each token's layers.
    public func measure(model: LlamaModel, cache: KVCache, inputs: UnsafePointer<Float>, outputs: UnsafePointer<Float>,
                        ran: [LayerSet]) throws -> [Float] {
        let n = ran.count, L = model.config.layerCount, dim = model.config.dim, V = model.config.vocabSize
        let K = min(candidates, V)
        // The trace's own distribution: its top-K tokens (from the whole head), and their logits computed the way
        // the probes' are (fp32 dot products with the dequantised rows), so that under q8 arithmetic a flip that
        // changes nothing costs exactly 0.
        let full = model.head.logits(outputs, rows: n)
        let top = (0..<n).map { t in Self.topK(full[(t * V)..<((t + 1) * V)], K) }
        let rows = top.map { model.head.outputRows($0) }
        let normedOutputs = model.head.finalNorm(outputs, rows: n)
        let reference = (0..<n).map { t in Self.candidateLogits(normedOutputs, row: t, dim: dim, weights: rows[t], count: K) }
        let layout = self.layout ?? .blocks(block, layers: L), U = layout.count
        var costs = [Float](repeating: Self.unmeasured, count: n * U)
        var probed = [Float](repeating: 0, count: n * dim)
        for u in 0..<U where units.contains(u) {
            // Each row flips unit u: skips it if the trace ran it, runs it if the trace skipped it (a block runs or
            // skips as a whole, so its first layer says which).
            let members = layout.layers(of: u), l = members.lowerBound
            var tokens: [ShardToken] = []
            for t in 0..<n {
                var plan = ran[t]
                let wasRun = plan.contains(l)
                for m in members { if wasRun { plan.remove(m) } else { plan.insert(m) } }
                tokens.append(ShardToken(cache: cache, position: t, layers: plan))
                (0..<dim).forEach { probed[t * dim + $0] = inputs[(t * L + l) * dim + $0] }
            }
            try probed.withUnsafeMutableBufferPointer { try model.shard.probe($0.baseAddress!, tokens: tokens, from: l, maps: maps) }
            let normed = probed.withUnsafeBufferPointer { model.head.finalNorm($0.baseAddress!, rows: n) }
            for t in 0..<n {
                let logits = Self.candidateLogits(normed, row: t, dim: dim, weights: rows[t], count: K)
                let (with, without) = ran[t].contains(l) ? (reference[t], logits) : (logits, reference[t])
                costs[t * U + u] = Self.divergence(with, without)
            }
        }
        return costs
    }

    /// Logits of `count` candidate tokens (their LM-head rows in `weights`) for row `row` of final-normed states.
    static func candidateLogits(_ normed: [Float], row: Int, dim: Int, weights: [Float], count: Int) -> [Float] {
        var logits = [Float](repeating: 0, count: count)
        normed.withUnsafeBufferPointer { x in weights.withUnsafeBufferPointer { w in logits.withUnsafeMutableBufferPointer { y in
            BLAS.linear(x.baseAddress! + row * dim, rows: 1, inputs: dim, weight: w.baseAddress!, outputs: count, into: y.baseAddress!)
        }}}
        return logits
    }

    /// The indices of the `k` largest values, largest first.
    static func topK(_ row: ArraySlice<Float>, _ k: Int) -> [Int] {
        var best: [(Float, Int)] = []
        best.reserveCapacity(k + 1)
        for (i, v) in row.enumerated() where best.count < k || v > best[best.count - 1].0 {
            let at = best.firstIndex { $0.0 < v } ?? best.count
            best.insert((v, i), at: at)
            if best.count > k { best.removeLast() }
        }
        return best.map(\.1)
    }

    /// KL(P ‖ Q) in nats for two logit vectors over the same tokens, each softmax-normalised over them.
    static func divergence(_ p: [Float], _ q: [Float]) -> Float {
        let lp = logSoftmax(p), lq = logSoftmax(q)
        var kl: Double = 0
        for i in p.indices { kl += exp(lp[i]) * (lp[i] - lq[i]) }
        return Float(max(kl, 0))
    }

    static func logSoftmax(_ z: [Float]) -> [Double] {
        let m = Double(z.max() ?? 0)
        let lse = m + log(z.reduce(0.0) { $0 + exp(Double($1) - m) })
        return z.map { Double($0) - lse }
    }
}
