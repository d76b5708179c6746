/// Hyper-parameters of a Llama-family model, read from GGUF metadata (`{arch}.*` keys).
public struct LlamaConfig: Sendable, Equatable, Codable {
    public var architecture: String
    public var dim: Int            // embedding length
    public var layerCount: Int
    public var ffnDim: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ropeDim: Int
    public var ropeBase: Double
    public var rmsEps: Float
    public var contextLength: Int
    public var vocabSize: Int
    /// Which elements RoPE rotates together: adjacent pairs (GGUF `llama`, whose converter permuted Q/K) or the
    /// two halves of each head (llama.cpp's NEOX type: `qwen2`).
    public var ropeStyle: RopeStyle
    /// Q, K and V carry biases (`attn_q.bias` …): `qwen2`.
    public var qkvBias: Bool

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }
    /// Query heads sharing one K/V head (grouped-query attention).
    public var groupSize: Int { headCount / kvHeadCount }

    /// Architectures whose blocks are the Llama block (RMSNorm, SwiGLU, grouped-query attention): `llama` and
    /// `mistral` exactly; `qwen2` adds Q/K/V biases and rotates halves.
    public static let supportedArchitectures: Set<String> = ["llama", "mistral", "qwen2"]

    public init(architecture: String = "llama", dim: Int, layerCount: Int, ffnDim: Int, headCount: Int,
                kvHeadCount: Int, headDim: Int? = nil, ropeDim: Int? = nil, ropeBase: Double = 10000,
                rmsEps: Float = 1e-5, contextLength: Int = 2048, vocabSize: Int, ropeStyle: RopeStyle = .adjacentPairs,
                qkvBias: Bool = false) {
        self.architecture = architecture
        self.dim = dim
        self.layerCount = layerCount
        self.ffnDim = ffnDim
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim ?? dim / headCount
        self.ropeDim = ropeDim ?? self.headDim
        self.ropeBase = ropeBase
        self.rmsEps = rmsEps
        self.contextLength = contextLength
        self.vocabSize = vocabSize
        self.ropeStyle = ropeStyle
        self.qkvBias = qkvBias
    }

    public init(gguf f: GGUFFile) throws {
        let arch = try f.string("general.architecture")
        guard Self.supportedArchitectures.contains(arch) else { throw ModelError.unsupportedArchitecture(arch) }
        let p = arch + "."
        let dim = try f.int(p + "embedding_length")
        let heads = try f.int(p + "attention.head_count")
        let kvHeads = f.metadata[p + "attention.head_count_kv"] == nil ? heads : try f.int(p + "attention.head_count_kv")
        let headDim = f.metadata[p + "attention.key_length"] == nil ? (heads > 0 ? dim / heads : 0)
            : try f.int(p + "attention.key_length")
        let ropeDim = f.metadata[p + "rope.dimension_count"] == nil ? headDim : try f.int(p + "rope.dimension_count")
        let base = f.metadata[p + "rope.freq_base"] == nil ? 10000 : try f.double(p + "rope.freq_base")
        let eps = try f.double(p + "attention.layer_norm_rms_epsilon")
        let ctx = f.metadata[p + "context_length"] == nil ? 2048 : try f.int(p + "context_length")
        let embd = try f.requireTensor("token_embd.weight")
        self.init(architecture: arch, dim: dim, layerCount: try f.int(p + "block_count"),
                  ffnDim: try f.int(p + "feed_forward_length"), headCount: heads, kvHeadCount: kvHeads,
                  headDim: headDim, ropeDim: ropeDim, ropeBase: base, rmsEps: Float(eps), contextLength: ctx,
                  vocabSize: embd.rows, ropeStyle: arch == "qwen2" ? .halves : .adjacentPairs, qkvBias: arch == "qwen2")
        try validate()
    }

    public func validate() throws {
        func bad(_ why: String) -> ModelError { .invalidConfig(why) }
        guard dim > 0, layerCount > 0, ffnDim > 0, headCount > 0, kvHeadCount > 0, headDim > 0, vocabSize > 0 else {
            throw bad("sizes must be positive (dim \(dim), layers \(layerCount), ffn \(ffnDim), heads \(headCount)/\(kvHeadCount), head dim \(headDim), vocab \(vocabSize))")
        }
        guard headCount % kvHeadCount == 0 else { throw bad("\(headCount) query heads do not divide into \(kvHeadCount) K/V heads") }
        guard ropeDim % 2 == 0, ropeDim <= headDim else { throw bad("rope dimension \(ropeDim) must be even and at most the head dimension \(headDim)") }
        guard dim <= 1 << 16, ffnDim <= 1 << 18, layerCount <= 1024, vocabSize <= 1 << 22 else { throw bad("sizes are implausibly large") }
        guard contextLength > 0 else { throw bad("context length must be positive") }
    }
}

/// How RoPE pairs the elements of a head (llama.cpp's rope types NORM and NEOX).
public enum RopeStyle: String, Sendable, Codable {
    /// (x[2i], x[2i+1]) rotate together.
    case adjacentPairs
    /// (x[i], x[i + ropeDim/2]) rotate together.
    case halves
}

/// A half-open range of layer indices, the unit a worker hosts.
public struct LayerRange: Sendable, Hashable, Codable, CustomStringConvertible {
    public let lowerBound: Int
    public let upperBound: Int

    public init(_ lower: Int, _ upper: Int) {
        precondition(lower <= upper, "layer range \(lower)..<\(upper) is reversed")
        lowerBound = lower
        upperBound = upper
    }

    public init(_ r: Range<Int>) { self.init(r.lowerBound, r.upperBound) }

    /// Parses "a-b" (inclusive, as on the command line) or "a" (one layer).
    public init?(parsing s: String) {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let a = Int(parts[0]), let b = Int(parts.last!), a >= 0, b >= a else {
            return nil
        }
        self.init(a, b + 1)
    }

    public var count: Int { upperBound - lowerBound }
    public var indices: Range<Int> { lowerBound..<upperBound }
    public func contains(_ l: Int) -> Bool { l >= lowerBound && l < upperBound }
    /// As written on the command line: inclusive.
    public var description: String { count == 0 ? "none" : "\(lowerBound)-\(upperBound - 1)" }

    /// The `index`-th of `count` contiguous slices of `layers` layers, sizes differing by at most one (earlier
    /// slices take the remainder): 30 layers in 3 are 0-9, 10-19, 20-29.
    public static func evenSlice(_ index: Int, of count: Int, layers: Int) -> LayerRange {
        let base = layers / count, extra = layers % count
        let start = index * base + min(index, extra)
        return LayerRange(start, start + base + (index < extra ? 1 : 0))
    }
}

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unsupportedArchitecture(String)
    case invalidConfig(String)
    case layerRangeOutOfModel(LayerRange, layers: Int)
    case contextOverflow(position: Int, limit: Int)
    case tokenOutOfVocabulary(Int, vocab: Int)
    case badBatch(String)
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let a):
            "unsupported model architecture \"\(a)\" (supported: \(LlamaConfig.supportedArchitectures.sorted().joined(separator: ", ")))"
        case .invalidConfig(let w): "invalid model configuration: \(w)"
        case .layerRangeOutOfModel(let r, let n): "layer range \(r) is outside the model's \(n) layers (0-\(n - 1))"
        case .contextOverflow(let p, let l): "position \(p) is beyond the context limit of \(l) tokens"
        case .tokenOutOfVocabulary(let t, let v): "token id \(t) is outside the vocabulary of \(v) tokens"
        case .badBatch(let w): "invalid batch: \(w)"
        case .invalidRequest(let w): w
        }
    }
}
