import Dispatch
import Synchronization

/// A fixed-size fp32 buffer owned by one object. Written once at load, read-only afterwards, which is why
/// sharing it across threads is safe (`@unchecked Sendable`).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { pointer.deallocate() }

    public var readOnly: UnsafePointer<Float> { UnsafePointer(pointer) }
    public var bytes: Int { count * MemoryLayout<Float>.size }
}

/// One transformer block's weights, dequantised to fp32, row-major [outputs][inputs].
/// Q, K and V are fused into one matrix (one GEMM per layer), and so are gate and up.
public struct LlamaLayerWeights: Sendable {
    public let attnNorm: FloatBuffer   // (dim)
    public let wqkv: FloatBuffer       // (qDim + 2·kvDim, dim): rows [0,qDim) Q, then K, then V
    public let wo: FloatBuffer         // (dim, qDim)
    public let ffnNorm: FloatBuffer    // (dim)
    public let wGateUp: FloatBuffer    // (2·ffn, dim): rows [0,ffn) gate, then up
    public let wDown: FloatBuffer      // (dim, ffn)

    public var bytes: Int { [attnNorm, wqkv, wo, ffnNorm, wGateUp, wDown].reduce(0) { $0 + $1.bytes } }
}

/// The coordinator's part of the model: token embedding, final norm, LM head (tied to the embedding when the
/// file has no `output.weight`).
public struct LlamaHeadWeights: Sendable {
    public let tokenEmbedding: FloatBuffer // (vocab, dim)
    public let outputNorm: FloatBuffer     // (dim)
    public let output: FloatBuffer         // (vocab, dim); the same object as tokenEmbedding when tied
    public var isTied: Bool { output === tokenEmbedding }
    public var bytes: Int { tokenEmbedding.bytes + outputNorm.bytes + (isTied ? 0 : output.bytes) }
}

/// Reports load progress as (done, total) steps; called from loader threads.
public typealias LoadProgress = @Sendable (Int, Int) -> Void

enum WeightLoader {
    /// Dequantises `name` into `dst` after checking its GGUF dimensions (innermost first) are `dims`.
    static func load(_ f: GGUFFile, _ name: String, dims: [Int], into dst: UnsafeMutablePointer<Float>) throws {
        let t = try f.requireTensor(name)
        guard t.dimensions == dims else { throw GGUFError.unexpectedShape(tensor: name, expected: dims, found: t.dimensions) }
        Dequantize.run(type: t.type, from: f.data(of: t), into: UnsafeMutableBufferPointer(start: dst, count: t.elementCount))
    }

    static func vector(_ f: GGUFFile, _ name: String, _ n: Int) throws -> FloatBuffer {
        let b = FloatBuffer(count: n)
        try load(f, name, dims: [n], into: b.pointer)
        return b
    }

    static func layer(_ f: GGUFFile, _ c: LlamaConfig, _ l: Int) throws -> LlamaLayerWeights {
        let p = "blk.\(l)."
        let qkv = FloatBuffer(count: (c.qDim + 2 * c.kvDim) * c.dim)
        try load(f, p + "attn_q.weight", dims: [c.dim, c.qDim], into: qkv.pointer)
        try load(f, p + "attn_k.weight", dims: [c.dim, c.kvDim], into: qkv.pointer + c.qDim * c.dim)
        try load(f, p + "attn_v.weight", dims: [c.dim, c.kvDim], into: qkv.pointer + (c.qDim + c.kvDim) * c.dim)
        let wo = FloatBuffer(count: c.dim * c.qDim)
        try load(f, p + "attn_output.weight", dims: [c.qDim, c.dim], into: wo.pointer)
        let gu = FloatBuffer(count: 2 * c.ffnDim * c.dim)
        try load(f, p + "ffn_gate.weight", dims: [c.dim, c.ffnDim], into: gu.pointer)
        try load(f, p + "ffn_up.weight", dims: [c.dim, c.ffnDim], into: gu.pointer + c.ffnDim * c.dim)
        let down = FloatBuffer(count: c.dim * c.ffnDim)
        try load(f, p + "ffn_down.weight", dims: [c.ffnDim, c.dim], into: down.pointer)
        return LlamaLayerWeights(attnNorm: try vector(f, p + "attn_norm.weight", c.dim), wqkv: qkv, wo: wo,
                                 ffnNorm: try vector(f, p + "ffn_norm.weight", c.dim), wGateUp: gu, wDown: down)
    }

    /// Loads a range of layers, two at a time in parallel (dequantisation is CPU-bound).
    static func layers(_ f: GGUFFile, _ c: LlamaConfig, _ range: LayerRange, progress: LoadProgress?) throws -> [LlamaLayerWeights] {
        let n = range.count
        let results = Mutex<[Int: Result<LlamaLayerWeights, Error>]>([:])
        let done = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: n) { i in
            let r = Result { try layer(f, c, range.lowerBound + i) }
            results.withLock { $0[i] = r }
            let d = done.add(1, ordering: .relaxed).newValue
            progress?(d, n)
        }
        return try results.withLock { dict in try (0..<n).map { try dict[$0]!.get() } }
    }

    static func head(_ f: GGUFFile, _ c: LlamaConfig) throws -> LlamaHeadWeights {
        let embd = FloatBuffer(count: c.vocabSize * c.dim)
        try load(f, "token_embd.weight", dims: [c.dim, c.vocabSize], into: embd.pointer)
        let norm = try vector(f, "output_norm.weight", c.dim)
        var out = embd
        if f.tensor("output.weight") != nil {
            out = FloatBuffer(count: c.vocabSize * c.dim)
            try load(f, "output.weight", dims: [c.dim, c.vocabSize], into: out.pointer)
        }
        return LlamaHeadWeights(tokenEmbedding: embd, outputNorm: norm, output: out)
    }
}
