import CRadialKernels
import Dispatch

/// One token's row in a batch handed to a shard.
public struct ShardToken: @unchecked Sendable {
    /// The session's K/V for this shard's layers.
    public let cache: KVCache
    /// Position in the session (0-based); RoPE angle and the K/V slot.
    public let position: Int
    /// Layers of this shard the token runs; nil runs them all. A layer left out applies no residual update, and
    /// gets K/V by the batch's `SkippedLayerKV` policy.
    public let layers: LayerSet?
    /// Layers this token ran before reaching this shard (a router's minimum-depth rule counts them).
    public let layersBefore: Int
    /// Whether a batch's chooser decides for this row (false: the row runs exactly `layers`).
    public let routed: Bool

    public init(cache: KVCache, position: Int, layers: LayerSet? = nil, layersBefore: Int = 0, routed: Bool = true) {
        self.cache = cache
        self.position = position
        self.layers = layers
        self.layersBefore = layersBefore
        self.routed = routed
    }
}

/// Decides, row by row and layer by layer, whether a token runs a layer its plan allows: a trained router.
/// Asked with the hidden state entering the layer, so a skipped layer leaves the next decision the same input.
public protocol LayerChooser: Sendable {
    /// `runSoFar` counts the layers this token has already run, in earlier shards too; `ran` holds the layers it
    /// ran in this shard so far (a router deciding whole blocks of layers repeats its block's first decision).
    func runs(layer: Int, hidden: UnsafePointer<Float>, runSoFar: Int, ran: LayerSet) -> Bool
    /// Whether it decides for a token at `position` at all (false: the token runs every layer of its plan).
    func routes(position: Int) -> Bool
    /// Stand-ins for runs of layers: a token that skips a whole run leaves it through the run's map.
    var maps: [RunMap] { get }
}

extension LayerChooser {
    public func routes(position: Int) -> Bool { true }
    public var maps: [RunMap] { [] }
}

/// A contiguous range of transformer blocks: what a worker hosts, or the whole stack in-process.
///
/// `forward` takes a batch of token rows from any mix of sessions and positions (a prompt's tokens, one decode
/// token per session, or both) and runs each row through the subset of layers its plan names. Weights are
/// read-only after load, so one shard may serve many callers; a given session's cache must only be advanced by
/// one call at a time.
public final class LlamaShard: Sendable {
    public let config: LlamaConfig
    public let range: LayerRange
    let layers: [LlamaLayerWeights]
    let rope: Rope
    /// How this shard multiplies (`--activations`): fixed when it is made, reported at the handshake.
    public let activations: QuantizedMatrix.Activations

    /// Loads only the tensors of `range` (memory grows with the shard, not the model).
    public convenience init(file: GGUFFile, config: LlamaConfig, range: LayerRange, activations: QuantizedMatrix.Activations = .f32,
                            progress: LoadProgress? = nil) throws {
        guard range.lowerBound >= 0, range.upperBound <= config.layerCount else {
            throw ModelError.layerRangeOutOfModel(range, layers: config.layerCount)
        }
        self.init(config: config, range: range, layers: try WeightLoader.layers(file, config, range, progress: progress),
                  activations: activations)
    }

    public init(config: LlamaConfig, range: LayerRange, layers: [LlamaLayerWeights], activations: QuantizedMatrix.Activations = .f32) {
        precondition(layers.count == range.count)
        self.activations = activations
        self.config = config
        self.range = range
        self.layers = layers
        rope = Rope(headDim: config.headDim, ropeDim: config.ropeDim, base: config.ropeBase, style: config.ropeStyle)
    }

    public var weightBytes: Int { layers.reduce(0) { $0 + $1.bytes } }

    public func makeCache(initialCapacity: Int = 64, maxPositions: Int? = nil) -> KVCache {
        KVCache(layers: range, kvDim: config.kvDim, heads: config.kvHeadCount, maxPositions: maxPositions ?? config.contextLength,
                initialCapacity: initialCapacity)
    }

    /// Runs `tokens.count` rows of `hidden` (row-major, `config.dim` floats each) through this shard, in place.
    /// With a `chooser`, each row runs only the layers of its plan the chooser picks. A row that leaves out every
    /// layer of a run in `maps` (default: the chooser's) leaves the run through its map, whether the chooser or
    /// its plan left the run out (a deferred K/V fill, a replayed history). Returns the layers each row ran.
    @discardableResult
    public func forward(_ hidden: UnsafeMutablePointer<Float>, tokens: [ShardToken], kvPolicy: SkippedLayerKV = .fill,
                        chooser: (any LayerChooser)? = nil, maps: [RunMap]? = nil) throws -> [LayerSet] {
        let n = tokens.count
        guard n > 0 else { return [] }
        try reserve(tokens)
        let dim = config.dim
        let allRun = chooser == nil && tokens.allSatisfy { $0.layers == nil }
        let maps = (maps ?? chooser?.maps ?? []).filter { range.contains($0.layers.lowerBound) }
        var scratch = Scratch(config: config, rows: n)
        if allRun {
            for l in range.indices { runBlock(l, x: hidden, tokens: tokens, scratch: &scratch) }
            return Array(repeating: LayerSet.all(range), count: n)
        }
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
        defer { gathered.deallocate() }
        var ran = Array(repeating: LayerSet(), count: n)
        var runSoFar = tokens.map(\.layersBefore)
        for l in range.indices {
            var run: [Int] = [], skip: [Int] = []
            for i in 0..<n {
                var runs = tokens[i].layers?.contains(l) ?? true
                if runs, tokens[i].routed, let chooser, chooser.routes(position: tokens[i].position) {
                    runs = chooser.runs(layer: l, hidden: hidden + i * dim, runSoFar: runSoFar[i], ran: ran[i])
                }
                if runs { run.append(i); ran[i].insert(l); runSoFar[i] += 1 } else { skip.append(i) }
            }
            // K/V of skipped rows first, so rows of the same session that run this layer can attend to them.
            if !skip.isEmpty {
                switch kvPolicy {
                case .fill:
                    for (j, i) in skip.enumerated() { (gathered + j * dim).update(from: hidden + i * dim, count: dim) }
                    fillKV(l, x: gathered, tokens: skip.map { tokens[$0] }, scratch: &scratch)
                case .mask:
                    for i in skip { tokens[i].cache.markMasked(l, tokens[i].position) }
                }
            }
            if !maps.isEmpty, !skip.isEmpty {
                RunMap.bridge(after: l, maps: maps, x: hidden, rows: skip, ran: ran, dim: dim, activations: activations)
            }
            if run.isEmpty { continue }
            if run.count == n {
                runBlock(l, x: hidden, tokens: tokens, scratch: &scratch)
            } else {
                for (j, i) in run.enumerated() { (gathered + j * dim).update(from: hidden + i * dim, count: dim) }
                runBlock(l, x: gathered, tokens: run.map { tokens[$0] }, scratch: &scratch)
                for (j, i) in run.enumerated() { (hidden + i * dim).update(from: gathered + j * dim, count: dim) }
            }
        }
        return ran
    }

    /// Runs the one layer `l` on every row, in place: for tools that look at each layer's effect (profiling,
    /// the oracle). Rows must reach `l` in order: call it for each layer of the range in turn.
    public func runLayer(_ l: Int, hidden: UnsafeMutablePointer<Float>, tokens: [ShardToken]) throws {
        guard range.contains(l) else { throw ModelError.badBatch("layer \(l) is not in this shard (\(range))") }
        guard !tokens.isEmpty else { return }
        try reserve(tokens)
        var scratch = Scratch(config: config, rows: tokens.count)
        runBlock(l, x: hidden, tokens: tokens, scratch: &scratch)
    }

    private func reserve(_ tokens: [ShardToken]) throws {
        for t in tokens {
            guard t.cache.layers == range, t.cache.kvDim == config.kvDim else {
                throw ModelError.badBatch("a K/V cache for layers \(t.cache.layers) was handed to the shard for \(range)")
            }
            try t.cache.reserve(position: t.position)
        }
    }

    /// Working buffers for one forward call, sized for its row count.
    struct Scratch {
        var xb: [Float]     // (rows, dim)      normalised input of the current sub-block
        var qkv: [Float]    // (rows, qDim + 2·kvDim)
        var attn: [Float]   // (rows, qDim)     attention output before Wo
        var gateUp: [Float] // (rows, 2·ffn)
        var act: [Float]    // (rows, ffn)      SwiGLU activation

        init(config c: LlamaConfig, rows: Int) {
            xb = Array(repeating: 0, count: rows * c.dim)
            qkv = Array(repeating: 0, count: rows * (c.qDim + 2 * c.kvDim))
            attn = Array(repeating: 0, count: rows * c.qDim)
            gateUp = Array(repeating: 0, count: rows * 2 * c.ffnDim)
            act = Array(repeating: 0, count: rows * c.ffnDim)
        }
    }

    /// The hot path: one transformer block over `tokens.count` contiguous rows of `x`, all of which run it.
    /// `readOnly` (probes) leaves every cache as it was: each row attends to its cache's earlier positions and to
    /// its own fresh K/V.
    func runBlock(_ l: Int, x: UnsafeMutablePointer<Float>, tokens: [ShardToken], scratch s: inout Scratch, readOnly: Bool = false) {
        let c = config, w = layers[l - range.lowerBound]
        let m = tokens.count, dim = c.dim, qkvDim = c.qDim + 2 * c.kvDim
        s.xb.withUnsafeMutableBufferPointer { xb in
        s.qkv.withUnsafeMutableBufferPointer { qkv in
        s.attn.withUnsafeMutableBufferPointer { attn in
            let xb = xb.baseAddress!, qkv = qkv.baseAddress!, attn = attn.baseAddress!
            // attention rmsnorm
            for r in 0..<m { Ops.rmsNorm(x + r * dim, weight: w.attnNorm.readOnly, eps: c.rmsEps, count: dim, into: xb + r * dim) }
            // q, k, v in one matmul: (m, dim) · (qkvDim, dim)ᵀ
            w.wqkv.apply(xb, rows: m, into: qkv, activations: activations)
            if let bias = w.qkvBias { for r in 0..<m { Ops.add(qkv + r * qkvDim, bias.readOnly, count: qkvDim) } }
            // RoPE, then K/V into each session's cache
            for r in 0..<m {
                let row = qkv + r * qkvDim, t = tokens[r]
                rope.apply(row, heads: c.headCount, position: t.position)
                rope.apply(row + c.qDim, heads: c.kvHeadCount, position: t.position)
                if !readOnly { t.cache.write(l, t.position, key: row + c.qDim, value: row + c.qDim + c.kvDim) }
            }
            // causal grouped-query attention, row by row (rows may belong to different sessions)
            attendAll(l, qkv: qkv, ldq: qkvDim, tokens: tokens, out: attn, readOnly: readOnly)
            // output projection, residual: x += Wo · attn
            w.wo.apply(attn, rows: m, into: x, activations: activations, accumulate: true)
            // ffn rmsnorm
            for r in 0..<m { Ops.rmsNorm(x + r * dim, weight: w.ffnNorm.readOnly, eps: c.rmsEps, count: dim, into: xb + r * dim) }
        }}}
        s.gateUp.withUnsafeMutableBufferPointer { gu in
        s.act.withUnsafeMutableBufferPointer { act in
        s.xb.withUnsafeBufferPointer { xb in
            let gu = gu.baseAddress!, act = act.baseAddress!, f = c.ffnDim
            // gate and up in one matmul, SwiGLU, then down with the residual: x += Wdown · (silu(gate) ⊙ up)
            w.wGateUp.apply(xb.baseAddress!, rows: m, into: gu, activations: activations)
            for r in 0..<m { Ops.swiglu(gate: gu + r * 2 * f, up: gu + r * 2 * f + f, count: f, into: act + r * f) }
            w.wDown.apply(act, rows: m, into: x, activations: activations, accumulate: true)
        }}}
    }

    /// Attention for every row: each (row, K/V head) pair is independent — `groupSize` query heads share that
    /// K/V head — so pairs are spread over the kernel threads when there is enough work to repay the hand-off.
    /// `readOnly`: a row's own K/V come from `qkv`, not the cache (see `probe`).
    func attendAll(_ l: Int, qkv: UnsafeMutablePointer<Float>, ldq: Int, tokens: [ShardToken], out: UnsafeMutablePointer<Float>,
                   readOnly: Bool = false) {
        let c = config, hd = c.headDim, g = c.groupSize, kvh = c.kvHeadCount
        let scale = 1 / Float(hd).squareRoot()
        let pairs = tokens.count * kvh
        let work = tokens.reduce(0) { $0 + $1.position + 1 } * c.headCount * hd
        let qAddr = UInt(bitPattern: qkv), oAddr = UInt(bitPattern: out)
        let one: @Sendable (Int) -> Void = { pair in
            let r = pair / kvh, h = pair % kvh, t = tokens[r], npos = t.position + 1
            let q = UnsafePointer<Float>(bitPattern: qAddr)! + r * ldq
            if readOnly {
                self.attendProbe(l, q: q + h * g * hd, head: h, token: t, ownKey: q + c.qDim + h * hd, ownValue: q + c.qDim + c.kvDim + h * hd,
                                 scale: scale, out: UnsafeMutablePointer<Float>(bitPattern: oAddr)! + r * c.qDim + h * g * hd)
                return
            }
            let present = t.cache.needsPresenceCheck(l) ? t.cache.presence(l) : nil
            withUnsafeTemporaryAllocation(of: Float.self, capacity: g * npos) { scores in
                radial_attend(q + h * g * hd, Int32(g), Int32(hd),
                              t.cache.keyBase(l, head: h), t.cache.valueBase(l, head: h), Int32(hd), Int32(npos),
                              present, scale, scores.baseAddress!, UnsafeMutablePointer<Float>(bitPattern: oAddr)! + r * c.qDim + h * g * hd)
            }
        }
        let threads = ComputePool.shared.threads
        if threads > 1 && pairs > 1 && work >= 1 << 15 {
            let per = (pairs + threads - 1) / threads
            ComputePool.shared.run(threads) { i in
                for pair in (i * per)..<min(pairs, (i + 1) * per) { one(pair) }
            }
        } else {
            for pair in 0..<pairs { one(pair) }
        }
    }

    /// The `fill` policy: K/V for rows that skip layer `l`, projected from the hidden state entering it.
    func fillKV(_ l: Int, x: UnsafeMutablePointer<Float>, tokens: [ShardToken], scratch s: inout Scratch) {
        let c = config, w = layers[l - range.lowerBound], m = tokens.count, dim = c.dim, kv2 = 2 * c.kvDim
        s.xb.withUnsafeMutableBufferPointer { xb in
        s.qkv.withUnsafeMutableBufferPointer { kv in
            let xb = xb.baseAddress!, kv = kv.baseAddress!
            for r in 0..<m { Ops.rmsNorm(x + r * dim, weight: w.attnNorm.readOnly, eps: c.rmsEps, count: dim, into: xb + r * dim) }
            // only the K and V rows of the fused matrix
            w.wqkv.apply(xb, rows: m, into: kv, activations: activations, rowStart: c.qDim, rowCount: kv2)
            if let bias = w.qkvBias { for r in 0..<m { Ops.add(kv + r * kv2, bias.readOnly + c.qDim, count: kv2) } }
            for r in 0..<m {
                let row = kv + r * kv2, t = tokens[r]
                rope.apply(row, heads: c.kvHeadCount, position: t.position)
                t.cache.write(l, t.position, key: row, value: row + c.kvDim)
            }
        }}
    }
}
