import Foundation
import RadialModel

/// What training measured, saved in the router file and printed at the end.
public struct TrainingSummary: Codable, Sendable {
    public var trainTokens: Int
    public var heldOutTokens: Int
    /// The epoch whose parameters were kept (the lowest held-out loss).
    public var epochs: Int
    public var trainLoss: Float
    public var heldOutLoss: Float
    /// Mean absolute error of the predicted contribution on held-out tokens.
    public var heldOutMAE: Float
    /// Pearson correlation of predicted and measured contribution on held-out tokens, over all layers.
    public var heldOutCorrelation: Float
    /// The same for a predictor that knows only the layer (its training mean): what the state adds is the difference.
    public var layerOnlyCorrelation: Float
    /// Correlation within each layer, averaged over layers: how well the router ranks tokens at one layer, which
    /// is what a per-token decision needs (a layer-only predictor scores 0 here).
    public var withinLayerCorrelation: Float
    public var seconds: Double
}

/// What a router learns to predict for a (token, layer): the size of the layer's update (the paper's residual
/// ratio), or what skipping it costs the next-token distribution (`SkipCostProbe`).
public enum RouterLabels: String, Codable, Sendable, CaseIterable {
    case ratio
    case cost
}

/// Distils a router from a dense trace: regression of each layer's measured contribution (clamped to 0...1) from
/// the state entering it, with a cross-entropy loss on the sigmoid output (soft labels), Adam, mini-batches.
/// Windows are split into training and held-out sets before anything is fitted.
public struct RouterTrainer {
    public var width = 64
    public var epochs = 12
    public var batchSize = 256
    public var learningRate: Float = 1e-3
    public var heldOutFraction = 0.1
    public var seed: UInt64 = 1

    public init() {}

    public struct Progress: Sendable {
        public var epoch: Int
        public var epochs: Int
        public var trainLoss: Float
        public var heldOutLoss: Float
    }

    /// `set.features` rows are (token, layer) pairs in token-major order.
    public func train(_ set: TrainingSet, progress: ((Progress) -> Void)? = nil) -> (RouterNetwork, TrainingSummary, calibration: [[Float]]) {
        let clock = ContinuousClock(), start = clock.now
        let L = set.layers, F = set.dim + 1, dim = set.dim
        let features = set.features, labels = set.labels
        var trainRows: [Int] = [], heldRows: [Int] = []
        for (t, held) in set.heldOut.enumerated() {
            if held { heldRows += (t * L)..<((t + 1) * L) } else { trainRows += (t * L)..<((t + 1) * L) }
        }
        let heldStart = trainRows.count / L
        var net = RouterNetwork(dim: dim, layers: L, width: width, seed: seed)
        var adam = Adam(count: net.parameterCount, rate: learningRate)
        var rng = SplitMix64(seed: seed &+ 7)
        var order = trainRows
        var trainLoss: Float = 0, heldLoss: Float = 0
        // Early stopping: the parameters of the epoch with the lowest held-out loss are kept. Skip-cost labels are
        // noisy (a token's cost depends on the rest of the network, not only on the state the router sees), and
        // on them the held-out loss turns up after 2-3 epochs while the training loss keeps falling.
        var best = (loss: Float.infinity, net: net, epoch: 0, trainLoss: Float(0))
        for epoch in 1...epochs {
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
            var sum: Float = 0
            for b in stride(from: 0, to: order.count, by: batchSize) {
                let rows = Array(order[b..<min(b + batchSize, order.count)])
                let (loss, grad) = Self.lossAndGradient(net, rows: rows, inputs: features, labels: labels, dim: F, layers: L)
                sum += loss * Float(rows.count)
                adam.step(&net, grad)
            }
            trainLoss = sum / Float(max(order.count, 1))
            heldLoss = heldRows.isEmpty ? 0 : Self.lossAndGradient(net, rows: heldRows, inputs: features, labels: labels, dim: F, layers: L, wantGradient: false).0
            progress?(Progress(epoch: epoch, epochs: epochs, trainLoss: trainLoss, heldOutLoss: heldLoss))
            if heldRows.isEmpty || heldLoss < best.loss { best = (heldLoss, net, epoch, trainLoss) }
        }
        (net, heldLoss, trainLoss) = (best.net, best.loss, best.trainLoss)

        // Measure on held-out rows; calibrate thresholds on training rows.
        let predict = { (row: Int) -> Float in
            features.withUnsafeBufferPointer { net.scores(features: $0.baseAddress! + row * F, layers: CollectionOfOne(row % L))[0] }
        }
        let heldPred = heldRows.map(predict)
        let heldTrue = heldRows.map { labels[$0] }
        let mae = zip(heldPred, heldTrue).reduce(0) { $0 + abs($1.0 - $1.1) } / Float(max(heldRows.count, 1))
        var layerMean = [Float](repeating: 0, count: L), layerCount = [Float](repeating: 0, count: L)
        for r in trainRows { layerMean[r % L] += labels[r]; layerCount[r % L] += 1 }
        for l in 0..<L { layerMean[l] /= max(layerCount[l], 1) }
        let corr = Self.correlation(heldPred, heldTrue)
        let layerOnly = Self.correlation(heldRows.map { layerMean[$0 % L] }, heldTrue)
        let within = (0..<L).map { l -> Float in
            let idx = heldRows.indices.filter { heldRows[$0] % L == l }
            return Self.correlation(idx.map { heldPred[$0] }, idx.map { heldTrue[$0] })
        }.reduce(0, +) / Float(L)
        var perLayer = Array(repeating: [Float](), count: L)
        for r in trainRows { perLayer[r % L].append(predict(r)) }
        let calibration = perLayer.map { v -> [Float] in
            let s = v.sorted()
            return (0...100).map { quantile(s, Double($0) / 100) }
        }
        let summary = TrainingSummary(trainTokens: heldStart, heldOutTokens: heldRows.count / L, epochs: best.epoch, trainLoss: trainLoss,
                                      heldOutLoss: heldLoss, heldOutMAE: mae, heldOutCorrelation: corr,
                                      layerOnlyCorrelation: layerOnly, withinLayerCorrelation: within, seconds: (clock.now - start).seconds)
        return (net, summary, calibration)
    }

    /// Features and labels from one or more traces over the same text (the dense one, then routed ones), one row
    /// per token and decision unit: a layer, or a block or run of layers (`layout`) labelled with the whole unit's
    /// contribution ||h_out − h_in|| / ||h_out||.
    public struct TrainingSet: Sendable {
        public let dim: Int
        public let modelLayers: Int
        /// The decision units: single layers, uniform blocks, or hand-named runs.
        public let layout: UnitLayout
        public let labelKind: RouterLabels
        /// Under `.cost`, a skip cost c (KL, nats) becomes the label 1 − exp(−c / costScale): 0 for a free skip,
        /// towards 1 for a costly one, the typical cost at 0.63.
        public let costScale: Float
        public private(set) var features: [Float] = []
        public private(set) var labels: [Float] = []
        /// Per token: whether it is held out.
        public private(set) var heldOut: [Bool] = []

        /// `layout`: nil decides each layer on its own.
        public init(dim: Int, layers: Int, layout: UnitLayout? = nil, labels: RouterLabels = .ratio, costScale: Float = 1) {
            self.dim = dim
            self.modelLayers = layers
            self.layout = layout ?? .blocks(1, layers: layers)
            labelKind = labels
            self.costScale = costScale
        }

        /// Decision units per token (what the router's one-hot covers).
        public var layers: Int { layout.count }
        public var tokens: Int { heldOut.count }

        /// Adds a trace's states (turned into router features) and contributions (clamped to 0...1). The last
        /// `heldOutFraction` of the windows are held out, the same windows for every trace of the text.
        public mutating func append(_ trace: ResidualProfiler.Trace, windowLength: Int, heldOutFraction: Double) {
            let L = modelLayers, U = layers, F = dim + 1, T = trace.profile.tokens
            precondition(trace.inputs.count == T * L * dim && trace.outputs.count == T * dim, "the trace was run without keepInputs")
            precondition(labelKind == .ratio || trace.costs.count == T * U, "the trace was run without skip costs")
            let base = features.count
            features += repeatElement(0, count: T * U * F)
            var added = [Float](repeating: 0, count: T * U)
            features.withUnsafeMutableBufferPointer { f in
                for t in 0..<T {
                    for u in 0..<U {
                        let members = layout.layers(of: u), start = members.lowerBound, end = members.upperBound
                        let x = trace.state(token: t, layer: start, layers: L, dim: dim)
                        x.withUnsafeBufferPointer { RouterNetwork.features($0.baseAddress!, dim: dim, into: f.baseAddress! + base + (t * U + u) * F) }
                        if labelKind == .cost {
                            let c = trace.costs[t * U + u]
                            added[t * U + u] = c.isFinite ? 1 - expf(-c / costScale) : 1
                            continue
                        }
                        added[t * U + u] = members.count == 1 ? trace.profile.ratio(token: t, layer: start)
                            : ResidualProfiler.ratio(before: Array(x), after: Array(trace.state(token: t, layer: end, layers: L, dim: dim)), row: 0, dim: dim)
                    }
                }
            }
            labels += added.map { min(max($0, 0), 1) }
            let windows = max(T / windowLength, 1)
            let held = windows > 1 ? max(1, Int((Double(windows) * heldOutFraction).rounded())) : 0
            heldOut += (0..<T).map { $0 / windowLength >= windows - held }
        }
    }

    static func correlation(_ a: [Float], _ b: [Float]) -> Float {
        let n = Float(a.count)
        guard n > 1 else { return 0 }
        let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
        var sab: Float = 0, saa: Float = 0, sbb: Float = 0
        for (x, y) in zip(a, b) { sab += (x - ma) * (y - mb); saa += (x - ma) * (x - ma); sbb += (y - mb) * (y - mb) }
        return saa > 0 && sbb > 0 ? sab / (saa * sbb).squareRoot() : 0
    }

    /// Mean soft-label cross-entropy over `rows` (row = token · layers + layer) and its gradient, flattened in the
    /// network's parameter order (w1, w1Layer, b1, w2, b2).
    static func lossAndGradient(_ net: RouterNetwork, rows: [Int], inputs: [Float], labels: [Float], dim: Int, layers L: Int, // dim: features per row
                                wantGradient: Bool = true) -> (Float, [Float]) {
        let B = rows.count, W = net.width
        var x = [Float](repeating: 0, count: B * dim)
        inputs.withUnsafeBufferPointer { src in
            x.withUnsafeMutableBufferPointer { dst in
                for (i, r) in rows.enumerated() { (dst.baseAddress! + i * dim).update(from: src.baseAddress! + r * dim, count: dim) }
            }
        }
        var h = [Float](repeating: 0, count: B * W)
        x.withUnsafeBufferPointer { xp in net.w1.withUnsafeBufferPointer { wp in h.withUnsafeMutableBufferPointer { hp in
            BLAS.linear(xp.baseAddress!, rows: B, inputs: dim, weight: wp.baseAddress!, outputs: W, into: hp.baseAddress!)
        }}}
        var loss: Float = 0
        var dh = [Float](repeating: 0, count: wantGradient ? B * W : 0)
        var g = [Float](repeating: 0, count: wantGradient ? net.parameterCount : 0)
        let oL = W * dim, oB1 = oL + W * L, oW2 = oB1 + W, oB2 = oW2 + W
        for (i, r) in rows.enumerated() {
            let l = r % L
            var o = net.b2
            for j in 0..<W {
                let v = h[i * W + j] + net.w1Layer[j * L + l] + net.b1[j]
                h[i * W + j] = v
                if v > 0 { o += v * net.w2[j] }
            }
            let p = 1 / (1 + expf(-o)), y = labels[r]
            loss += -(y * logf(max(p, 1e-7)) + (1 - y) * logf(max(1 - p, 1e-7)))
            guard wantGradient else { continue }
            let d = (p - y) / Float(B)
            g[oB2] += d
            for j in 0..<W where h[i * W + j] > 0 {
                g[oW2 + j] += d * h[i * W + j]
                let dj = d * net.w2[j]
                dh[i * W + j] = dj
                g[oB1 + j] += dj
                g[oL + j * L + l] += dj
            }
        }
        if wantGradient {
            // dW1 (W × dim) = dHᵀ (W × B) · X (B × dim)
            g.withUnsafeMutableBufferPointer { gp in dh.withUnsafeBufferPointer { dp in x.withUnsafeBufferPointer { xp in
                BLAS.gemmTN(m: W, n: dim, k: B, a: dp.baseAddress!, b: xp.baseAddress!, c: gp.baseAddress!)
            }}}
        }
        return (loss / Float(max(B, 1)), g)
    }
}

/// Adam over the network's parameters in their flattened order.
struct Adam {
    var m: [Float], v: [Float], t = 0
    let rate: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8

    init(count: Int, rate: Float) {
        m = Array(repeating: 0, count: count)
        v = Array(repeating: 0, count: count)
        self.rate = rate
    }

    mutating func step(_ net: inout RouterNetwork, _ g: [Float]) {
        t += 1
        let c1 = 1 - powf(beta1, Float(t)), c2 = 1 - powf(beta2, Float(t))
        var offset = 0
        func update(_ p: inout [Float]) {
            for i in p.indices {
                let k = offset + i
                m[k] = beta1 * m[k] + (1 - beta1) * g[k]
                v[k] = beta2 * v[k] + (1 - beta2) * g[k] * g[k]
                p[i] -= rate * (m[k] / c1) / ((v[k] / c2).squareRoot() + eps)
            }
            offset += p.count
        }
        update(&net.w1); update(&net.w1Layer); update(&net.b1); update(&net.w2)
        var b2 = [net.b2]; update(&b2); net.b2 = b2[0]
    }
}
