/// The ends of the model the coordinator holds: token embedding in, final norm and LM head out.
public final class LlamaHead: Sendable {
    public let config: LlamaConfig
    let weights: LlamaHeadWeights
    /// How the LM head multiplies (`--activations`): fixed when it is made.
    public let activations: QuantizedMatrix.Activations

    public convenience init(file: GGUFFile, config: LlamaConfig, activations: QuantizedMatrix.Activations = .f32) throws {
        self.init(config: config, weights: try WeightLoader.head(file, config), activations: activations)
    }

    public init(config: LlamaConfig, weights: LlamaHeadWeights, activations: QuantizedMatrix.Activations = .f32) {
        self.config = config
        self.weights = weights
        self.activations = activations
    }

    public var weightBytes: Int { weights.bytes }

    /// Writes the embedding rows of `ids` into `hidden` (ids.count rows of dim).
    public func embed(_ ids: [Int], into hidden: UnsafeMutablePointer<Float>) throws {
        let dim = config.dim
        for (r, id) in ids.enumerated() {
            guard id >= 0 && id < config.vocabSize else { throw ModelError.tokenOutOfVocabulary(id, vocab: config.vocabSize) }
            weights.tokenEmbedding.row(id, into: hidden + r * dim)
        }
    }

    public func embed(_ ids: [Int]) throws -> [Float] {
        var h = [Float](repeating: 0, count: ids.count * config.dim)
        try h.withUnsafeMutableBufferPointer { try embed(ids, into: $0.baseAddress!) }
        return h
    }

    /// Final RMSNorm of `rows` hidden rows, in a new buffer.
    public func finalNorm(_ hidden: UnsafePointer<Float>, rows: Int) -> [Float] {
        let dim = config.dim
        var out = [Float](repeating: 0, count: rows * dim)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows {
                Ops.rmsNorm(hidden + r * dim, weight: weights.outputNorm.readOnly, eps: config.rmsEps, count: dim,
                            into: o.baseAddress! + r * dim)
            }
        }
        return out
    }

    /// Logits (rows, vocab) for `rows` hidden rows: final norm, then the LM head.
    public func logits(_ hidden: UnsafePointer<Float>, rows: Int) -> [Float] {
        let normed = finalNorm(hidden, rows: rows)
        var out = [Float](repeating: 0, count: rows * config.vocabSize)
        normed.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                weights.output.apply(x.baseAddress!, rows: rows, into: o.baseAddress!, activations: activations)
            }
        }
        return out
    }

    /// Logits (picked.count, vocab) for the rows `picked` of `hidden` (row-major, dim floats each), in that
    /// order: the rows of a batch that want a next token (a prompt's last row, every decode row).
    public func logits(_ hidden: UnsafePointer<Float>, picked: [Int]) -> [Float] {
        let dim = config.dim
        var selected = [Float](repeating: 0, count: picked.count * dim)
        selected.withUnsafeMutableBufferPointer { out in
            for (j, i) in picked.enumerated() { (out.baseAddress! + j * dim).update(from: hidden + i * dim, count: dim) }
        }
        return selected.withUnsafeBufferPointer { logits($0.baseAddress!, rows: picked.count) }
    }

    /// The LM head's rows for `ids` (ids.count rows of dim, dequantised): logits over a few candidate tokens are
    /// dot products with these and the final-normed state, far cheaper than the whole vocabulary.
    public func outputRows(_ ids: [Int]) -> [Float] {
        let dim = config.dim
        var out = [Float](repeating: 0, count: ids.count * dim)
        out.withUnsafeMutableBufferPointer { o in
            for (r, id) in ids.enumerated() { weights.output.dequantize(rowStart: id, rowCount: 1, into: o.baseAddress! + r * dim) }
        }
        return out
    }
}
