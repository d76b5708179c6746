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

/// A weight matrix (outputs × inputs, row-major): fp32 for GEMMs over many rows (prefill, big batches), plus
/// the file's own 4/8-bit blocks, when it has them, for the memory-bound few-row case (decode).
public struct Linear: Sendable {
    public let fp32: FloatBuffer
    public let quantized: QuantizedMatrix?
    public let outputs: Int
    public let inputs: Int

    /// Largest row count that uses the quantised kernel; above it OpenBLAS's sgemm wins (compute-bound: a
    /// 180-token prefill is ~25% faster). Up to this many rows a row's result does not depend on the batch it is
    /// in (see kernels.c); the coordinator's scheduler relies on that to equal the in-process engine bit for bit.
    nonisolated(unsafe) public static var quantizedMaxRows = 64

    public var bytes: Int { fp32.bytes + (quantized?.bytes ?? 0) }

    /// y(m, count) = x(m, inputs) · W[rowStart ..< rowStart+count]ᵀ, optionally added to y.
    @inline(__always)
    public func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>,
                      accumulate: Bool = false, rowStart: Int = 0, rowCount: Int? = nil) {
        let n = rowCount ?? outputs - rowStart
        if let q = quantized, m <= Self.quantizedMaxRows {
            q.multiply(x, inputs: m, into: y, accumulate: accumulate, rowStart: rowStart, rowCount: n)
        } else {
            BLAS.linear(x, rows: m, inputs: inputs, weight: fp32.readOnly + rowStart * inputs, outputs: n, into: y,
                        accumulate: accumulate)
        }
    }
}

/// One transformer block's weights, row-major [outputs][inputs].
/// Q, K and V are fused into one matrix (one GEMM per layer), and so are gate and up.
public struct LlamaLayerWeights: Sendable {
    public let attnNorm: FloatBuffer   // (dim)
    public let wqkv: Linear            // (qDim + 2·kvDim, dim): rows [0,qDim) Q, then K, then V
    public let qkvBias: FloatBuffer?   // (qDim + 2·kvDim): Q, K, V biases (qwen2), nil without
    public let wo: Linear              // (dim, qDim)
    public let ffnNorm: FloatBuffer    // (dim)
    public let wGateUp: Linear         // (2·ffn, dim): rows [0,ffn) gate, then up
    public let wDown: Linear           // (dim, ffn)

    public var bytes: Int { attnNorm.bytes + ffnNorm.bytes + (qkvBias?.bytes ?? 0) + [wqkv, wo, wGateUp, wDown].reduce(0) { $0 + $1.bytes } }
}

/// The coordinator's part of the model: token embedding, final norm, LM head (tied to the embedding when the
/// file has no `output.weight`).
public struct LlamaHeadWeights: Sendable {
    public let tokenEmbedding: FloatBuffer // (vocab, dim)
    public let outputNorm: FloatBuffer     // (dim)
    public let output: Linear              // (vocab, dim); fp32 is the same object as tokenEmbedding when tied
    public var isTied: Bool { output.fp32 === tokenEmbedding }
    public var bytes: Int { tokenEmbedding.bytes + outputNorm.bytes + (output.quantized?.bytes ?? 0) + (isTied ? 0 : output.fp32.bytes) }
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

    /// Tensors stacked by rows into one matrix; each part given as (name, rows). All share `inputs` columns.
    static func linear(_ f: GGUFFile, _ parts: [(String, Int)], inputs: Int) throws -> Linear {
        let total = parts.reduce(0) { $0 + $1.1 }
        let buf = FloatBuffer(count: total * inputs)
        var row = 0
        for (name, rows) in parts {
            try load(f, name, dims: [inputs, rows], into: buf.pointer + row * inputs)
            row += rows
        }
        let q = QuantizedMatrix(tensors: try parts.map { try f.requireTensor($0.0) }, file: f)
        return Linear(fp32: buf, quantized: q, outputs: total, inputs: inputs)
    }

    static func layer(_ f: GGUFFile, _ c: LlamaConfig, _ l: Int) throws -> LlamaLayerWeights {
        let p = "blk.\(l)."
        let qkv = try linear(f, [(p + "attn_q.weight", c.qDim), (p + "attn_k.weight", c.kvDim), (p + "attn_v.weight", c.kvDim)],
                             inputs: c.dim)
        var bias: FloatBuffer?
        if c.qkvBias {
            let b = FloatBuffer(count: c.qDim + 2 * c.kvDim)
            try load(f, p + "attn_q.bias", dims: [c.qDim], into: b.pointer)
            try load(f, p + "attn_k.bias", dims: [c.kvDim], into: b.pointer + c.qDim)
            try load(f, p + "attn_v.bias", dims: [c.kvDim], into: b.pointer + c.qDim + c.kvDim)
            bias = b
        }
        let wo = try linear(f, [(p + "attn_output.weight", c.dim)], inputs: c.qDim)
        let gu = try linear(f, [(p + "ffn_gate.weight", c.ffnDim), (p + "ffn_up.weight", c.ffnDim)], inputs: c.dim)
        let down = try linear(f, [(p + "ffn_down.weight", c.dim)], inputs: c.ffnDim)
        return LlamaLayerWeights(attnNorm: try vector(f, p + "attn_norm.weight", c.dim), wqkv: qkv, qkvBias: bias, wo: wo,
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
        let out: Linear
        if f.tensor("output.weight") != nil {
            out = try linear(f, [("output.weight", c.vocabSize)], inputs: c.dim)
        } else {
            let q = QuantizedMatrix(tensors: [try f.requireTensor("token_embd.weight")], file: f)
            out = Linear(fp32: embd, quantized: q, outputs: c.vocabSize, inputs: c.dim)
        }
        return LlamaHeadWeights(tokenEmbedding: embd, outputNorm: norm, output: out)
    }
}
