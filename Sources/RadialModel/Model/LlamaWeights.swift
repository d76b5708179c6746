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

/// A weight matrix (outputs × inputs, row-major), held only in its file's quantised form: never an fp32 copy.
/// Q4_0, Q4_1 and Q8_0 are repacked at load into QuantizedMatrix's layout (scales apart from the nibbles): its
/// decode kernels stream those ~25% faster than the in-place ones read GGUF's interleaved blocks (bench/gguf_bench.c,
/// 1 thread, batch 1: 6.2-7.1 vs 4.7-4.8 GB/s for Q4_1), and the file pages read while repacking are released
/// (QuantizedMatrix.init), so memory still holds the weights once. Every other type (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K,
/// F16, BF16, F32) is read in place from the mapping (GGUFMatrix). Up to `quantizedMaxRows` rows run the decode
/// kernels; more rows (prefill, big batches) dequantise `tileRows` rows at a time into a scratch tile and run
/// sgemm on it.
public struct Linear: Sendable {
    public enum Storage: Sendable {
        case repacked(QuantizedMatrix)
        case inPlace(GGUFMatrix)
    }
    public let storage: Storage
    public let outputs: Int
    public let inputs: Int

    public init(storage: Storage, outputs: Int, inputs: Int) {
        self.storage = storage
        self.outputs = outputs
        self.inputs = inputs
    }

    /// Largest row count that uses the decode kernels; above it sgemm on dequantised tiles wins (compute-bound).
    /// Up to this many rows a row's result does not depend on the batch it is in (see kernels.c and
    /// gguf_matmul.c); the coordinator's scheduler relies on that to equal the in-process engine bit for bit.
    /// A property of the kernels, the same in every process.
    public static let quantizedMaxRows = 64

    /// Scratch for one dequantised tile: at most 4 MiB (1,024 rows at 1,024 inputs; 117 rows of Qwen2.5-1.5B's
    /// 8,960-wide down projection), never fewer than 64 rows; allocated per call and freed when it returns.
    /// Big tiles keep sgemm's N large (64-row tiles cost SmolLM2's 180-token prefill ~35%).
    public static let tileBytes = 4 << 20
    public func tileRows(_ n: Int) -> Int { min(n, max(64, Self.tileBytes / (inputs * MemoryLayout<Float>.size))) }

    /// Bytes held for the weights (the repacked copy, or the file bytes mapped in place).
    public var bytes: Int {
        switch storage {
        case .repacked(let q): q.bytes
        case .inPlace(let g): g.bytes
        }
    }

    /// y(m, count) = x(m, inputs) · W[rowStart ..< rowStart+count]ᵀ, optionally added to y, in the arithmetic
    /// `activations` names (the shard's or head's, fixed when it was made).
    @inline(__always)
    public func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>,
                      activations: QuantizedMatrix.Activations, accumulate: Bool = false, rowStart: Int = 0, rowCount: Int? = nil) {
        let n = rowCount ?? outputs - rowStart
        guard m > Self.quantizedMaxRows else {
            switch storage {
            case .repacked(let q):
                q.multiply(x, inputs: m, into: y, accumulate: accumulate, rowStart: rowStart, rowCount: n, activations: activations)
            case .inPlace(let g):
                g.multiply(x, inputs: m, into: y, accumulate: accumulate, rowStart: rowStart, rowCount: n,
                           threads: ComputePool.shared.threads, activations: activations)
            }
            return
        }
        // Under q8 arithmetic the int8 kernels read GGUF blocks faster than dequantising them for sgemm (measured on
        // Qwen2.5-1.5B Q4_K_M: prefill 39 tok/s with tiles, see docs/PERFORMANCE.md), and keep every row in the
        // arithmetic its decode uses: chunks of the kernels' row limit.
        if case .inPlace(let g) = storage, activations == .q8 {
            var r = 0
            while r < m {
                let c = min(Self.quantizedMaxRows, m - r)
                g.multiply(x + r * inputs, inputs: c, into: y + r * n, ldy: n, accumulate: accumulate, rowStart: rowStart,
                           rowCount: n, threads: ComputePool.shared.threads, activations: .q8)
                r += c
            }
            return
        }
        applyTiled(x, rows: m, into: y, accumulate: accumulate, rowStart: rowStart, rowCount: n)
    }

    /// Dequantises rows [rowStart, rowStart + count) into `out` (row stride `inputs`), split over the kernel
    /// threads (the sgemm that follows has OpenBLAS's own).
    public func dequantize(rowStart: Int, rowCount: Int, into out: UnsafeMutablePointer<Float>) {
        let storage = storage, ld = inputs, outAddr = UInt(bitPattern: out)
        let part: @Sendable (Int, Int) -> Void = { r0, r1 in
            let o = UnsafeMutablePointer<Float>(bitPattern: outAddr)! + (r0 - rowStart) * ld
            switch storage {
            case .repacked(let q): q.dequantize(rowStart: r0, rowCount: r1 - r0, into: o, ld: ld)
            case .inPlace(let g): g.dequantize(rowStart: r0, rowCount: r1 - r0, into: o, ld: ld)
            }
        }
        let t = min(ComputePool.shared.threads, max(1, rowCount / 16))
        guard t > 1 else { part(rowStart, rowStart + rowCount); return }
        let chunk = (rowCount + t - 1) / t
        ComputePool.shared.run(t) { i in
            let r0 = rowStart + min(i * chunk, rowCount), r1 = rowStart + min((i + 1) * chunk, rowCount)
            if r0 < r1 { part(r0, r1) }
        }
    }

    /// Many rows: dequantise a tile of weight rows, sgemm into the matching columns of y.
    private func applyTiled(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>,
                            accumulate: Bool, rowStart: Int, rowCount n: Int) {
        let tile = tileRows(n)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: tile * inputs)
        defer { scratch.deallocate() }
        var r = 0
        while r < n {
            let t = min(tile, n - r)
            dequantize(rowStart: rowStart + r, rowCount: t, into: scratch)
            BLAS.gemm(m: m, n: t, k: inputs, a: x, lda: inputs, b: scratch, ldb: inputs, transB: true,
                      beta: accumulate ? 1 : 0, c: y + r, ldc: n)
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
        let tensors = try parts.map { try f.requireTensor($0.0) }
        if let q = QuantizedMatrix(tensors: tensors, file: f) {
            return Linear(storage: .repacked(q), outputs: total, inputs: inputs)
        }
        guard let g = GGUFMatrix(tensors: tensors, file: f) else {
            let bad = tensors.first { !GGUFMatrix.supports($0.type) } ?? tensors[0]
            throw GGUFError.unsupportedTensorType(tensor: bad.name, type: bad.type.description)
        }
        return Linear(storage: .inPlace(g), outputs: total, inputs: inputs)
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
