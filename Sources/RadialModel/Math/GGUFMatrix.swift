import CRadialKernels

/// A weight matrix read in place from a GGUF file's mapping, in the file's own block layout (no repacking, no
/// fp32 copy): one or more tensors stacked by rows (e.g. attn_q, attn_k, attn_v as one matrix), each part in
/// its own type. The kernels are radial_gguf_* (radial_kernels.h); this class only splits rows over threads
/// and parts. Holds the `GGUFFile`, so the mapping outlives the matrix.
///
/// Read-only after init (hence `@unchecked Sendable`).
public final class GGUFMatrix: @unchecked Sendable {
    /// One stacked tensor: rows [firstRow, firstRow + rows) of the matrix, at `address` in the mapping.
    struct Part: Sendable {
        let type: Int32
        let address: UInt
        let rowBytes: Int
        let firstRow: Int
        let rows: Int
        var isFloat: Bool { type == 0 || type == 1 || type == 30 }
    }

    public let rows: Int
    public let columns: Int
    /// File bytes the matrix covers (what one pass over all its rows streams).
    public let bytes: Int
    let parts: [Part]
    let file: GGUFFile

    /// Whether the kernels read `type` in place.
    public static func supports(_ type: GGMLType) -> Bool { radial_gguf_supported(Int32(type.rawValue)) != 0 }

    /// nil when there are no tensors, a type is unsupported, the column counts differ or a tensor has more
    /// than two dimensions.
    public init?(tensors: [GGUFTensorInfo], file: GGUFFile) {
        guard let first = tensors.first else { return nil }
        let cols = first.columns
        guard tensors.allSatisfy({ $0.columns == cols && $0.dimensions.count <= 2 && Self.supports($0.type) }) else { return nil }
        var parts: [Part] = []
        var row = 0
        for t in tensors {
            let data = file.data(of: t)
            // Rows are contiguous, so a row's bytes are the tensor's over its rows (whatever the block size).
            parts.append(Part(type: Int32(t.type.rawValue), address: UInt(bitPattern: data.baseAddress!),
                              rowBytes: t.byteCount / t.rows, firstRow: row, rows: t.rows))
            row += t.rows
        }
        self.parts = parts
        self.rows = row
        self.columns = cols
        self.bytes = tensors.reduce(0) { $0 + $1.byteCount }
        self.file = file
    }

    /// The parts meeting rows [lo, hi), each with the sub-range of matrix rows it holds there.
    func pieces(_ lo: Int, _ hi: Int) -> [(part: Part, lo: Int, hi: Int)] {
        parts.compactMap { p in
            let a = max(lo, p.firstRow), b = min(hi, p.firstRow + p.rows)
            return a < b ? (p, a, b) : nil
        }
    }

    /// y(n, rowCount) = x(n, columns) · W[rowStart ..< rowStart+rowCount]ᵀ (+ y when accumulating):
    /// y[i*ldy + j] is row rowStart + j for input i. Rows are split across `threads` (ComputePool.shared) when
    /// the work repays the hand-off; a row's result is the same whatever the split, the batch or the range.
    /// `.q8` quantises the inputs once (radial_quantize_q8) for every block-type part; float parts (F32, F16,
    /// BF16) always take fp32 inputs.
    public func multiply(_ x: UnsafePointer<Float>, inputs n: Int, ldx: Int? = nil,
                         into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false,
                         rowStart: Int = 0, rowCount: Int? = nil, threads: Int,
                         activations: QuantizedMatrix.Activations) {
        let count = rowCount ?? rows - rowStart
        precondition(rowStart >= 0 && count >= 0 && rowStart + count <= rows, "GGUFMatrix: rows out of range")
        guard count > 0, n > 0 else { return }
        let lx = Int32(ldx ?? columns), ly = Int32(ldy ?? count), cols = Int32(columns)
        let acc: Int32 = accumulate ? 1 : 0
        let q8 = activations == .q8 && columns % 32 == 0 && parts.contains { !$0.isFloat }
        let nb = columns / 32
        let xq = q8 ? UnsafeMutablePointer<Int8>.allocate(capacity: n * columns) : nil
        let xd = q8 ? UnsafeMutablePointer<Float>.allocate(capacity: 2 * n * nb) : nil
        defer { xq?.deallocate(); xd?.deallocate() }
        if let xq, let xd { radial_quantize_q8(x, lx, Int32(n), Int32(nb), xq, cols, xd, xd + n * nb) }
        // Raw addresses as integers so the closure below is Sendable; they stay valid for this call.
        let xAddr = UInt(bitPattern: x), yAddr = UInt(bitPattern: y)
        let xqAddr = UInt(bitPattern: xq), xdAddr = UInt(bitPattern: xd), xsOffset = n * nb
        let run: @Sendable (Int, Int) -> Void = { [self] r0, r1 in
            for (p, lo, hi) in pieces(rowStart + r0, rowStart + r1) {
                // The kernel's rows count from w, so w and y start at the piece's first row.
                let w = UnsafeRawPointer(bitPattern: p.address)! + (lo - p.firstRow) * p.rowBytes
                let yp = UnsafeMutablePointer<Float>(bitPattern: yAddr)! + (lo - rowStart)
                if q8 && !p.isFloat {
                    let xd = UnsafePointer<Float>(bitPattern: xdAddr)!
                    radial_gguf_matmul_q8(p.type, w, p.rowBytes, cols, 0, Int32(hi - lo),
                                          UnsafePointer<Int8>(bitPattern: xqAddr)!, cols, xd, xd + xsOffset, Int32(n),
                                          yp, ly, acc)
                } else {
                    radial_gguf_matmul(p.type, w, p.rowBytes, cols, 0, Int32(hi - lo),
                                       UnsafePointer<Float>(bitPattern: xAddr)!, lx, Int32(n), yp, ly, acc)
                }
            }
        }
        ComputePool.shared.splitRows(count, work: count * columns * n, threads: threads, run)
    }

    /// Rows [rowStart, rowStart + rowCount) as fp32 into out[j*ld + c] (row rowStart + j), bit for bit ggml's
    /// (and Dequantize's) dequantisation: prefill dequantises a tile of rows, then runs sgemm on it.
    public func dequantize(rowStart: Int, rowCount: Int, into out: UnsafeMutablePointer<Float>, ld: Int? = nil) {
        precondition(rowStart >= 0 && rowCount >= 0 && rowStart + rowCount <= rows, "GGUFMatrix: rows out of range")
        let lo = ld ?? columns
        for (p, a, b) in pieces(rowStart, rowStart + rowCount) {
            let w = UnsafeRawPointer(bitPattern: p.address)! + (a - p.firstRow) * p.rowBytes
            radial_gguf_dequantize_rows(p.type, w, p.rowBytes, Int32(columns), 0, Int32(b - a), out + (a - rowStart) * lo, Int32(lo))
        }
    }
}
