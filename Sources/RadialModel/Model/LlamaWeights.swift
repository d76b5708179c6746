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

/// A weight matrix (outputs × inputs, row-major). Where the file's type has a quantised kernel (Q4_0, Q4_1,
/// Q8_0) the matrix lives only in that 4/8-bit form: decode runs the kernel, and more rows than
/// `quantizedMaxRows` (prefill, big batches) dequantise `tileRows` rows at a time into a scratch tile and run
/// sgemm on it. Other types (K-quants, Q5, F16, BF16, F32) keep an fp32 copy for now.
public struct Linear: Sendable {
    public let fp32: FloatBuffer?
    public let quantized: QuantizedMatrix?
    public let outputs: Int
    public let inputs: Int

    public init(fp32: FloatBuffer?, quantized: QuantizedMatrix?, outputs: Int, inputs: Int) {
        precondition(fp32 != nil || quantized != nil, "a matrix needs fp32 weights or a quantised form")
        self.fp32 = fp32
        self.quantized = quantized
        self.outputs = outputs
        self.inputs = inputs
    }

    /// Largest row count that uses the quantised kernel; above it sgemm wins (compute-bound: a 180-token
    /// prefill is ~25% faster). Up to this many rows a row's result does not depend on the batch it is in (see
    /// kernels.c); the coordinator's scheduler relies on that to equal the in-process engine bit for bit.
    nonisolated(unsafe) public static var quantizedMaxRows = 64

    /// Rows of a dequantised tile for sgemm: the scratch is tileRows × inputs floats (at most 64 × 8960 × 4 B =
    /// 2.3 MB for the widest FFN of the supported models), allocated per call.
    public static let tileRows = 64

    public var bytes: Int { (fp32?.bytes ?? 0) + (quantized?.bytes ?? 0) }

    /// y(m, count) = x(m, inputs) · W[rowStart ..< rowStart+count]ᵀ, optionally added to y.
    @inline(__always)
    public func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>,
                      accumulate: Bool = false, rowStart: Int = 0, rowCount: Int? = nil) {
        let n = rowCount ?? outputs - rowStart
        if let q = quantized, m <= Self.quantizedMaxRows {
            q.multiply(x, inputs: m, into: y, accumulate: accumulate, rowStart: rowStart, rowCount: n)
        } else if let w = fp32 {
            BLAS.linear(x, rows: m, inputs: inputs, weight: w.readOnly + rowStart * inputs, outputs: n, into: y,
                        accumulate: accumulate)
        } else {
            applyTiled(quantized!, x, rows: m, into: y, accumulate: accumulate, rowStart: rowStart, rowCount: n)
        }
    }

    /// Many rows over quantised weights: dequantise a tile of weight rows, sgemm into the matching columns of y.
    private func applyTiled(_ q: QuantizedMatrix, _ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>,
                            accumulate: Bool, rowStart: Int, rowCount n: Int) {
        let tile = min(Self.tileRows, n)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: tile * inputs)
        defer { scratch.deallocate() }
        var r = 0
        while r < n {
            let t = min(tile, n - r)
            q.dequantize(rowStart: rowStart + r, rowCount: t, into: scratch, ld: inputs)
            if m == 1 {
                BLAS.linear(x, rows: 1, inputs: inputs, weight: scratch, outputs: t, into: y + r, accumulate: accumulate)
            } else {
                BLAS.gemm(m: m, n: t, k: inputs, a: x, lda: inputs, b: scratch, ldb: inputs, transB: true,
                          beta: accumulate ? 1 : 0, c: y + r, ldc: n)
            }
            r += t
        }
    }
}

/// The token embedding, read row by row from the file's own blocks when a token is embedded (no fp32 table).
public struct EmbeddingTable: @unchecked Sendable {
    let file: GGUFFile
    let tensor: GGUFTensorInfo
    let rowBytes: Int
    public let dim: Int
    public let vocab: Int

    init(file: GGUFFile, tensor: GGUFTensorInfo) {
        self.file = file
        self.tensor = tensor
        dim = tensor.columns
        vocab = tensor.rows
        rowBytes = tensor.columns / tensor.type.blockSize * tensor.type.bytesPerBlock
    }

    /// Writes the embedding of `id` (in 0..<vocab) into `out` (dim floats).
    public func row(_ id: Int, into out: UnsafeMutablePointer<Float>) {
        let all = file.data(of: tensor)
        let src = UnsafeRawBufferPointer(rebasing: all[(id * rowBytes)..<((id + 1) * rowBytes)])
        Dequantize.run(type: tensor.type, from: src, into: UnsafeMutableBufferPointer(start: out, count: dim))
    }

    public var bytes: Int { vocab * rowBytes }
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
    public let tokenEmbedding: EmbeddingTable // (vocab, dim) in the file's blocks
    public let outputNorm: FloatBuffer        // (dim)
    public let output: Linear                 // (vocab, dim)
    public let isTied: Bool
    /// Resident bytes this process holds for the head (the embedding's file pages only as rows are read).
    public var bytes: Int { outputNorm.bytes + output.bytes }
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
        for (name, rows) in parts {
            let t = try f.requireTensor(name)
            guard t.dimensions == [inputs, rows] else { throw GGUFError.unexpectedShape(tensor: name, expected: [inputs, rows], found: t.dimensions) }
        }
        // The quantised form alone where a kernel exists; fp32 otherwise.
        if let q = QuantizedMatrix(tensors: try parts.map { try f.requireTensor($0.0) }, file: f) {
            return Linear(fp32: nil, quantized: q, outputs: total, inputs: inputs)
        }
        let buf = FloatBuffer(count: total * inputs)
        var row = 0
        for (name, rows) in parts {
            try load(f, name, dims: [inputs, rows], into: buf.pointer + row * inputs)
            row += rows
        }
        return Linear(fp32: buf, quantized: nil, outputs: total, inputs: inputs)
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
        let embd = try f.requireTensor("token_embd.weight")
        guard embd.dimensions == [c.dim, c.vocabSize] else {
            throw GGUFError.unexpectedShape(tensor: embd.name, expected: [c.dim, c.vocabSize], found: embd.dimensions)
        }
        let norm = try vector(f, "output_norm.weight", c.dim)
        let tied = f.tensor("output.weight") == nil
        let out = try linear(f, [(tied ? "token_embd.weight" : "output.weight", c.vocabSize)], inputs: c.dim)
        return LlamaHeadWeights(tokenEmbedding: EmbeddingTable(file: f, tensor: embd), outputNorm: norm, output: out,
                                isTied: tied)
    }
}
