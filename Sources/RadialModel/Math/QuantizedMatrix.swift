import CRadialKernels
import Dispatch

/// A weight matrix kept at 4 or 8 bits per value for the decode hot path (see radial_kernels.h for layouts).
/// Decode streams every weight once per step, so bytes per weight, not FLOPs, set its speed: fp32 weights
/// would cap SmolLM2 at ~25 tokens/s on this machine's ~12 GB/s, Q4 at ~5x that.
///
/// Read-only after init (hence `@unchecked Sendable`).
public final class QuantizedMatrix: @unchecked Sendable {
    /// The arithmetic of the decode kernels.
    public enum Activations: String, Sendable, CaseIterable {
        /// fp32 inputs times the dequantised weights: the fp32 reference's results up to summation order.
        case f32
        /// Inputs quantised per block of 32 to int8 (llama.cpp's arithmetic): integer dot products, faster,
        /// but ~0.4% error per block, so greedy text drifts from the fp32 reference after a few tokens.
        case q8
    }

    public enum Format: Sendable { case q4, q8 }
    public let format: Format
    public let rows: Int
    public let columns: Int
    let blocksPerRow: Int
    let qs: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<Float>
    let offsets: UnsafeMutablePointer<Float>?

    /// Repacks GGUF tensors (all Q4_0/Q4_1, or all Q8_0, with equal column counts) stacked by rows; nil when
    /// the types do not allow an exact quantised form (the caller then uses fp32).
    public init?(tensors: [GGUFTensorInfo], file: GGUFFile) {
        guard let first = tensors.first else { return nil }
        let cols = first.columns
        guard cols % 32 == 0, tensors.allSatisfy({ $0.columns == cols && $0.dimensions.count <= 2 }) else { return nil }
        let types = Set(tensors.map(\.type))
        if types.isSubset(of: [.q4_0, .q4_1]) { format = .q4 } else if types == [.q8_0] { format = .q8 } else { return nil }
        rows = tensors.reduce(0) { $0 + $1.rows }
        columns = cols
        blocksPerRow = cols / 32
        let totalBlocks = rows * blocksPerRow
        let qBytes = format == .q4 ? 16 : 32
        qs = .allocate(byteCount: totalBlocks * qBytes, alignment: 64)
        scales = .allocate(capacity: totalBlocks)
        offsets = format == .q4 ? .allocate(capacity: totalBlocks) : nil
        var block = 0
        for t in tensors {
            let src = file.data(of: t).baseAddress!
            let srcBlockBytes = t.type.bytesPerBlock
            for b in 0..<(t.rows * blocksPerRow) {
                let p = src + b * srcBlockBytes
                let d = Dequantize.half(p, 0)
                switch t.type {
                case .q4_1:
                    scales[block] = d
                    offsets![block] = Dequantize.half(p, 2)
                    (qs + block * 16).copyMemory(from: p + 4, byteCount: 16)
                case .q4_0:
                    scales[block] = d
                    offsets![block] = -8 * d  // (q - 8)·d = q·d + (-8d), exact in fp32
                    (qs + block * 16).copyMemory(from: p + 2, byteCount: 16)
                default: // q8_0
                    scales[block] = d
                    (qs + block * 32).copyMemory(from: p + 2, byteCount: 32)
                }
                block += 1
            }
            // The repacked copy is what the kernels read; the file's pages need not stay resident beside it.
            file.releasePages(of: t)
        }
    }

    /// Quantises fp32 weights (`rows` rows of `columns`, row-major; columns a multiple of 32) to Q8_0 with fp32
    /// scales: for matrices Radial fits itself (a router's run maps), read by the same kernels as the model's.
    public init(quantizing w: UnsafePointer<Float>, rows: Int, columns: Int) {
        precondition(columns % 32 == 0 && rows > 0, "Q8_0 needs whole blocks of 32 columns")
        format = .q8
        self.rows = rows
        self.columns = columns
        blocksPerRow = columns / 32
        let blocks = rows * blocksPerRow
        qs = .allocate(byteCount: blocks * 32, alignment: 64)
        scales = .allocate(capacity: blocks)
        offsets = nil
        let q = qs.assumingMemoryBound(to: Int8.self)
        for b in 0..<blocks {
            let src = w + b * 32
            var amax: Float = 0
            for i in 0..<32 { amax = max(amax, abs(src[i])) }
            let d = amax / 127, inv: Float = d > 0 ? 1 / d : 0
            scales[b] = d
            for i in 0..<32 { q[b * 32 + i] = Int8((src[i] * inv).rounded()) }
        }
    }

    deinit {
        qs.deallocate()
        scales.deallocate()
        offsets?.deallocate()
    }

    public var bytes: Int { rows * blocksPerRow * ((format == .q4 ? 16 : 32) + (format == .q4 ? 8 : 4)) }

    /// y(n, rowCount) = x(n, columns) · W[rowStart ..< rowStart+rowCount]ᵀ (+ y when accumulating), rows split
    /// across `threads` when the matrix is large enough to repay the hand-off.
    public func multiply(_ x: UnsafePointer<Float>, inputs n: Int, ldx: Int? = nil,
                         into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false,
                         rowStart: Int = 0, rowCount: Int? = nil, threads: Int = ComputePool.shared.threads,
                         activations: Activations) {
        let count = rowCount ?? rows - rowStart
        precondition(rowStart >= 0 && rowStart + count <= rows)
        let lx = Int32(ldx ?? columns), ly = Int32(ldy ?? count), nb = Int32(blocksPerRow)
        let blockBase = rowStart * blocksPerRow
        // Raw addresses as integers so the closure below is Sendable; they stay valid for this call.
        let qsAddr = UInt(bitPattern: qs), dAddr = UInt(bitPattern: scales + blockBase)
        let mAddr = offsets.map { UInt(bitPattern: $0 + blockBase) } ?? 0
        let xAddr = UInt(bitPattern: x), yAddr = UInt(bitPattern: y)
        let fmt = format, qBytes = format == .q4 ? 16 : 32
        let acc: Int32 = accumulate ? 1 : 0
        // q8 arithmetic: the inputs are quantised once here, before the rows are split across threads.
        let q8 = activations == .q8
        let xq = q8 ? UnsafeMutablePointer<Int8>.allocate(capacity: n * columns) : nil
        let xd = q8 ? UnsafeMutablePointer<Float>.allocate(capacity: 2 * n * Int(nb)) : nil
        defer { xq?.deallocate(); xd?.deallocate() }
        if let xq, let xd {
            radial_quantize_q8(x, lx, Int32(n), nb, xq, Int32(columns), xd, xd + n * Int(nb))
        }
        let xqAddr = UInt(bitPattern: xq), xdAddr = UInt(bitPattern: xd), xsOffset = n * Int(nb), ldq = Int32(columns)
        let run: @Sendable (Int, Int) -> Void = { r0, r1 in
            let q = UnsafeRawPointer(bitPattern: qsAddr)! + blockBase * qBytes
            let d = UnsafePointer<Float>(bitPattern: dAddr)!
            let y = UnsafeMutablePointer<Float>(bitPattern: yAddr)!
            if q8 {
                let xq = UnsafePointer<Int8>(bitPattern: xqAddr)!, xd = UnsafePointer<Float>(bitPattern: xdAddr)!
                switch fmt {
                case .q4:
                    radial_matmul_q4_q8(q.assumingMemoryBound(to: UInt8.self), d, UnsafePointer<Float>(bitPattern: mAddr)!, nb,
                                        Int32(r0), Int32(r1), xq, ldq, xd, xd + xsOffset, Int32(n), y, ly, acc)
                case .q8:
                    radial_matmul_q8_q8(q.assumingMemoryBound(to: Int8.self), d, nb, Int32(r0), Int32(r1),
                                        xq, ldq, xd, Int32(n), y, ly, acc)
                }
                return
            }
            let x = UnsafePointer<Float>(bitPattern: xAddr)!
            switch fmt {
            case .q4:
                radial_matmul_q4(q.assumingMemoryBound(to: UInt8.self), d, UnsafePointer<Float>(bitPattern: mAddr)!, nb,
                                 Int32(r0), Int32(r1), x, lx, Int32(n), y, ly, acc)
            case .q8:
                radial_matmul_q8(q.assumingMemoryBound(to: Int8.self), d, nb, Int32(r0), Int32(r1), x, lx, Int32(n), y, ly, acc)
            }
        }
        ComputePool.shared.splitRows(count, work: count * columns * n, threads: threads, run)
    }

    /// Writes rows [rowStart, rowStart + rowCount) as fp32 into `out` (row stride `ld`): the same values the
    /// file's dequantisation gives (q·d + m with q ≤ 15 and d an fp16 value is exact in fp32, so Q4_0's
    /// (q - 8)·d equals q·d + (-8d) bit for bit).
    public func dequantize(rowStart: Int, rowCount: Int, into out: UnsafeMutablePointer<Float>, ld: Int) {
        precondition(rowStart >= 0 && rowStart + rowCount <= rows)
        let nb = Int32(blocksPerRow), r0 = Int32(rowStart), r1 = Int32(rowStart + rowCount)
        switch format {
        case .q4:
            radial_dequantize_q4(qs.assumingMemoryBound(to: UInt8.self), scales, offsets!, nb, r0, r1, out, Int32(ld))
        case .q8:
            radial_dequantize_q8(qs.assumingMemoryBound(to: Int8.self), scales, nb, r0, r1, out, Int32(ld))
        }
    }

    public static var usesSIMD: Bool { radial_kernels_simd() != 0 }
}
