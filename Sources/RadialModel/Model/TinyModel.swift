/// Writes small random-weight Llama models as GGUF, with a working byte-level tokenizer: the tests' models,
/// and what `radial make-tiny-model` produces for trying a cluster without downloading anything.
public struct TinyModelSpec: Sendable {
    public var dim = 64
    public var layers = 3
    public var ffnDim = 128
    public var heads = 4
    public var kvHeads = 2
    public var contextLength = 256
    public var ropeBase: Double = 10000
    public var weightType: GGMLType = .f32
    public var tiedOutput = true
    public var seed: UInt64 = 42
    /// `llama`, or `qwen2` (Q/K/V biases, RoPE over halves, the qwen2 pre-tokenizer).
    public var architecture = "llama"
    /// Extra merges beyond the 256 byte tokens (common English pairs), so BPE does some work.
    public var merges = ["t h", "th e", "i n", "a n", "e r", "Ġ t", "Ġt he", "o n", "r e", "Ġ a"]

    public init() {}

    static let specialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    /// Token texts: specials, then the 256 byte symbols, then merged tokens.
    var tokens: [String] {
        var t = Self.specialTokens
        t += (0..<256).map { String(ByteLevel.byteToScalar[$0]) }
        for m in merges { t.append(m.replacingSpace()) }
        return t
    }

    public var vocabSize: Int { tokens.count }

    public func write(to path: String) throws {
        var rng = SplitMix64(seed: seed)
        func uniform(_ n: Int, _ scale: Float) -> [Float] {
            (0..<n).map { _ in (Float(rng.nextDouble()) * 2 - 1) * scale }
        }
        func norm(_ n: Int) -> [Float] { (0..<n).map { _ in 1 + (Float(rng.nextDouble()) - 0.5) * 0.2 } }
        let headDim = dim / heads, kvDim = kvHeads * headDim, vocab = vocabSize
        let wScale = 1.5 / Float(dim).squareRoot()

        var w = GGUFWriter()
        let a = architecture, qwen2 = a == "qwen2"
        w.set("general.architecture", .string(a))
        w.set("general.name", .string("radial-tiny-\(dim)x\(layers)-seed\(seed)"))
        w.set(a + ".embedding_length", .uint32(UInt32(dim)))
        w.set(a + ".block_count", .uint32(UInt32(layers)))
        w.set(a + ".feed_forward_length", .uint32(UInt32(ffnDim)))
        w.set(a + ".attention.head_count", .uint32(UInt32(heads)))
        w.set(a + ".attention.head_count_kv", .uint32(UInt32(kvHeads)))
        w.set(a + ".attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.set(a + ".rope.freq_base", .float32(Float(ropeBase)))
        w.set(a + ".rope.dimension_count", .uint32(UInt32(headDim)))
        w.set(a + ".context_length", .uint32(UInt32(contextLength)))
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string(qwen2 ? "qwen2" : "smollm"))
        let toks = tokens
        w.set("tokenizer.ggml.tokens", .array(.string, toks.map { .string($0) }))
        w.set("tokenizer.ggml.token_type", .array(.int32, toks.indices.map { .int32($0 < Self.specialTokens.count ? 3 : 1) }))
        w.set("tokenizer.ggml.merges", .array(.string, merges.map { .string($0) }))
        w.set("tokenizer.ggml.bos_token_id", .uint32(1))
        w.set("tokenizer.ggml.eos_token_id", .uint32(2))
        w.set("tokenizer.ggml.add_bos_token", .bool(false))

        // Matrices are listed [inputs, outputs] (innermost first); embedding rows are tokens.
        w.addTensor("token_embd.weight", dimensions: [dim, vocab], values: uniform(vocab * dim, 1), as: weightType)
        w.addTensor("output_norm.weight", dimensions: [dim], values: norm(dim))
        if !tiedOutput {
            w.addTensor("output.weight", dimensions: [dim, vocab], values: uniform(vocab * dim, wScale), as: weightType)
        }
        for l in 0..<layers {
            let p = "blk.\(l)."
            w.addTensor(p + "attn_norm.weight", dimensions: [dim], values: norm(dim))
            w.addTensor(p + "attn_q.weight", dimensions: [dim, dim], values: uniform(dim * dim, wScale), as: weightType)
            w.addTensor(p + "attn_k.weight", dimensions: [dim, kvDim], values: uniform(dim * kvDim, wScale), as: weightType)
            w.addTensor(p + "attn_v.weight", dimensions: [dim, kvDim], values: uniform(dim * kvDim, wScale), as: weightType)
            if qwen2 {
                w.addTensor(p + "attn_q.bias", dimensions: [dim], values: uniform(dim, 0.5))
                w.addTensor(p + "attn_k.bias", dimensions: [kvDim], values: uniform(kvDim, 0.5))
                w.addTensor(p + "attn_v.bias", dimensions: [kvDim], values: uniform(kvDim, 0.5))
            }
            w.addTensor(p + "attn_output.weight", dimensions: [dim, dim], values: uniform(dim * dim, wScale), as: weightType)
            w.addTensor(p + "ffn_norm.weight", dimensions: [dim], values: norm(dim))
            w.addTensor(p + "ffn_gate.weight", dimensions: [dim, ffnDim], values: uniform(dim * ffnDim, wScale), as: weightType)
            w.addTensor(p + "ffn_up.weight", dimensions: [dim, ffnDim], values: uniform(dim * ffnDim, wScale), as: weightType)
            w.addTensor(p + "ffn_down.weight", dimensions: [ffnDim, dim],
                        values: uniform(ffnDim * dim, 1.5 / Float(ffnDim).squareRoot()), as: weightType)
        }
        try w.write(to: path)
    }
}

extension String {
    /// "Ġt he" → "Ġthe": the merged token's text.
    fileprivate func replacingSpace() -> String { split(separator: " ").joined() }
}
