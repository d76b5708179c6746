/// A whole model in one process: head plus one shard holding every layer. Used by `radial run`, the tests, and
/// as the exactness reference for the distributed pipeline.
public final class LlamaModel: Sendable {
    public let config: LlamaConfig
    public let head: LlamaHead
    public let shard: LlamaShard

    public init(config: LlamaConfig, head: LlamaHead, shard: LlamaShard) {
        self.config = config
        self.head = head
        self.shard = shard
    }

    /// Loads every tensor of the file (or only `layers`, for a partial model), to compute in `activations`.
    public convenience init(file: GGUFFile, layers: LayerRange? = nil, activations: QuantizedMatrix.Activations = .f32,
                            progress: LoadProgress? = nil) throws {
        let config = try LlamaConfig(gguf: file)
        let head = try LlamaHead(file: file, config: config, activations: activations)
        let shard = try LlamaShard(file: file, config: config, range: layers ?? LayerRange(0, config.layerCount),
                                   activations: activations, progress: progress)
        self.init(config: config, head: head, shard: shard)
    }

    public convenience init(path: String, activations: QuantizedMatrix.Activations = .f32, progress: LoadProgress? = nil) throws {
        try self.init(file: try GGUFFile(path: path), activations: activations, progress: progress)
    }

    public var weightBytes: Int { head.weightBytes + shard.weightBytes }

    public func makeCache(initialCapacity: Int = 64) -> KVCache { shard.makeCache(initialCapacity: initialCapacity) }

    /// One batch step: rows are (cache, position, token id, layers); returns logits for the rows flagged in
    /// `wantLogits` (all rows when nil), in row order, each `vocabSize` long.
    public func step(_ rows: [(cache: KVCache, position: Int, token: Int, layers: LayerSet?)],
                     wantLogits: [Bool]? = nil, kvPolicy: SkippedLayerKV = .fill,
                     chooser: (any LayerChooser)? = nil, maps: [RunMap]? = nil) throws -> [[Float]] {
        try stepTracing(rows, wantLogits: wantLogits, kvPolicy: kvPolicy, chooser: chooser, maps: maps).logits
    }

    /// `step`, also returning the layers each row ran.
    public func stepTracing(_ rows: [(cache: KVCache, position: Int, token: Int, layers: LayerSet?)],
                            wantLogits: [Bool]? = nil, kvPolicy: SkippedLayerKV = .fill,
                            chooser: (any LayerChooser)? = nil, maps: [RunMap]? = nil) throws -> (logits: [[Float]], layersRun: [LayerSet]) {
        var hidden = try head.embed(rows.map(\.token))
        let ran = try hidden.withUnsafeMutableBufferPointer { h in
            try shard.forward(h.baseAddress!, tokens: rows.map { ShardToken(cache: $0.cache, position: $0.position, layers: $0.layers) },
                              kvPolicy: kvPolicy, chooser: chooser, maps: maps)
        }
        let picked = (0..<rows.count).filter { wantLogits?[$0] ?? true }
        let logits = hidden.withUnsafeBufferPointer { head.logits($0.baseAddress!, picked: picked) }
        let v = config.vocabSize
        return ((0..<picked.count).map { Array(logits[$0 * v..<($0 + 1) * v]) }, ran)
    }

    /// Feeds `tokens` to a session starting at `position` in one prefill batch; returns the last row's logits.
    public func prefill(cache: KVCache, tokens: [Int], startPosition: Int = 0, allLogits: Bool = false) throws -> [[Float]] {
        guard !tokens.isEmpty else { throw ModelError.badBatch("empty prompt") }
        let rows = tokens.enumerated().map { (cache: cache, position: startPosition + $0.offset, token: $0.element, layers: LayerSet?.none) }
        let want = allLogits ? nil : tokens.indices.map { $0 == tokens.count - 1 }
        return try step(rows, wantLogits: want)
    }
}
